"""Activation-cluster purity (METHODS §6, k-means part; seed 002).

Per recorded layer: k-means with k = number of classes on a class-balanced sample of the layer's
activations; purity, NMI and ARI against the true classes; representative images per cluster.
The input pixels are clustered too, as depth 0: the baseline every layer should beat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from dossier.analyses.base import Analysis, BuildContext, register
from dossier.plan import Cost, Probe, Reduction, random_codes, side_by_side
from dossier.capture import Batch
from dossier.report.kit import Column, CrossPage, Picture, SearchEntry, SectionView, ViewKit
from dossier.report.pictures import class_colour, lines_by_depth
from dossier.results import NOT_EXPORTED, ByLayer
from dossier.sampling import balanced_sample
from dossier.settings import SectionSettings
from dossier.thumbnails import thumbnails

INPUT_LAYER = "input"


class PuritySettings(SectionSettings):
    sample: int = Field(2000, ge=10, description="class-balanced images clustered (memory grows with it, not with the data)")
    max_features: int = Field(2048, gt=0, description="flatten a layer's activations up to this size, else avg-pool")
    n_init: int = Field(4, gt=0, description="k-means restarts")
    representatives: int = Field(6, ge=0, description="images nearest each cluster centre")


@dataclass(frozen=True)
class ClusterSummary:
    size: int
    composition: list[int]  # images of each class in the cluster
    majority_class: int
    representatives: list[int]  # data-set indices nearest the cluster centre
    representative_classes: list[int]
    thumbnails: np.ndarray = field(metadata=NOT_EXPORTED)


@dataclass(frozen=True)
class LayerPurity:
    layer: str
    features: int
    representation: str  # how activations became vectors (flattened or pooled)
    purity: float
    nmi: float
    ari: float
    seed_agreement: float  # ARI between the k-means clusters of two seeds: stability
    clusters: list[ClusterSummary]


@dataclass(frozen=True)
class PurityResult(ByLayer):
    images: int
    per_class: int
    classes: int
    chance_purity: float  # purity of clustering that ignores the data: the largest class share
    layers: list[LayerPurity]  # the input first, then the layers in network order


def purity_score(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Σ over clusters of its most frequent class count, divided by the number of items."""
    total = 0
    for cluster in np.unique(clusters):
        total += np.bincount(labels[clusters == cluster]).max()
    return float(total / len(labels))


def reduce_activation(x: torch.Tensor, max_features: int) -> tuple[torch.Tensor, str]:
    """Batch of activations → N×D vectors: flattened when small enough, else average-pooled."""
    if x.ndim == 2:
        return x.float(), f"vector of {x.shape[1]}"
    if x.ndim != 4:
        return x.flatten(1).float(), f"flattened {tuple(x.shape[1:])}"
    channels, height, width = x.shape[1:]
    shape = f"{channels}×{height}×{width}"
    grid = pooled_grid(channels, height, width, max_features)
    if grid is None:
        return x.flatten(1).float(), f"flattened {shape}"
    pooled = F.adaptive_avg_pool2d(x.float(), grid).flatten(1)
    return pooled, f"average-pooled {shape} to {channels}×{grid[0]}×{grid[1]}"


def pooled_grid(channels: int, height: int, width: int, max_features: int) -> tuple[int, int] | None:
    """The spatial grid a feature map is average-pooled to; None when it is flattened as it is."""
    if channels * height * width <= max_features:
        return None
    side = max(1, math.isqrt(max_features // channels)) if channels <= max_features else 1
    return min(side, height), min(side, width)


def code_size(shape: tuple[int, ...] | None, max_features: int) -> int:
    """How many features reduce_activation makes of one image's activation of this shape."""
    if not shape:
        return 0
    if len(shape) != 3:
        return int(np.prod(shape))
    grid = pooled_grid(*shape, max_features)
    return int(np.prod(shape)) if grid is None else shape[0] * grid[0] * grid[1]


def code_sizes(ctx: BuildContext, max_features: int) -> list[int]:
    """The input's and every recorded layer's code size: what the clustering and probes read."""
    return [code_size(ctx.config.model.input_size, max_features)] + [
        code_size(layer.output_shape, max_features) for layer in ctx.recorded_layers
    ]


def balanced_count(labels: np.ndarray, size: int) -> int:
    """How many images balanced_sample() takes at most `size` of."""
    classes = np.unique(labels)
    return len(classes) * min(min(int((labels == c).sum()) for c in classes), max(1, size // len(classes)))


class FeatureCollector:
    """Keeps the reduced activation vectors of every recorded layer (k-means needs them all)."""

    def __init__(self, layer_names: list[str], max_features: int, keep: np.ndarray | None = None) -> None:
        self.layer_names = layer_names
        self.max_features = max_features
        self.keep = None if keep is None else torch.from_numpy(np.asarray(keep))  # data-set indices to keep
        self.features: dict[str, list[np.ndarray]] = {n: [] for n in [INPUT_LAYER, *layer_names]}
        self.representation: dict[str, str] = {}
        self.indices: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []

    def update(self, batch: Batch) -> None:
        if self.keep is not None:
            batch = batch.rows(torch.isin(batch.indices.cpu(), self.keep).to(batch.indices.device))
        sources = {INPUT_LAYER: batch.images}
        # A module the forward pass never calls (an auxiliary head in eval mode) records nothing.
        sources.update({n: batch.activations[n] for n in self.layer_names if n in batch.activations})
        for name, tensor in sources.items():
            vectors, how = reduce_activation(tensor, self.max_features)
            self.features[name].append(vectors.cpu().numpy().astype(np.float32))
            self.representation[name] = how
        self.indices.append(batch.indices.cpu().numpy())
        self.labels.append(batch.labels.cpu().numpy())

    def merge(self, other: "FeatureCollector") -> None:
        for name, parts in other.features.items():
            self.features[name] += parts
        self.representation.update(other.representation)
        self.indices += other.indices
        self.labels += other.labels


@register
class Purity(Analysis):
    name = "purity"
    title = "Activation-cluster purity"
    order = 60
    result_type = PurityResult
    settings_type = PuritySettings
    page = CrossPage("purity.html", "Purity by depth")
    reductions = (Reduction("sample", (1000, 500), "k-means purity on a smaller class-balanced sample", rank=3),)

    def consumer(self, ctx: BuildContext) -> FeatureCollector:
        settings = self.settings(ctx.config)
        keep = balanced_sample(ctx.dataset.labels, settings.sample, ctx.config.seed)
        return FeatureCollector([layer.name for layer in ctx.recorded_layers], settings.max_features, keep)

    def cost(self, ctx: BuildContext, probe: Probe, settings: PuritySettings) -> Cost:
        images = balanced_count(ctx.dataset.labels, settings.sample)
        classes = len(ctx.dataset.class_names)
        sizes = code_sizes(ctx, settings.max_features)
        widest = max(sizes)
        codes = random_codes(images, widest, classes, ctx.config.seed)[0]
        kmeans = probe.cpu_seconds(("k-means", images, widest, settings.n_init),
                                   lambda: kmeans_clusters(codes, classes, settings.n_init, ctx.config.seed))
        thumbnails = classes * settings.representatives * probe.image_seconds()
        tasks = [kmeans * size / widest + thumbnails for size in sizes]
        work = f"{len(sizes)} layers × k-means (k = {classes}) on {images:,} images"
        return Cost(work, side_by_side(tasks, ctx.executor.workers), images * sum(sizes) * 4 / 2**20)

    def finish(self, ctx: BuildContext, consumer: FeatureCollector) -> PurityResult:
        labels_all = np.concatenate(consumer.labels)
        rows = balanced_sample(labels_all, len(labels_all), ctx.config.seed)
        labels = labels_all[rows]
        indices = np.concatenate(consumer.indices)[rows]
        recorded = [name for name, parts in consumer.features.items() if parts]
        jobs = [
            (name, consumer.representation[name], np.concatenate(consumer.features[name])[rows], labels, indices)
            for name in recorded
        ]
        layers = ctx.map(_layer_purity, jobs, cpu=True, desc="purity k-means")
        return PurityResult(
            images=len(rows),
            per_class=len(rows) // max(1, len(np.unique(labels))),
            classes=len(ctx.dataset.class_names),
            chance_purity=float(np.bincount(labels).max() / len(labels)),
            layers=layers,
        )


    def view(self, result: PurityResult, kit: ViewKit) -> SectionView:
        layers = {
            entry.layer: PurityView(entry, cluster_views(entry.clusters, f"purity-{slug}", kit), result)
            for entry in result.layers
            if (slug := kit.slug(entry.layer)) is not None
        }
        chart = kit.pictures.chart(
            lines_by_depth(
                [e.layer for e in result.layers],
                {"purity": [e.purity for e in result.layers], "NMI": [e.nmi for e in result.layers],
                 "ARI": [e.ari for e in result.layers]},
                result.chance_purity, "score", "layer (network order; 'input' = raw pixels)",
            ),
            "purity-by-depth",
        )
        return SectionView(layers=layers, overview=PurityOverview(result, chart))

    def columns(self, view: SectionView, kit: ViewKit) -> list[Column]:
        return [
            Column(header, {name: f"{getattr(v.result, key):.3f}" for name, v in view.layers.items()})
            for header, key in (("purity", "purity"), ("NMI", "nmi"), ("ARI", "ari"))
        ]

    def search_entries(self, view: SectionView, kit: ViewKit) -> list[SearchEntry]:
        return [
            SearchEntry(
                f"{name} activation cluster {cluster.number}: {cluster.majority} ({cluster.majority_share:.0f}%)",
                "cluster",
                f"{kit.layer_file(name)}#activation-clusters",
                f"activation cluster purity class {cluster.majority}",
            )
            for name, layer_view in view.layers.items()
            for cluster in layer_view.clusters
        ]

    def finding(self, result: PurityResult) -> str | None:
        if not result.layers:
            return None
        peak = max(result.layers, key=lambda entry: entry.purity)
        return (
            f"k-means purity peaks at {peak.layer} ({peak.purity:.3f}, against {result.layers[0].purity:.3f} "
            f"for the raw pixels and {result.chance_purity:.3f} by chance)."
        )


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
    run: PurityResult  # the whole run: sample size, chance


@dataclass(frozen=True)
class PurityOverview:
    result: PurityResult
    chart: str


def cluster_views(clusters: list[ClusterSummary], stem: str, kit: ViewKit) -> list[ClusterView]:
    """Views of clusters of images (k-means or commute time): composition bars and pictures."""
    views = []
    for number, cluster in enumerate(clusters, start=1):
        bars = [
            Bar(kit.class_name(c), n, 100.0 * n / cluster.size, class_colour(c))
            for c, n in enumerate(cluster.composition)
            if n
        ]
        images = [
            Picture(kit.pictures.sprite(pixels, stem), caption=kit.class_name(label))
            for i, (pixels, label) in enumerate(zip(cluster.thumbnails, cluster.representative_classes))
        ]
        majority = cluster.composition[cluster.majority_class]
        views.append(
            ClusterView(
                number=number,
                size=cluster.size,
                majority=kit.class_name(cluster.majority_class),
                majority_share=100.0 * majority / cluster.size if cluster.size else 0.0,
                bars=sorted(bars, key=lambda b: -b.count),
                pictures=images,
            )
        )
    return views


def _layer_purity(ctx: BuildContext, job: tuple) -> LayerPurity:
    name, representation, vectors, labels, indices = job
    settings = ctx.config.analyses.purity
    classes = len(ctx.dataset.class_names)
    assignment, distances = kmeans_clusters(vectors, classes, settings.n_init, ctx.config.seed)
    again, _ = kmeans_clusters(vectors, classes, settings.n_init, ctx.config.seed + 1)
    return LayerPurity(
        layer=name,
        features=int(vectors.shape[1]),
        representation=representation,
        purity=purity_score(labels, assignment),
        nmi=float(normalized_mutual_info_score(labels, assignment)),
        ari=float(adjusted_rand_score(labels, assignment)),
        seed_agreement=float(adjusted_rand_score(assignment, again)),
        clusters=summarise_clusters(ctx, assignment, distances, labels, indices, classes, settings.representatives),
    )


def kmeans_clusters(
    vectors: np.ndarray, classes: int, n_init: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """k-means with k = number of classes: each row's cluster and its distance to the centre."""
    k = min(classes, len(vectors))
    kmeans = KMeans(n_clusters=k, n_init=n_init, random_state=seed)
    assignment = kmeans.fit_predict(vectors)
    distances = np.linalg.norm(vectors - kmeans.cluster_centers_[assignment], axis=1)
    return assignment, distances


def summarise_clusters(
    ctx: BuildContext,
    assignment: np.ndarray,
    distances: np.ndarray,
    labels: np.ndarray,
    indices: np.ndarray,
    classes: int,
    representatives: int,
) -> list[ClusterSummary]:
    """Size, class composition and the images nearest the centre (smallest `distances`) of each
    cluster, largest first."""
    clusters = []
    for cluster in np.unique(assignment):
        members = np.flatnonzero(assignment == cluster)
        nearest = members[np.argsort(distances[members])[:representatives]]
        kept, pictures = thumbnails(ctx.dataset, [int(i) for i in indices[nearest]])
        composition = np.bincount(labels[members], minlength=classes)
        clusters.append(
            ClusterSummary(
                size=len(members),
                composition=composition.tolist(),
                majority_class=int(composition.argmax()),
                representatives=kept,
                representative_classes=[int(ctx.dataset.labels[i]) for i in kept],
                thumbnails=pictures,
            )
        )
    return sorted(clusters, key=lambda c: -c.size)
