"""The client-side search index: pages, layers, the sections' entries (clusters, classes), and
every unit with what the sections say about it.

Written as scripts that set globals, not as JSON: browsers refuse fetch() from file://, and the
site must work when opened straight from disk. Units go into one small script per layer, loaded
when the reader starts typing, so that no page of a model with thousands of units has to load
them all up front.
"""

from __future__ import annotations

from pathlib import Path

from dossier.report.jsdata import js_global, js_value
from dossier.report.kit import SearchEntry
from dossier.report.pages import LayerPage, Report


def search_entries(report: Report) -> list[SearchEntry]:
    """The main index: everything but the units."""
    entries = [
        SearchEntry("Overview", "page", "index.html", "index summary home"),
        *(SearchEntry(page.title, "page", page.filename, "by depth chart") for page in report.pages),
    ]
    for page in report.layers:
        info = page.info
        entries.append(
            SearchEntry(info.name, "layer", page.filename, f"layer {info.type} {info.kernel_text} {info.shape_text}")
        )
    return entries + report.search


def unit_entries(page: LayerPage, report: Report) -> list[SearchEntry]:
    """One entry per unit of a layer whose units have a card or row to land on."""
    name = page.info.name
    if name not in report.unit_owner or not page.info.units:
        return []
    entries = []
    for unit in range(page.info.units):
        labels = report.labels_for(name, unit)
        title = f"{name} unit {unit}" + (f" — {', '.join(label.text for label in labels)}" if labels else "")
        words = [f"unit {unit}"] + [f"{label.kind} {label.text} {label.terms}" for label in labels]
        entries.append(SearchEntry(title, "unit", report.unit_href(name, unit) or page.filename, " ".join(words)))
    return entries


def write_search(report: Report, root: Path) -> None:
    """assets/search-index.js and one assets/search/<layer>.js per layer with units."""
    shards = []
    for page in report.layers:
        entries = unit_entries(page, report)
        if entries:
            relative = f"assets/search/{page.info.slug}.js"
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            data = [entry.as_dict() for entry in entries]
            (root / relative).write_text(
                f"window.DOSSIER_SEARCH_UNITS = (window.DOSSIER_SEARCH_UNITS || []).concat({js_value(data)});\n",
                encoding="utf-8",
            )
            shards.append(relative)
    main = js_global("DOSSIER_SEARCH", [entry.as_dict() for entry in search_entries(report)])
    (root / "assets" / "search-index.js").write_text(main + js_global("DOSSIER_SEARCH_SHARDS", shards), encoding="utf-8")
