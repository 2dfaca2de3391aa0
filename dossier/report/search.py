"""The client-side search index: pages, layers, every unit with what the sections say about it,
and the sections' own entries (clusters, classes).

Written as a script that sets a global, not as JSON: browsers refuse fetch() from file://, and
the site must work when opened straight from disk.
"""

from __future__ import annotations

from dossier.report.jsdata import js_global
from dossier.report.kit import SearchEntry
from dossier.report.pages import LayerPage, Report


def search_entries(report: Report) -> list[SearchEntry]:
    entries = [
        SearchEntry("Overview", "page", "index.html", "index summary home"),
        *(SearchEntry(page.title, "page", page.filename, "by depth chart") for page in report.pages),
    ]
    for page in report.layers:
        info = page.info
        entries.append(
            SearchEntry(info.name, "layer", page.filename, f"layer {info.type} {info.kernel_text} {info.shape_text}")
        )
        entries += _unit_entries(page, report)
    return entries + report.search


def _unit_entries(page: LayerPage, report: Report) -> list[SearchEntry]:
    """One entry per unit of a layer whose units have a card or row to land on."""
    name = page.info.name
    if name not in report.unit_owner or not page.info.units:
        return []
    entries = []
    for unit in range(page.info.units):
        labels = report.labels_for(name, unit)
        title = f"{name} unit {unit}" + (f" — {', '.join(label.text for label in labels)}" if labels else "")
        words = [f"unit {unit}"] + [f"{label.kind} {label.text} {label.terms}" for label in labels]
        entries.append(SearchEntry(title, "unit", f"{page.filename}#unit-{unit}", " ".join(words)))
    return entries


def search_script(report: Report) -> str:
    return js_global("DOSSIER_SEARCH", [entry.as_dict() for entry in search_entries(report)])
