"""The comparison's pages, laid out like a dossier's: the same base template, style, navigation,
search and print style, with pages of its own (templates/compare/).

Pages: the overview (differences first), predictions (per class and per image), layers by depth
(both models' numbers), unit matching, heatmaps that moved, and one page per layer with its
matched units side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dossier import __version__
from dossier.analyses import warnings
from dossier.compare.changes import BROKEN, CHANGED, FIXED, METRICS, SHARES, ChangedPrediction, ClassChange, LayerChange
from dossier.compare.charts import matching_by_depth, metrics_by_depth, similarity_map
from dossier.compare.comparison import Comparison, LayerMatching, Side
from dossier.compare.heatmaps import MovedHeatmap
from dossier.compare.matching import UnitPair
from dossier.layers import LayerInfo
from dossier.report.kit import CrossPage, SearchEntry, layer_filename
from dossier.report.pages import GROUP_LIMIT, LayerPage, layer_groups
from dossier.report.pictures import PictureWriter, Sprite, overlay
from dossier.report.render import template_environment, write_assets, write_pdf

PAGES = {
    "predictions": CrossPage("predictions.html", "Predictions"),
    "by_depth": CrossPage("layers.html", "Layers by depth"),
    "units": CrossPage("units.html", "Unit matching"),
    "heatmaps": CrossPage("heatmaps.html", "Heatmaps that moved"),
}
SITE_PAIRS = 64  # matched pairs a layer page shows with pictures (most changed first); the table has all
PDF_PAIRS = 8
PDF_TABLE = 32  # pairs a layer's table lists in the PDF
EXEMPLARS = 3  # top data-set images shown per unit of a pair


@dataclass(frozen=True)
class Stamp:
    """What base.html reads from a dossier's provenance."""

    dossier_version: str
    generated_at: str


@dataclass(frozen=True)
class PredictionView:
    prediction: ChangedPrediction
    picture: Sprite


@dataclass(frozen=True)
class MovedView:
    moved: MovedHeatmap
    picture: Sprite
    heatmap_a: Sprite | None  # None: the relevance vanished
    heatmap_b: Sprite | None


@dataclass(frozen=True)
class UnitPictures:
    max_image: Sprite | None  # None: the unit was not optimised (its dossier's budget left it out)
    top: list[Sprite]


@dataclass(frozen=True)
class PairView:
    pair: UnitPair
    a: UnitPictures | None  # None: that dossier has no gallery of the layer
    b: UnitPictures | None


@dataclass(frozen=True)
class ComparedLayer:
    change: LayerChange
    matching: LayerMatching | None
    pairs: list[PairView]  # the SITE_PAIRS most changed pairs, with pictures; none without galleries
    printed: list[PairView]  # the PDF_PAIRS most changed


@dataclass
class ComparisonReport:
    """Everything the comparison's site and PDF show; reads like a dossier Report to base.html
    and the search (title, provenance, pages, layers, search, pdf_name)."""

    title: str
    comparison: Comparison
    provenance: Stamp
    layers: list[LayerPage]
    views: dict[str, ComparedLayer]  # layer name -> its page's view
    predictions: list[PredictionView]
    heatmaps: list[MovedView]
    charts: dict[str, str]  # name -> picture path
    search: list[SearchEntry]
    pdf_name: str | None = "comparison.pdf"
    export_name: str = "comparison.json"
    pages: list[CrossPage] = field(default_factory=lambda: list(PAGES.values()))
    unit_owner: dict[str, str] = field(default_factory=dict)  # no unit cards: search lists none
    untrained: bool = False  # a comparison states it per model instead of a banner
    plan: None = None  # no budget of its own: each model's reductions are listed with the models
    warnings: list[str] = field(default_factory=list)  # each model's (a model guessing on the data)
    kinds: tuple[str, str, str] = (FIXED, BROKEN, CHANGED)  # how a prediction changed
    pdf_table: int = PDF_TABLE
    metrics: dict[str, tuple[str, Any]] = field(default_factory=lambda: METRICS)

    def number(self, key: str, value: float | None, signed: bool = False) -> str:
        """A METRICS value as the pages print it: shares in percent (a difference in points)."""
        if value is None:
            return "—"
        sign = "+" if signed else ""
        if key in SHARES:
            return f"{100 * value:{sign}.1f}" + (" pts" if signed else "%")
        return f"{value:{sign}.0f}" if key == "kernel_clusters" else f"{value:{sign}.3f}"

    @property
    def classes_by_change(self) -> list[ClassChange]:
        """Classes whose accuracy moved most first, then by how many images changed."""
        def moved(change: ClassChange) -> tuple[float, int]:
            return -abs(change.accuracy.difference or 0.0), -(len(change.fixed) + len(change.broken) + len(change.changed))

        return sorted(self.comparison.accuracy.classes, key=moved)

    @property
    def top_confusion_changes(self) -> list[tuple[int, int, int]]:
        """(true, predicted, B − A) of the confusions that changed most."""
        cells = [
            (t, p, n) for t, row in enumerate(self.comparison.accuracy.confusion_change) for p, n in enumerate(row) if t != p and n
        ]
        return sorted(cells, key=lambda cell: -abs(cell[2]))[:20]

    @property
    def largest_confusion_change(self) -> int:
        return max((abs(n) for row in self.comparison.accuracy.confusion_change for n in row), default=0)

    def predictions_of(self, label: int) -> list[PredictionView]:
        return [view for view in self.predictions if view.prediction.label == label]

    @property
    def parts(self) -> list[tuple[str, CrossPage]]:
        """(macro of templates/compare/sections.html, the page it fills), in page order."""
        return list(PAGES.items())

    def class_name(self, index: int | None) -> str:
        names = self.comparison.class_names
        return "—" if index is None else names[index] if 0 <= index < len(names) else str(index)

    @property
    def layer_groups(self) -> list[tuple[str | None, list[LayerPage]]]:
        if len(self.layers) <= GROUP_LIMIT:
            return [(None, [page]) for page in self.layers]
        return layer_groups(self.layers)

    def layer_page(self, name: str) -> LayerPage:
        return next(page for page in self.layers if page.info.name == name)


def build_comparison_report(comparison: Comparison, a: Side, b: Side, generated_at: str, root: Path) -> ComparisonReport:
    """Write every picture the pages show under root and return what the templates need."""
    pictures = PictureWriter(root)
    layers = _layer_pages(comparison.layers, a.ctx.layers, b.ctx.layers)
    matching = {m.layer: m for m in comparison.matching}
    galleries = (a.results.get("galleries"), b.results.get("galleries"))
    views = {
        change.layer: _compared_layer(change, matching.get(change.layer), galleries, pictures, page.filename.removesuffix(".html"))
        for change, page in zip(comparison.layers, layers)
    }
    report = ComparisonReport(
        title=f"{comparison.a.title} → {comparison.b.title}",
        comparison=comparison,
        provenance=Stamp(__version__, generated_at),
        layers=layers,
        views=views,
        predictions=[PredictionView(p, pictures.sprite(p.thumbnail, "predictions")) for p in comparison.accuracy.predictions],
        heatmaps=[_moved_view(moved, pictures) for moved in comparison.heatmaps.images],
        charts=_charts(comparison, pictures),
        search=[],
        warnings=[f"Model {side}: {w}" for side, results in (("A", a.results), ("B", b.results)) for w in warnings(results)],
    )
    report.search = _search_entries(report)
    pictures.finish()
    return report


def _layer_pages(changes: list[LayerChange], layers_a: list[LayerInfo], layers_b: list[LayerInfo]) -> list[LayerPage]:
    """One page per layer of either model, A's in network order, then B's own; a B layer whose
    file name A already uses gets a suffix."""
    infos = {layer.name: layer for layer in layers_b} | {layer.name: layer for layer in layers_a}
    used: set[str] = set()
    pages = []
    for depth, change in enumerate(changes, start=1):
        info = infos[change.layer]
        slug = info.slug if info.slug.lower() not in used else f"{info.slug}-b"
        used.add(slug.lower())
        pages.append(LayerPage(info, depth, layer_filename(slug)))
    for before, after in zip(pages, pages[1:]):
        before.next, after.previous = after, before
    return pages


def _compared_layer(
    change: LayerChange, matching: LayerMatching | None, galleries: tuple[Any, Any], pictures: PictureWriter, page: str
) -> ComparedLayer:
    cards = [_unit_cards(gallery, change.layer) for gallery in galleries]
    if matching is None or not any(cards):  # no pairs, or no pictures of them (a dense layer)
        return ComparedLayer(change, matching, [], [])
    group = f"compare-{page}"

    def view(pair: UnitPair, group: str) -> PairView:
        return PairView(
            pair,
            _unit_pictures(galleries[0], cards[0].get(pair.a), pictures, group),
            _unit_pictures(galleries[1], cards[1].get(pair.b), pictures, group),
        )

    shown = matching.pairs[:SITE_PAIRS]
    return ComparedLayer(
        change, matching, [view(pair, group) for pair in shown], [view(pair, f"{group}-print") for pair in shown[:PDF_PAIRS]]
    )


def _unit_cards(gallery: Any, layer: str) -> dict[int, Any]:
    entry = gallery.for_layer(layer) if gallery is not None else None
    return {card.unit: card for card in entry.units} if entry is not None else {}


def _unit_pictures(gallery: Any, card: Any, pictures: PictureWriter, group: str) -> UnitPictures | None:
    if card is None:
        return None
    # Both models' galleries hold the same thumbnail of a data-set image: packed once per page.
    top = [pictures.sprite(gallery.pictures[i], group, key=i) for i in card.top[:EXEMPLARS] if i in gallery.pictures]
    return UnitPictures(pictures.sprite(card.max_image, group) if card.optimised else None, top)


def _moved_view(moved: MovedHeatmap, pictures: PictureWriter) -> MovedView:
    def heatmap(values: Any, gone: bool) -> Sprite | None:
        return None if gone else pictures.sprite(overlay(moved.thumbnail, values), "heatmaps")

    return MovedView(
        moved, pictures.sprite(moved.thumbnail, "heatmaps"),
        heatmap(moved.heatmap_a, moved.vanished_a), heatmap(moved.heatmap_b, moved.vanished_b),
    )


def _charts(comparison: Comparison, pictures: PictureWriter) -> dict[str, str]:
    layers = comparison.layers
    charts = {
        "scores": pictures.chart(metrics_by_depth(layers, ["purity", "nmi", "ari", "linear_probe"]), "compare-scores"),
        "types": pictures.chart(metrics_by_depth(layers, list(SHARES)), "compare-types"),
        "weights": pictures.chart(metrics_by_depth(layers, ["kernel_clusters", "ring_score"]), "compare-weights"),
    }
    if comparison.matching:
        charts["matching"] = pictures.chart(matching_by_depth(comparison.matching, comparison.threshold), "compare-matching")
    if any(value is not None for row in comparison.similarity.cka for value in row):
        charts["similarity"] = pictures.chart(similarity_map(comparison.similarity), "compare-similarity")
    return charts


def _search_entries(report: ComparisonReport) -> list[SearchEntry]:
    """Classes (how their accuracy moved) and layers with units lost or new."""
    entries = []
    for change in report.comparison.accuracy.classes:
        name = report.class_name(change.label)
        moved = change.accuracy.difference
        title = f"class {name}" + (f": accuracy {100 * moved:+.1f} points" if moved else "")
        entries.append(SearchEntry(title, "class", f"predictions.html#class-{change.label}", f"class {name} accuracy fixed broken"))
    for name, view in report.views.items():
        if view.matching and (view.matching.lost or view.matching.new):
            entries.append(SearchEntry(
                f"{name}: {len(view.matching.lost)} lost, {len(view.matching.new)} new units", "layer",
                f"{report.layer_page(name).filename}#unpartnered", "lost new units unmatched",
            ))
    return entries


def write_comparison_site(report: ComparisonReport, root: Path) -> None:
    """Every page, with the dossier's assets and search (which read pages, layers, search and
    unit_owner, as a Report has them)."""
    env = template_environment()
    write_assets(report, root)  # type: ignore[arg-type]
    pages: list[tuple[str, str, dict[str, Any]]] = [("index.html", "compare/index.html", {"page_title": "Overview", "breadcrumb": []})]
    for key, page in report.parts:
        pages.append((page.filename, "compare/page.html", {"page_title": page.title, "breadcrumb": [page.title], "page": page, "part": key}))
    for layer in report.layers:
        context = {"page_title": layer.info.name, "breadcrumb": ["Layers", layer.info.name], "current_layer": layer}
        pages.append((layer.filename, "compare/layer.html", context))
    for filename, template, context in pages:
        (root / filename).write_text(env.get_template(template).render(report=report, **context), encoding="utf-8")


def write_comparison_pdf(report: ComparisonReport, root: Path) -> Path:
    return write_pdf(report, root, report.pdf_name or "comparison.pdf", "compare/print.html")  # type: ignore[arg-type]
