"""Kernel clusters per conv layer (METHODS §2; seed 001 §4.2.3.1, Algorithm 5).

Each unit's weights are standardised and reshaped to k²×C_in; Ward's dendrogram on their
Euclidean distances chooses the number of clusters (the largest gap between merge heights);
spectral clustering with that number assigns the units; UMAP places them in 2-D for the scatter.
Representatives are the channel-averaged kernels of the units nearest each cluster's centre.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from pydantic import Field
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist
from sklearn.cluster import SpectralClustering
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

from dossier.analyses.base import NO_CONV_LAYERS, Analysis, BuildContext, register
from dossier.report.kit import Column, SearchEntry, SectionView, ViewKit
from dossier.report.pictures import CLASS_COLOURS
from dossier.results import ByLayer
from dossier.settings import SectionSettings
from dossier.plan import Cost, Probe, side_by_side
from dossier.weights import control_weights, conv_layer_weights, spatial_conv_layers

ONE_BY_ONE_REASON = (
    "1×1 kernels hold a single weight per input channel: they mix channels (channel pooling) and "
    "carry no spatial pattern to cluster, so the seed (001, appendix 7.1) leaves them out."
)
ONLY_ONE_BY_ONE = (
    "every recorded conv layer has 1×1 kernels, a single weight per input channel: they mix channels and carry "
    "no spatial pattern to cluster or to find rings in (the seed, 001 appendix 7.1, leaves them out)"
)
_MIN_UNITS = 4
_MIN_UMAP_UNITS = 10  # below this UMAP's spectral initialisation is ill-posed: PCA instead


class KernelClustersSettings(SectionSettings):
    max_clusters: int = Field(8, ge=2, description="upper bound for the dendrogram's largest-gap choice")
    clusters: int | None = Field(None, ge=2, description="or a fixed number of clusters")
    representatives: int = Field(3, ge=1, description="kernels shown per cluster")
    umap_neighbors: int = Field(30, ge=2, description="UMAP n_neighbors of the scatter plot (seed: 30)")
    umap_min_dist: float = Field(0.0, ge=0, description="UMAP min_dist (seed: 0.0)")


@dataclass(frozen=True)
class KernelCluster:
    cluster: int
    size: int
    members: list[int]
    representatives: list[int]  # units nearest the cluster centre
    representative_kernels: list[list[list[float]]]  # their channel-averaged kernels
    sign_majority: list[list[int]]  # most frequent sign per position: +1, −1 or 0 (tie)


@dataclass(frozen=True)
class LayerKernelClusters:
    layer: str
    units: int
    kernel: tuple[int, int]
    input_channels: int  # per group
    skipped: str | None  # why the layer was not clustered
    clusters: int
    chosen_by: str
    merge_heights: list[float]
    linkage: list[list[float]]  # scipy linkage matrix: the dendrogram
    labels: list[int]  # spectral clustering, per unit
    ward_agreement: float | None  # ARI between the Ward cut and the spectral clusters
    seed_agreement: float | None  # ARI between the spectral clusters of two seeds: stability
    embedding: list[list[float]]  # 2-D position per unit
    embedding_method: str
    groups: list[KernelCluster]


@dataclass(frozen=True)
class KernelClustersResult(ByLayer):
    layers: list[LayerKernelClusters]
    control: LayerKernelClusters | None  # first conv layer of the same architecture, random init


def unit_vectors(weight: np.ndarray) -> np.ndarray:
    """units × (k²·C_in): each unit standardised to mean 0, variance 1, laid out as k² × C_in."""
    units, channels, height, width = weight.shape
    flat = weight.reshape(units, -1)
    centred = flat - flat.mean(axis=1, keepdims=True)
    scale = centred.std(axis=1, keepdims=True)
    standard = centred / np.where(scale > 0, scale, 1.0)
    return standard.reshape(units, channels, height * width).transpose(0, 2, 1).reshape(units, -1)


def largest_gap_clusters(merge_heights: np.ndarray, max_clusters: int) -> int:
    """Clusters left by cutting the dendrogram in its largest gap between merge heights."""
    n = len(merge_heights) + 1
    best_k, best_gap = 2, -1.0
    for k in range(2, min(max_clusters, n - 1) + 1):
        # Cutting between merge n-k-1 and merge n-k leaves k clusters.
        gap = merge_heights[n - k] - merge_heights[n - k - 1]
        if gap > best_gap:
            best_k, best_gap = k, gap
    return best_k


def spectral_labels(vectors: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    """Spectral clustering with an RBF affinity scaled to the data (median squared distance)."""
    squared = pdist(vectors, "sqeuclidean")
    gamma = 1.0 / float(np.median(squared)) if np.median(squared) > 0 else 1.0
    model = SpectralClustering(n_clusters=clusters, affinity="rbf", gamma=gamma, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "graph is not fully connected" on tiny layers
        return model.fit_predict(vectors)


def embed_2d(vectors: np.ndarray, neighbors: int, min_dist: float, seed: int) -> tuple[np.ndarray, str]:
    if len(vectors) < _MIN_UMAP_UNITS:
        return PCA(n_components=2, random_state=seed).fit_transform(vectors), "PCA (too few units for UMAP)"
    import umap  # imported on use: numba compiles it, which only layers with units should pay for

    k = min(neighbors, len(vectors) - 1)
    # A k-NN graph from scikit-learn spares UMAP's own neighbour search, whose numba code would
    # otherwise compile in every process (about 5 s here).
    distances, indices = NearestNeighbors(n_neighbors=k).fit(vectors).kneighbors(vectors)
    reducer = umap.UMAP(
        n_neighbors=k, min_dist=min_dist, n_components=2, random_state=seed,
        precomputed_knn=(indices, distances, None),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_jobs overridden by random_state: determinism is wanted
        return reducer.fit_transform(vectors), f"UMAP (n_neighbors={k}, min_dist={min_dist})"


def cluster_kernels(name: str, weight: np.ndarray, settings, seed: int) -> LayerKernelClusters:
    """Algorithm 5 on one layer's weights (units × C_in × kh × kw)."""
    units, channels, height, width = weight.shape
    base = dict(layer=name, units=units, kernel=(height, width), input_channels=channels)
    if height == 1 and width == 1:
        return _skipped(base, ONE_BY_ONE_REASON)
    if units < _MIN_UNITS:
        return _skipped(base, f"only {units} units: too few to cluster")
    vectors = unit_vectors(weight)
    tree = linkage(vectors, method="ward")
    heights = tree[:, 2]
    if settings.clusters is not None:
        k, chosen_by = min(settings.clusters, units - 1), "set in the config"
    else:
        k = largest_gap_clusters(heights, settings.max_clusters)
        chosen_by = f"largest gap between Ward merge heights (k ≤ {settings.max_clusters})"
    labels = spectral_labels(vectors, k, seed)
    ward = fcluster(tree, t=k, criterion="maxclust")
    embedding, method = embed_2d(vectors, settings.umap_neighbors, settings.umap_min_dist, seed)
    averaged = weight.mean(axis=1)
    groups = [_group(c, labels, vectors, averaged, settings.representatives) for c in range(k)]
    return LayerKernelClusters(
        **base,
        skipped=None,
        clusters=k,
        chosen_by=chosen_by,
        merge_heights=heights.tolist(),
        linkage=tree.tolist(),
        labels=labels.tolist(),
        ward_agreement=float(adjusted_rand_score(ward, labels)),
        seed_agreement=float(adjusted_rand_score(labels, spectral_labels(vectors, k, seed + 1))),
        embedding=embedding.tolist(),
        embedding_method=method,
        groups=[g for g in groups if g.size],
    )


def _group(cluster: int, labels: np.ndarray, vectors: np.ndarray, averaged: np.ndarray, count: int) -> KernelCluster:
    members = np.flatnonzero(labels == cluster)
    if len(members) == 0:
        return KernelCluster(cluster, 0, [], [], [], [])
    centre = vectors[members].mean(axis=0)
    nearest = members[np.argsort(np.linalg.norm(vectors[members] - centre, axis=1))[:count]]
    signs = np.sign(np.sign(averaged[members]).sum(axis=0)).astype(int)
    return KernelCluster(
        cluster=cluster,
        size=len(members),
        members=members.tolist(),
        representatives=nearest.tolist(),
        representative_kernels=averaged[nearest].tolist(),
        sign_majority=signs.tolist(),
    )


def _skipped(base: dict, reason: str) -> LayerKernelClusters:
    return LayerKernelClusters(
        **base, skipped=reason, clusters=0, chosen_by="", merge_heights=[], linkage=[], labels=[],
        ward_agreement=None, seed_agreement=None, embedding=[], embedding_method="", groups=[],
    )


@register
class KernelClusters(Analysis):
    name = "kernel_clusters"
    title = "Kernel clusters"
    order = 30
    result_type = KernelClustersResult
    settings_type = KernelClustersSettings

    def applies(self, ctx: BuildContext) -> str | None:
        return spatial_kernels_reason(ctx)

    def cost(self, ctx: BuildContext, probe: Probe, settings: KernelClustersSettings) -> Cost:
        weights = [w for _, w in conv_layer_weights(ctx.model.module, [layer.name for layer in ctx.layers])]
        clustered = [w for w in weights if w.shape[2] * w.shape[3] > 1 and len(w) >= _MIN_UNITS]
        # Ward and the affinity matrix grow with units² × weights per unit; UMAP adds about a constant
        tasks = affine_estimate(probe, "kernel clusters", clustered, lambda w: len(w) ** 2 * w[0].size,
                                lambda w: cluster_kernels("probe", w, settings, ctx.config.seed))
        tasks += tasks[:1]  # the random-init control of the first layer
        units = sum(len(w) for w in clustered)
        return Cost(f"{len(clustered)} layers, {units:,} units", side_by_side(tasks, ctx.executor.workers))

    def finish(self, ctx: BuildContext, consumer: None) -> KernelClustersResult:
        names = [layer.name for layer in ctx.layers]
        control = control_weights(ctx.model.module, names, ctx.config.seed)
        jobs = conv_layer_weights(ctx.model.module, names) + ([control] if control else [])
        layers = ctx.map(_layer_clusters, jobs, cpu=True, desc="kernel clusters")
        return KernelClustersResult(layers[: len(layers) - bool(control)], layers[-1] if control else None)

    def view(self, result: KernelClustersResult, kit: ViewKit) -> SectionView:
        return SectionView(layers=views_with_control(result.layers, result.control, _kernel_view, kit))

    def columns(self, view: SectionView, kit: ViewKit) -> list[Column]:
        return [Column("kernel clusters", {n: str(v.result.clusters) for n, v in view.layers.items() if not v.result.skipped})]

    def search_entries(self, view: SectionView, kit: ViewKit) -> list[SearchEntry]:
        return [
            SearchEntry(
                f"{name} kernel cluster {group.cluster + 1} ({group.size} units)", "cluster",
                f"{kit.layer_file(name)}#kernel-clusters", "kernel cluster weights",
            )
            for name, layer_view in view.layers.items()
            for group in layer_view.result.groups
        ]


def views_with_control(entries: list, control: Any, make: Callable[..., Any], kit: ViewKit) -> dict[str, Any]:
    """Per layer, make(entry, slug, kit, control view): the random-init control (`control`, same
    layer name) is shown with its trained layer."""
    views = {}
    for entry in entries:
        slug = kit.slug(entry.layer)
        twin = make(control, f"{slug}-random-init", kit) if control is not None and control.layer == entry.layer else None
        views[entry.layer] = make(entry, slug, kit, twin)
    return views


def _layer_clusters(ctx: BuildContext, job: tuple[str, np.ndarray]) -> LayerKernelClusters:
    name, weight = job
    return cluster_kernels(name, weight, ctx.config.analyses.kernel_clusters, ctx.config.seed)


def affine_estimate(
    probe: Probe, key: str, items: list, size: Callable[[Any], float], run: Callable[[Any], Any]
) -> list[float]:
    """Per item, its time on a line through two real timings: the largest item and the smallest."""
    if not items:
        return []
    large, small = max(items, key=size), min(items, key=size)
    t_large = probe.cpu_seconds((key, "large"), lambda: run(large))
    t_small = probe.cpu_seconds((key, "small"), lambda: run(small)) if size(small) < size(large) else t_large
    slope = (t_large - t_small) / (size(large) - size(small)) if size(large) > size(small) else 0.0
    return [max(0.0, t_small + slope * (size(item) - size(small))) for item in items]


def spatial_kernels_reason(ctx: BuildContext) -> str | None:
    """Why a weight-space analysis of k×k kernels does not apply to this model, if it does not."""
    names = [layer.name for layer in ctx.layers]
    if not conv_layer_weights(ctx.model.module, names):
        return NO_CONV_LAYERS
    return None if spatial_conv_layers(ctx.model.module, names) else ONLY_ONE_BY_ONE


@dataclass(frozen=True)
class KernelView:
    result: LayerKernelClusters
    figure: str | None  # dendrogram and scatter
    kernels: str | None  # representative and sign-majority kernels
    control: "KernelView | None" = None  # the same layer at random initialisation


def _kernel_view(entry: LayerKernelClusters, slug: str, kit: ViewKit, control: KernelView | None = None) -> KernelView:
    if entry.skipped:
        return KernelView(entry, None, None, control)
    figure = dendrogram_and_scatter(
        np.array(entry.linkage), entry.clusters, np.array(entry.embedding), np.array(entry.labels), entry.embedding_method
    )
    rows = [
        (f"cluster {g.cluster + 1}\n({g.size} units)", [np.array(k) for k in g.representative_kernels], np.array(g.sign_majority))
        for g in entry.groups
    ]
    return KernelView(
        entry,
        kit.pictures.chart(figure, f"kernels-{slug}-clusters"),
        kit.pictures.chart(kernel_grid(rows), f"kernels-{slug}-representatives"),
        control,
    )


# The seed's kernel colour map (001, Figure 33): negative values lilac to black, positive red to white.
KERNEL_COLOURS = matplotlib.colors.LinearSegmentedColormap.from_list(
    "dossier_kernel",
    [(0.0, "#000000"), (0.3, "#5b2a86"), (0.499, "#d7b8f0"), (0.501, "#8b0000"), (0.75, "#ff4040"), (1.0, "#ffffff")],
)




def dendrogram_and_scatter(
    linkage: np.ndarray, clusters: int, embedding: np.ndarray, labels: np.ndarray, method: str
) -> plt.Figure:
    """Ward dendrogram with the chosen cut, beside the 2-D embedding coloured by cluster."""
    from scipy.cluster.hierarchy import dendrogram

    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    units = len(linkage) + 1
    dendrogram(
        linkage, ax=left, no_labels=True, color_threshold=0, above_threshold_color="#555555",
        truncate_mode="lastp" if units > 64 else None, p=48,
    )
    heights = linkage[:, 2]
    cut = (heights[units - clusters - 1] + heights[units - clusters]) / 2 if clusters < units else heights[-1]
    left.axhline(cut, color="#d62728", linestyle="--", linewidth=1, label=f"cut: {clusters} clusters")
    left.set_title("Ward dendrogram", fontsize=9)
    left.set_ylabel("merge height")
    left.legend(fontsize=7)
    for cluster in np.unique(labels):
        points = embedding[labels == cluster]
        right.scatter(points[:, 0], points[:, 1], s=14, color=CLASS_COLOURS[(2 * cluster) % 20], label=f"cluster {cluster + 1}")
    right.set_title(method, fontsize=9)
    right.set_xticks([])
    right.set_yticks([])
    right.legend(fontsize=6, markerscale=0.8, loc="best")
    figure.tight_layout()
    return figure


def kernel_grid(rows: list[tuple[str, list[np.ndarray], np.ndarray]]) -> plt.Figure:
    """Per cluster: its representative channel-averaged kernels, then its sign-majority kernel."""
    columns = max(len(kernels) for _, kernels, _ in rows) + 1
    figure, axes = plt.subplots(len(rows), columns, figsize=(1.1 * columns + 0.6, 1.1 * len(rows) + 0.3), squeeze=False)
    for r, (label, kernels, signs) in enumerate(rows):
        for c in range(columns):
            axis = axes[r][c]
            axis.set_xticks([])
            axis.set_yticks([])
            if c < len(kernels):
                limit = float(np.abs(kernels[c]).max()) or 1.0
                axis.imshow(kernels[c], cmap=KERNEL_COLOURS, vmin=-limit, vmax=limit)
            elif c == columns - 1:
                axis.imshow(signs, cmap=KERNEL_COLOURS, vmin=-1, vmax=1)
            else:
                axis.axis("off")
        axes[r][0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    axes[0][-1].set_title("sign majority", fontsize=7)
    figure.tight_layout(pad=0.3)
    return figure
