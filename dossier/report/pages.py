"""The structure of a dossier: page views built from results, shared by the site and the PDF.

Views carry display-ready values (names, relative picture paths, percentages) so templates only
lay them out. Pictures are written here, once, and both renderings point at the same files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dossier.analyses.model_card import ModelCardResult
from dossier.analyses.purity import LayerPurity, PurityResult
from dossier.layers import LayerInfo
from dossier.provenance import Provenance
from dossier.report.pictures import PictureWriter, class_colour, purity_by_depth_chart


@dataclass(frozen=True)
class Picture:
    src: str
    caption: str
    title: str = ""


@dataclass(frozen=True)
class Bar:
    label: str
    count: int
    percent: float
    colour: str


@dataclass(frozen=True)
class ClusterView:
    number: int
    size: int
    majority: str
    majority_share: float
    bars: list[Bar]
    pictures: list[Picture]


@dataclass(frozen=True)
class PurityView:
    result: LayerPurity
    clusters: list[ClusterView]


@dataclass(frozen=True)
class SampleView:
    picture: Picture
    true_class: str
    predictions: list[tuple[str, float, bool]]  # class, probability, is the true class


@dataclass
class LayerPage:
    info: LayerInfo
    depth: int
    filename: str
    purity: PurityView | None
    previous: "LayerPage | None" = None
    next: "LayerPage | None" = None


@dataclass
class Report:
    """Everything both renderings show."""

    title: str
    author: str | None
    provenance: Provenance
    class_names: list[str]
    layers: list[LayerPage]
    model_card: ModelCardResult
    samples: list[SampleView]
    purity: PurityResult | None
    purity_chart: str | None
    failures: dict[str, str]
    config_dump: dict[str, Any]
    pdf_name: str | None = "dossier.pdf"
    pages: list[tuple[str, str]] = field(default_factory=list)  # (file, title) of cross-layer pages

    @property
    def untrained(self) -> bool:
        return not self.provenance.trained

    def class_name(self, index: int) -> str:
        return self.class_names[index] if 0 <= index < len(self.class_names) else str(index)


def layer_filename(info: LayerInfo) -> str:
    return f"layer-{info.slug}.html"


def build_report(
    *,
    title: str,
    author: str | None,
    provenance: Provenance,
    class_names: list[str],
    layers: list[LayerInfo],
    results: dict[str, Any],
    failures: dict[str, str],
    config_dump: dict[str, Any],
    pictures: PictureWriter,
) -> Report:
    """Turn results into page views, writing every picture the pages show."""
    purity: PurityResult | None = results.get("purity")
    card: ModelCardResult = results["model_card"]
    pages = [
        LayerPage(
            info=info,
            depth=depth,
            filename=layer_filename(info),
            purity=_purity_view(purity, info.name, info.slug, class_names, pictures) if purity else None,
        )
        for depth, info in enumerate(layers, start=1)
    ]
    for before, after in zip(pages, pages[1:]):
        before.next, after.previous = after, before
    cross_layer = [("purity.html", "Purity by depth")] if purity else []
    return Report(
        title=title,
        author=author,
        provenance=provenance,
        class_names=class_names,
        layers=pages,
        model_card=card,
        samples=_sample_views(card, class_names, pictures),
        purity=purity,
        purity_chart=_purity_chart(purity, pictures) if purity else None,
        failures=failures,
        config_dump=config_dump,
        pages=cross_layer,
    )


def _purity_view(
    result: PurityResult, layer: str, slug: str, class_names: list[str], pictures: PictureWriter
) -> PurityView | None:
    entry = result.for_layer(layer)
    if entry is None:
        return None
    clusters = []
    for number, cluster in enumerate(entry.clusters, start=1):
        bars = [
            Bar(_name(class_names, c), n, 100.0 * n / cluster.size, class_colour(c))
            for c, n in enumerate(cluster.composition)
            if n
        ]
        images = [
            Picture(
                src=pictures.image(pixels, f"purity-{slug}-c{number}-{i}"),
                caption=_name(class_names, label),
            )
            for i, (pixels, label) in enumerate(zip(cluster.thumbnails, cluster.representative_classes))
        ]
        majority = cluster.composition[cluster.majority_class]
        clusters.append(
            ClusterView(
                number=number,
                size=cluster.size,
                majority=_name(class_names, cluster.majority_class),
                majority_share=100.0 * majority / cluster.size if cluster.size else 0.0,
                bars=sorted(bars, key=lambda b: -b.count),
                pictures=images,
            )
        )
    return PurityView(entry, clusters)


def _purity_chart(result: PurityResult, pictures: PictureWriter) -> str:
    figure = purity_by_depth_chart(
        [entry.layer for entry in result.layers],
        [entry.purity for entry in result.layers],
        [entry.nmi for entry in result.layers],
        [entry.ari for entry in result.layers],
        result.chance_purity,
    )
    return pictures.chart(figure, "purity-by-depth")


def _sample_views(card: ModelCardResult, class_names: list[str], pictures: PictureWriter) -> list[SampleView]:
    views = []
    for number, sample in enumerate(card.samples):
        predictions = [
            (_name(class_names, c), p, c == sample.label)
            for c, p in zip(sample.top_classes, sample.top_probabilities)
        ]
        views.append(
            SampleView(
                picture=Picture(pictures.image(sample.thumbnail, f"sample-{number}"), sample.name),
                true_class=_name(class_names, sample.label),
                predictions=predictions,
            )
        )
    return views


def _name(class_names: list[str], index: int) -> str:
    return class_names[index] if 0 <= index < len(class_names) else str(index)
