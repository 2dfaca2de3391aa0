"""The structure of a dossier: page views built from results, shared by the site and the PDF.

Views carry display-ready values (names, relative picture paths, percentages) so templates only
lay them out. Pictures are written here, once, and both renderings point at the same files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dossier.analyses.commute import CommuteResult, LayerCommute
from dossier.analyses.embedding import EmbeddingResult
from dossier.analyses.galleries import GalleriesResult, UnitCard
from dossier.analyses.kernel_clusters import KernelClustersResult, LayerKernelClusters
from dossier.analyses.model_card import ModelCardResult
from dossier.analyses.neuron_types import LayerTypes, NeuronTypesResult
from dossier.analyses.probes import PROBES, LayerProbes, ProbesResult
from dossier.analyses.purity import LayerPurity, PurityResult
from dossier.analyses.relevance import ExplainedImage, LayerRanking, RelevanceResult
from dossier.analyses.tda_rings import LayerRings, TdaRingsResult
from dossier.analyses.translation import TranslationResult
from dossier.layers import LayerInfo
from dossier.provenance import Provenance
from dossier.report.jsdata import js_global
from dossier.report.pictures import (
    PictureWriter,
    class_colour,
    cumulative_curve,
    dendrogram_and_scatter,
    embedding_picture,
    grey_map,
    lines_by_depth,
    kernel_grid,
    mapper_picture,
    overlay,
    purity_by_depth_chart,
    signed_heatmap,
    strip,
    translation_curves,
    translation_heatmap,
    type_share_chart,
)


@dataclass(frozen=True)
class Picture:
    src: str
    caption: str


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


@dataclass(frozen=True)
class KernelView:
    result: LayerKernelClusters
    figure: str | None  # dendrogram and scatter
    kernels: str | None  # representative and sign-majority kernels


@dataclass(frozen=True)
class RingsView:
    result: LayerRings
    picture: str | None  # the static Mapper graph
    mapper_page: str | None  # the interactive kepler-mapper page


@dataclass(frozen=True)
class ControlView:
    """The first conv layer of the same architecture at random initialisation."""

    kernels: KernelView | None
    rings: RingsView | None


@dataclass(frozen=True)
class ExplainedView:
    result: ExplainedImage
    anchor: str
    picture: str
    heatmap: str  # LRP relevance over the image
    gradcam: str | None
    true_heatmap: str | None  # for a mistake: relevance for the true class


@dataclass(frozen=True)
class LayerImageRow:
    image: ExplainedView
    heatmap: str  # this layer's relevance, summed over channels
    activations: list[tuple[int, str]]  # (channel, picture) of the strongest channels


@dataclass(frozen=True)
class LayerRelevanceView:
    ranking: LayerRanking
    curve: str
    rows: list[LayerImageRow]


@dataclass(frozen=True)
class CardView:
    card: UnitCard
    max_image: str
    min_image: str
    top: str | None  # strip of the top exemplars
    bottom: str | None
    patches: str | None
    in_pdf: bool


@dataclass(frozen=True)
class GalleryView:
    cards: list[CardView]
    pdf_rule: str

    def card(self, unit: int) -> CardView | None:
        return self.cards[unit] if 0 <= unit < len(self.cards) else None


@dataclass(frozen=True)
class CommuteView:
    result: LayerCommute
    clusters: list[ClusterView]


@dataclass(frozen=True)
class ActivationSpace:
    """The cross-layer charts of the activation-space analyses."""

    commute: CommuteResult | None
    commute_chart: str | None
    probes: ProbesResult | None
    probes_chart: str | None
    translation: TranslationResult | None
    translation_chart: str | None
    translation_heatmap: str | None
    embedding: EmbeddingResult | None
    embedding_picture: str | None
    embedding_script: str | None  # assets/embedding-data.js: the interactive map's points


@dataclass
class LayerPage:
    info: LayerInfo
    depth: int
    filename: str
    purity: PurityView | None
    types: LayerTypes | None = None
    kernels: KernelView | None = None
    rings: RingsView | None = None
    control: ControlView | None = None
    relevance: LayerRelevanceView | None = None
    commute: CommuteView | None = None
    probes: LayerProbes | None = None
    gallery: GalleryView | None = None
    previous: "LayerPage | None" = None
    next: "LayerPage | None" = None

    @property
    def dead_share(self) -> float | None:
        return self.types.dead / self.types.units if self.types and self.types.border_activations is not None else None

    @property
    def border_share(self) -> float | None:
        return self.types.border_weights / self.types.units if self.types else None

    @property
    def colour_blind_share(self) -> float | None:
        if self.gallery is None or not self.gallery.cards or self.gallery.cards[0].card.colour_blind is None:
            return None
        return sum(bool(c.card.colour_blind) for c in self.gallery.cards) / len(self.gallery.cards)

    def colour_blind(self, unit: int) -> bool | None:
        card = self.gallery.card(unit) if self.gallery else None
        return card.card.colour_blind if card else None


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
    pdf_name: str | None = "dossier.pdf"
    pages: list[tuple[str, str]] = field(default_factory=list)  # (file, title) of cross-layer pages
    neuron_types: NeuronTypesResult | None = None
    types_chart: str | None = None
    kernel_clusters: KernelClustersResult | None = None
    tda_rings: TdaRingsResult | None = None
    mapper_pages: dict[str, str] = field(default_factory=dict)  # relative path -> kepler-mapper HTML
    relevance: RelevanceResult | None = None
    explained: list[ExplainedView] = field(default_factory=list)
    space: ActivationSpace | None = None
    galleries: GalleriesResult | None = None
    finding: str | None = None  # the index's number-backed paragraph
    extra_assets: dict[str, str] = field(default_factory=dict)  # relative path -> text

    @property
    def untrained(self) -> bool:
        return not self.provenance.trained

    def class_name(self, index: int) -> str:
        return _name(self.class_names, index)


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
    pictures: PictureWriter,
    pdf_units: int = 8,
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
    mapper_pages: dict[str, str] = {}
    _add_weight_space(pages, results, pictures, mapper_pages)
    relevance: RelevanceResult | None = results.get("relevance")
    explained = _explained_views(relevance, pictures) if relevance else []
    if relevance:
        _add_layer_relevance(pages, relevance, explained, pictures)
    types: NeuronTypesResult | None = results.get("neuron_types")
    cross_layer = [("purity.html", "Purity by depth")] if purity else []
    if types:
        cross_layer.append(("neuron-types.html", "Neuron types by depth"))
    if relevance:
        cross_layer.append(("relevance.html", "Relevance heatmaps"))
    galleries: GalleriesResult | None = results.get("galleries")
    if galleries:
        _add_galleries(pages, galleries, relevance, pictures, pdf_units)
    extra_assets: dict[str, str] = {}
    space = _activation_space(pages, results, class_names, pictures, extra_assets)
    if space:
        cross_layer.append(("activation-space.html", "Activation space"))
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
        pages=cross_layer,
        neuron_types=types,
        types_chart=_types_chart(types, pages, pictures) if types and types.layers else None,
        kernel_clusters=results.get("kernel_clusters"),
        tda_rings=results.get("tda_rings"),
        mapper_pages=mapper_pages,
        relevance=relevance,
        explained=explained,
        space=space,
        galleries=galleries,
        finding=finding(purity, results.get("probes"), results.get("translation")),
        extra_assets=extra_assets,
    )


def _add_galleries(
    pages: list[LayerPage], result: GalleriesResult, relevance: RelevanceResult | None, pictures: PictureWriter,
    pdf_units: int,
) -> None:
    for page in pages:
        layer = result.for_layer(page.info.name)
        if layer is None:
            continue
        chosen, rule = _pdf_units(page, relevance, pdf_units)
        cards = []
        for card in layer.units:
            stem = f"gallery-{page.info.slug}-{card.unit}"
            cards.append(
                CardView(
                    card=card,
                    max_image=pictures.image(card.max_image, f"{stem}-max"),
                    min_image=pictures.image(card.min_image, f"{stem}-min"),
                    top=_strip(pictures, result.pictures, card.top, f"{stem}-top"),
                    bottom=_strip(pictures, result.pictures, card.bottom, f"{stem}-bottom"),
                    patches=pictures.image(strip(card.patches), f"{stem}-patches") if len(card.patches) else None,
                    in_pdf=card.unit in chosen,
                )
            )
        page.gallery = GalleryView(cards, rule)


def _strip(pictures: PictureWriter, pool: dict[int, np.ndarray], indices: list[int], name: str) -> str | None:
    images = [pool[i] for i in indices if i in pool]
    return pictures.image(strip(images), name) if images else None


def _pdf_units(page: LayerPage, relevance: RelevanceResult | None, count: int) -> tuple[set[int], str]:
    """The units a layer shows in the PDF: the most class-selective, then the most relevant."""
    selective = sorted(
        (r for r in (page.types.rows if page.types else []) if r.selectivity is not None), key=lambda r: -r.selectivity
    )
    chosen = [r.unit for r in selective[: (count + 1) // 2]]
    ranking = relevance.ranking_for(page.info.name) if relevance else None
    for unit in ranking.ranking if ranking else []:
        if len(chosen) >= count:
            break
        if unit not in chosen:
            chosen.append(unit)
    rule = f"the {(count + 1) // 2} most class-selective units, then the most relevant (relevance ranking), {count} in all"
    return set(chosen), rule


def finding(purity: PurityResult | None, probes: ProbesResult | None, translation: TranslationResult | None) -> str | None:
    """Where the class becomes readable, written from the numbers."""
    sentences = []
    if probes and len(probes.layers) > 1:
        linear = [(entry.layer, entry.accuracy["logistic regression"]) for entry in probes.layers]
        best = max(value for _, value in linear)
        first, readable = next((layer, value) for layer, value in linear if value >= best - 0.05)
        sentences.append(
            f"The class becomes linearly readable at {first}: the logistic-regression probe's accuracy rises from "
            f"{linear[0][1]:.1%} on the raw pixels to {readable:.1%} there (best {best:.1%}; chance {probes.chance:.1%})."
        )
    if purity and purity.layers:
        peak = max(purity.layers, key=lambda entry: entry.purity)
        sentences.append(
            f"k-means purity peaks at {peak.layer} ({peak.purity:.3f}, against {purity.layers[0].purity:.3f} "
            f"for the raw pixels and {purity.chance_purity:.3f} by chance)."
        )
    if translation and translation.curves:
        worst = min(translation.curves, key=lambda curve: curve.accuracy[-1])
        sentences.append(
            f"Shifting the images by {translation.max_shift} px along {worst.axis} changes accuracy from "
            f"{worst.accuracy[0]:.1%} to {worst.accuracy[-1]:.1%}."
        )
    return " ".join(sentences) or None


def _activation_space(
    pages: list[LayerPage], results: dict[str, Any], class_names: list[str], pictures: PictureWriter,
    extra_assets: dict[str, str],
) -> ActivationSpace | None:
    commute: CommuteResult | None = results.get("commute")
    probes: ProbesResult | None = results.get("probes")
    translation: TranslationResult | None = results.get("translation")
    embedding: EmbeddingResult | None = results.get("embedding")
    if not (commute or probes or translation or embedding):
        return None
    for page in pages:
        entry = commute.for_layer(page.info.name) if commute else None
        if entry:
            page.commute = CommuteView(entry, _cluster_views(entry.clusters, f"commute-{page.info.slug}", class_names, pictures))
        page.probes = probes.for_layer(page.info.name) if probes else None
    commute_chart = probes_chart = curves = heatmap = embedding_png = script = None
    if commute and commute.layers:
        names = [e.layer for e in commute.layers]
        commute_chart = pictures.chart(
            lines_by_depth(
                names,
                {
                    "Euclidean k-means": [e.euclidean.purity for e in commute.layers],
                    "raw commute time": [e.raw.purity for e in commute.layers],
                    "corrected commute distance": [e.corrected.purity for e in commute.layers],
                    "degree-explained share (raw)": [e.degree_explained_raw for e in commute.layers],
                },
                None, "purity / share", "layer (network order)",
            ),
            "commute-by-depth",
        )
    if probes and probes.layers:
        names = [e.layer for e in probes.layers]
        series = {probe: [e.accuracy[probe] for e in probes.layers] for probe in PROBES}
        probes_chart = pictures.chart(
            lines_by_depth(names, series, probes.chance, "cross-validated accuracy", "layer ('input' = raw pixels)"),
            "probes-by-depth",
        )
    if translation and translation.curves:
        curves = pictures.chart(
            translation_curves([(c.axis, c.shifts, c.true_probability, c.accuracy) for c in translation.curves]),
            "translation-curves",
        )
        layers = list(translation.curves[0].cosine_distance)
        columns = [f"{c.axis}+{s}" for c in translation.curves for s in c.shifts]
        values = np.array([[d for c in translation.curves for d in c.cosine_distance[layer]] for layer in layers])
        heatmap = pictures.chart(translation_heatmap(layers, columns, values), "translation-heatmap")
    if embedding and embedding.points:
        points = np.array(embedding.points)
        embedding_png = pictures.chart(
            embedding_picture(points, np.array(embedding.labels), embedding.mistakes, embedding.mistake_thumbnails, class_names),
            "embedding-map",
        )
        script = "assets/embedding-data.js"
        extra_assets[script] = _embedding_script(embedding, class_names, pictures)
    return ActivationSpace(commute, commute_chart, probes, probes_chart, translation, curves, heatmap, embedding, embedding_png, script)


def _embedding_script(embedding: EmbeddingResult, class_names: list[str], pictures: PictureWriter) -> str:
    thumbs = {
        position: pictures.image(picture, f"embedding-mistake-{n}")
        for n, (position, picture) in enumerate(zip(embedding.mistakes, embedding.mistake_thumbnails))
    }
    data = {
        "classes": class_names,
        "colours": [class_colour(c) for c in range(len(class_names))],
        "points": [
            [round(x, 4), round(y, 4), label, predicted, thumbs.get(n, "")]
            for n, ((x, y), label, predicted) in enumerate(zip(embedding.points, embedding.labels, embedding.predicted))
        ],
    }
    return js_global("DOSSIER_EMBEDDING", data)


def _explained_views(result: RelevanceResult, pictures: PictureWriter) -> list[ExplainedView]:
    views = []
    for n, image in enumerate(result.images):
        stem = f"relevance-{n}"
        views.append(
            ExplainedView(
                result=image,
                anchor=f"image-{n}",
                picture=pictures.image(image.thumbnail, f"{stem}-image"),
                heatmap=pictures.image(overlay(image.thumbnail, image.heatmap), f"{stem}-lrp"),
                gradcam=pictures.image(overlay(image.thumbnail, image.gradcam, signed=False), f"{stem}-gradcam")
                if image.gradcam is not None else None,
                true_heatmap=pictures.image(overlay(image.thumbnail, image.true_heatmap), f"{stem}-lrp-true")
                if image.true_heatmap is not None else None,
            )
        )
    return views


def _add_layer_relevance(
    pages: list[LayerPage], result: RelevanceResult, explained: list[ExplainedView], pictures: PictureWriter
) -> None:
    for page in pages:
        ranking = result.ranking_for(page.info.name)
        if ranking is None:
            continue
        slug = page.info.slug
        rows = []
        for n, view in enumerate(explained):
            image = view.result
            size = image.thumbnail.shape[:2]
            heatmap = pictures.image(signed_heatmap(image.layer_heatmaps[page.info.name], size), f"relevance-{slug}-{n}")
            maps = image.activation_maps[page.info.name]
            activations = [
                (channel, pictures.image(grey_map(values, size), f"activation-{slug}-{n}-{channel}"))
                for channel, values in zip(maps.channels, maps.maps)
            ]
            rows.append(LayerImageRow(view, heatmap, activations))
        curve = pictures.chart(cumulative_curve(ranking.cumulative, page.info.name), f"relevance-{slug}-curve")
        page.relevance = LayerRelevanceView(ranking, curve, rows)


def _add_weight_space(
    pages: list[LayerPage], results: dict[str, Any], pictures: PictureWriter, mapper_pages: dict[str, str]
) -> None:
    types: NeuronTypesResult | None = results.get("neuron_types")
    kernels: KernelClustersResult | None = results.get("kernel_clusters")
    rings: TdaRingsResult | None = results.get("tda_rings")
    for page in pages:
        name, slug = page.info.name, page.info.slug
        page.types = types.for_layer(name) if types else None
        entry = kernels.for_layer(name) if kernels else None
        page.kernels = _kernel_view(entry, slug, pictures) if entry else None
        ring = rings.for_layer(name) if rings else None
        page.rings = _rings_view(ring, slug, pictures, mapper_pages) if ring else None
        control_kernels = kernels.control if kernels and kernels.control and kernels.control.layer == name else None
        control_rings = rings.control if rings and rings.control and rings.control.layer == name else None
        if control_kernels or control_rings:
            page.control = ControlView(
                _kernel_view(control_kernels, f"{slug}-random-init", pictures) if control_kernels else None,
                _rings_view(control_rings, f"{slug}-random-init", pictures, mapper_pages) if control_rings else None,
            )


def _kernel_view(entry: LayerKernelClusters, slug: str, pictures: PictureWriter) -> KernelView:
    if entry.skipped:
        return KernelView(entry, None, None)
    figure = dendrogram_and_scatter(
        np.array(entry.linkage), entry.clusters, np.array(entry.embedding), np.array(entry.labels), entry.embedding_method
    )
    rows = [
        (f"cluster {g.cluster + 1}\n({g.size} units)", [np.array(k) for k in g.representative_kernels], np.array(g.sign_majority))
        for g in entry.groups
    ]
    return KernelView(
        entry,
        pictures.chart(figure, f"kernels-{slug}-clusters"),
        pictures.chart(kernel_grid(rows), f"kernels-{slug}-representatives"),
    )


def _rings_view(entry: LayerRings, slug: str, pictures: PictureWriter, mapper_pages: dict[str, str]) -> RingsView:
    if entry.skipped or not entry.nodes:
        return RingsView(entry, None, None)
    nodes = [(n.node, n.size, np.array(n.mean_kernel)) for n in entry.nodes]
    picture = pictures.chart(mapper_picture(nodes, entry.edges, seed=0), f"mapper-{slug}")
    page = None
    if entry.mapper_html:
        page = f"assets/mapper/{slug}.html"
        mapper_pages[page] = entry.mapper_html
    return RingsView(entry, picture, page)


def _types_chart(result: NeuronTypesResult, pages: list[LayerPage], pictures: PictureWriter) -> str:
    layers = result.layers
    colour_blind = {page.info.name: page.colour_blind_share for page in pages}
    shares = {
        "dead": [l.dead / l.units if l.border_activations is not None else None for l in layers],
        "border-aware (weights)": [l.border_weights / l.units for l in layers],
        "border-aware (activations)": [
            l.border_activations / l.units if l.border_activations is not None else None for l in layers
        ],
        f"class-selective (SI ≥ {result.selectivity_threshold})": [
            l.selective / l.units if l.selective is not None else None for l in layers
        ],
    }
    if any(colour_blind.get(l.layer) is not None for l in layers):
        shares["colour-blind"] = [colour_blind.get(l.layer) for l in layers]
    figure = type_share_chart([l.layer for l in layers], shares)
    return pictures.chart(figure, "neuron-types-by-depth")


def _purity_view(
    result: PurityResult, layer: str, slug: str, class_names: list[str], pictures: PictureWriter
) -> PurityView | None:
    entry = result.for_layer(layer)
    if entry is None:
        return None
    return PurityView(entry, _cluster_views(entry.clusters, f"purity-{slug}", class_names, pictures))


def _cluster_views(clusters: list, stem: str, class_names: list[str], pictures: PictureWriter) -> list[ClusterView]:
    """Views of clusters of images (k-means or commute time): composition bars and pictures."""
    views = []
    for number, cluster in enumerate(clusters, start=1):
        bars = [
            Bar(_name(class_names, c), n, 100.0 * n / cluster.size, class_colour(c))
            for c, n in enumerate(cluster.composition)
            if n
        ]
        images = [
            Picture(src=pictures.image(pixels, f"{stem}-c{number}-{i}"), caption=_name(class_names, label))
            for i, (pixels, label) in enumerate(zip(cluster.thumbnails, cluster.representative_classes))
        ]
        majority = cluster.composition[cluster.majority_class]
        views.append(
            ClusterView(
                number=number,
                size=cluster.size,
                majority=_name(class_names, cluster.majority_class),
                majority_share=100.0 * majority / cluster.size if cluster.size else 0.0,
                bars=sorted(bars, key=lambda b: -b.count),
                pictures=images,
            )
        )
    return views


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
