"""What a section hands the report, and what it may use to build its views.

A section turns its result into views (display-ready values and written pictures), adds columns
to the index's layer table, entries to the search, and labels to units. Sections never read each
other's results: what one says about a unit reaches the others as a UnitLabel or a ranking.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from dossier.layers import LayerInfo
from dossier.report.pictures import PictureWriter, Sprite


@dataclass(frozen=True)
class CrossPage:
    """A page across layers; several sections may add a block to the same page."""

    filename: str
    title: str

    @property
    def anchor(self) -> str:
        return self.filename.removesuffix(".html")


@dataclass(frozen=True)
class Picture:
    sprite: Sprite
    caption: str


@dataclass(frozen=True)
class UnitLabel:
    """Something a section says about one unit: shown on its card and row, found by search."""

    layer: str
    unit: int
    text: str  # as shown, e.g. "selective for 7"
    kind: str  # what it is, e.g. "class-selective": what charts count and search finds
    section: str
    terms: str = ""  # more words search finds it by


@dataclass(frozen=True)
class Column:
    """One column a section adds to the index's layer table: text per layer name."""

    header: str
    cells: dict[str, str]
    numeric: bool = True


@dataclass(frozen=True)
class CheckResult:
    """One check that gates a release: pass, warn or fail, with the number behind it."""

    name: str  # what is checked, e.g. "top-1 accuracy"
    status: str  # "pass", "warn" or "fail"
    value: str  # what was measured, as shown
    threshold: str  # what it is held to, e.g. "≥ 50%"
    detail: str  # what a reader should look at: the worst class, the layer
    evidence: str  # where the evidence is: a relative link

    STATUSES = ("pass", "warn", "fail")


def judged(failing: bool, warning: bool) -> str:
    return "fail" if failing else ("warn" if warning else "pass")


@dataclass(frozen=True)
class SearchEntry:
    title: str  # what the result list shows
    kind: str  # layer, unit, cluster, class, page
    url: str  # relative to the site root
    terms: str  # extra words it is found by

    def as_dict(self) -> dict[str, str]:
        return {"t": self.title, "k": self.kind, "u": self.url, "s": self.terms}


@dataclass(frozen=True)
class ExtraPage:
    """A page of its own for part of a section's layer view, e.g. a gallery's units 64–127, so
    that no page of a layer with hundreds of units grows heavy."""

    filename: str
    title: str
    layer: str
    view: Any  # shown by the section's `layer` macro, like a layer view


@dataclass
class SectionView:
    """A section's views: one per layer page it appears on, and its block on its cross-layer page."""

    layers: dict[str, Any] = field(default_factory=dict)
    overview: Any = None
    scripts: list[str] = field(default_factory=list)  # scripts its cross-layer page loads
    pages: list[ExtraPage] = field(default_factory=list)


def layer_filename(slug: str) -> str:
    return f"layer-{slug}.html"


class ViewKit:
    """Everything a section's views may use: the picture writer, the site's assets, the build's
    settings, class and layer names, and what the other sections say about units."""

    def __init__(
        self, site_root: Path, config: Any, class_names: list[str], layers: list[LayerInfo], unit_pictures: int | None = None
    ) -> None:
        self.site_root = site_root
        self.pictures = PictureWriter(site_root)
        self.config = config
        # Pictures for at most this many units per layer (the most important), when the site would
        # otherwise outgrow its size budget; None: every unit's.
        self.unit_pictures = unit_pictures
        self.class_names = class_names
        self.layers = layers
        self.labels: dict[tuple[str, int], list[UnitLabel]] = defaultdict(list)
        self.rankings: dict[str, dict[str, list[int]]] = {}  # section -> layer -> units, most important first

    def class_name(self, index: int | None) -> str:
        if index is None:
            return "—"
        return self.class_names[index] if 0 <= index < len(self.class_names) else str(index)

    def slug(self, layer: str) -> str | None:
        """The layer's file-name-safe name, or None for names that are no layer page ('input')."""
        return next((info.slug for info in self.layers if info.name == layer), None)

    def layer_file(self, layer: str) -> str:
        return layer_filename(self.slug(layer) or layer)

    def add_labels(self, labels: list[UnitLabel]) -> None:
        for label in labels:
            self.labels[(label.layer, label.unit)].append(label)

    def labels_for(self, layer: str, unit: int, exclude: str | None = None) -> list[UnitLabel]:
        return [label for label in self.labels.get((layer, unit), []) if label.section != exclude]

    def text_asset(self, relative: str, text: str) -> str:
        """Write a text file into the site (a page or a script); returns its relative path."""
        target = self.site_root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        return relative

    def vendor(self, name: str) -> str:
        """Copy a vendored file (templates/vendor/) into assets/vendor/; returns its relative path."""
        relative = f"assets/vendor/{name}"
        target = self.site_root / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(resources.files("dossier.templates").joinpath("vendor", name).read_bytes())
        return relative
