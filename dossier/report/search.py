"""The client-side search index: one entry per layer, unit, cluster, class and page.

Written as a script that sets a global, not as JSON: browsers refuse fetch() from file://, and
the site must work when opened straight from disk.
"""

from __future__ import annotations

from dataclasses import dataclass

from dossier.report.jsdata import js_global
from dossier.report.pages import LayerPage, Report


@dataclass(frozen=True)
class SearchEntry:
    title: str  # what the result list shows
    kind: str  # layer, unit, cluster, class, page
    url: str  # relative to the site root
    terms: str  # extra words it is found by

    def as_dict(self) -> dict[str, str]:
        return {"t": self.title, "k": self.kind, "u": self.url, "s": self.terms}


def search_entries(report: Report) -> list[SearchEntry]:
    entries = [
        SearchEntry("Overview", "page", "index.html", "index summary home"),
        SearchEntry("Model card", "page", "model.html", "accuracy confusion architecture provenance top-5"),
    ]
    entries += [SearchEntry(title, "page", file, "by depth chart") for file, title in report.pages]
    for name in report.class_names:
        entries.append(SearchEntry(f"class {name}", "class", "model.html#per-class", f"class {name} accuracy"))
    for page in report.layers:
        entries += _layer_entries(page, report)
    return entries


def _layer_entries(page: LayerPage, report: Report) -> list[SearchEntry]:
    info = page.info
    entries = [
        SearchEntry(info.name, "layer", page.filename, f"layer {info.type} {info.kernel_text} {info.shape_text}")
    ]
    if page.types:
        threshold = report.neuron_types.selectivity_threshold if report.neuron_types else 1.0
        for row in page.types.rows:
            labels = []  # short, shown in the result
            words = [f"unit {row.unit}"]  # found by
            if row.dead:
                labels.append("dead")
            if row.border_weights:
                labels.append("border-aware")
                words.append("border weights")
            if row.border_activations:
                labels.append(f"border activity {row.border_side}")
                words.append("border activations")
            if row.selectivity is not None and row.selectivity >= threshold:
                labels.append(f"selective for {report.class_name(row.top_class)}")
                words.append("class-selective")
            if row.top_class is not None:
                words.append(f"class {report.class_name(row.top_class)}")
            title = f"{info.name} unit {row.unit}" + (f" — {', '.join(labels)}" if labels else "")
            entries.append(SearchEntry(title, "unit", f"{page.filename}#unit-{row.unit}", " ".join(words + labels)))
    if page.kernels and not page.kernels.result.skipped:
        for group in page.kernels.result.groups:
            entries.append(
                SearchEntry(
                    f"{info.name} kernel cluster {group.cluster + 1} ({group.size} units)",
                    "cluster",
                    f"{page.filename}#kernel-clusters",
                    "kernel cluster weights",
                )
            )
    if page.purity:
        for cluster in page.purity.clusters:
            entries.append(
                SearchEntry(
                    f"{info.name} activation cluster {cluster.number}: {cluster.majority} ({cluster.majority_share:.0f}%)",
                    "cluster",
                    f"{page.filename}#activation-clusters",
                    f"activation cluster purity class {cluster.majority}",
                )
            )
    return entries


def search_script(report: Report) -> str:
    return js_global("DOSSIER_SEARCH", [entry.as_dict() for entry in search_entries(report)])
