"""Commute-time clusters per layer (METHODS §6; seed 000), done honestly.

On a symmetric k-NN graph of a layer's activations: the exact commute time from the Laplacian's
pseudo-inverse, C(i,j) = vol·(L⁺ii + L⁺jj − 2L⁺ij); how much of it node degree alone explains
(von Luxburg, Radl & Hein, JMLR 2014: on large geometric graphs nearly all of it); and their
corrected ("amplified") commute distance, which is what we cluster on. Both commute distances are
squared Euclidean distances of an embedding, so each is clustered by k-means in its classical-MDS
embedding; Euclidean k-means on the activations is the baseline.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

import numpy as np
from pydantic import Field
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.neighbors import NearestNeighbors

from dossier.analyses.base import Analysis, BuildContext, register
from dossier.analyses.purity import (
    ClusterSummary,
    FeatureCollector,
    balanced_count,
    cluster_views,
    code_sizes,
    purity_score,
    summarise_clusters,
)
from dossier.plan import Cost, Probe, Reduction, random_codes, side_by_side
from dossier.errors import ConfigError
from dossier.report.kit import CrossPage, SectionView, ViewKit
from dossier.report.pictures import lines_by_depth
from dossier.results import ByLayer
from dossier.sampling import balanced_sample
from dossier.settings import SectionSettings

ACTIVATION_SPACE = CrossPage("activation-space.html", "Activation space")
_DENSE_MATRICES = 6  # n×n float64 matrices alive at once on the dense path
_KMEANS_RESTARTS = 4


class CommuteSettings(SectionSettings):
    sample: int = Field(2000, ge=10, description="class-balanced images (dense path: memory n², time n³)")
    neighbors: int = Field(10, ge=1, description="k of the symmetric k-NN graph")
    max_features: int = Field(2048, gt=0, description="flatten up to this size, else avg-pool")
    representatives: int = Field(6, ge=0, description="images nearest each cluster centre")


@dataclass(frozen=True)
class Scores:
    purity: float
    nmi: float
    ari: float


@dataclass(frozen=True)
class LayerCommute:
    layer: str
    images: int
    neighbors: int
    components: int  # of the k-NN graph before connecting
    edges_added: int  # to connect the components
    degree_explained_raw: float  # r² of commute time against vol·(1/dᵢ + 1/dⱼ)
    degree_explained_corrected: float
    euclidean: Scores
    raw: Scores
    corrected: Scores
    seconds: float
    clusters: list[ClusterSummary]  # on the corrected distance


@dataclass(frozen=True)
class CommuteResult(ByLayer):
    sample: int
    neighbors: int
    connection: str
    layers: list[LayerCommute]


def knn_adjacency(points: np.ndarray, k: int) -> np.ndarray:
    """Symmetric, unweighted k-nearest-neighbour graph (i~j if either is among the other's k)."""
    n = len(points)
    _, neighbours = NearestNeighbors(n_neighbors=min(k, n - 1) + 1).fit(points).kneighbors(points)
    adjacency = np.zeros((n, n))
    rows = np.repeat(np.arange(n), neighbours.shape[1] - 1)
    adjacency[rows, neighbours[:, 1:].ravel()] = 1.0
    return np.maximum(adjacency, adjacency.T)


def connect_components(adjacency: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Join every component to the largest by its closest pair of points; (graph, components, edges added)."""
    from scipy.sparse.csgraph import connected_components

    count, labels = connected_components(adjacency, directed=False)
    if count == 1:
        return adjacency, 1, 0
    joined = adjacency.copy()
    largest = np.bincount(labels).argmax()
    main = np.flatnonzero(labels == largest)
    for component in range(count):
        if component == largest:
            continue
        members = np.flatnonzero(labels == component)
        distances, nearest = NearestNeighbors(n_neighbors=1).fit(points[main]).kneighbors(points[members])
        a = int(np.argmin(distances[:, 0]))
        b = main[nearest[a, 0]]
        joined[members[a], b] = joined[b, members[a]] = 1.0
    return joined, count, count - 1


def commute_times(adjacency: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(commute time matrix, degrees, volume) of a connected graph, from the exact L⁺."""
    degrees = adjacency.sum(axis=1)
    laplacian = np.diag(degrees) - adjacency
    values, vectors = np.linalg.eigh(laplacian)
    keep = values > 1e-9 * values.max()
    pinv = (vectors[:, keep] / values[keep]) @ vectors[:, keep].T
    diagonal = np.diag(pinv)
    volume = float(degrees.sum())
    return volume * (diagonal[:, None] + diagonal[None, :] - 2 * pinv), degrees, volume


def amplified_commute(commute: np.ndarray, adjacency: np.ndarray, degrees: np.ndarray, volume: float) -> np.ndarray:
    """von Luxburg, Radl & Hein's amplified commute distance (no self-loops):
    R_ij − 1/dᵢ − 1/dⱼ + 2·w_ij/(dᵢ·dⱼ), with R = C / vol the resistance distance."""
    inverse = 1.0 / degrees
    amplified = commute / volume - inverse[:, None] - inverse[None, :] + 2 * adjacency * np.outer(inverse, inverse)
    np.fill_diagonal(amplified, 0.0)
    return amplified


def degree_explained(distance: np.ndarray, degrees: np.ndarray, volume: float) -> float:
    """r² between a distance and the degree-only term vol·(1/dᵢ + 1/dⱼ), over all pairs."""
    upper = np.triu_indices(len(degrees), k=1)
    degree_term = volume * (1 / degrees[:, None] + 1 / degrees[None, :])
    r = np.corrcoef(distance[upper], degree_term[upper])[0, 1]
    return float(r * r) if np.isfinite(r) else 0.0


def cluster_squared_distances(squared: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    """k-means in the classical-MDS embedding whose squared distances are `squared`."""
    n = len(squared)
    centring = np.eye(n) - 1.0 / n
    gram = -0.5 * centring @ squared @ centring
    values, vectors = np.linalg.eigh(gram)
    positive = values > 1e-9 * max(values.max(), 1e-300)
    embedding = vectors[:, positive] * np.sqrt(values[positive])
    return KMeans(n_clusters=clusters, n_init=_KMEANS_RESTARTS, random_state=seed).fit_predict(embedding)


def scores(labels: np.ndarray, assignment: np.ndarray) -> Scores:
    return Scores(
        purity_score(labels, assignment),
        float(normalized_mutual_info_score(labels, assignment)),
        float(adjusted_rand_score(labels, assignment)),
    )


def check_fits_in_memory(sample: int) -> None:
    needed = _DENSE_MATRICES * sample * sample * 8
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    if needed > available / 2:
        most = int(np.sqrt(available / 2 / _DENSE_MATRICES / 8))
        raise ConfigError(
            f"analyses.commute.sample: {sample} images need about {needed / 2**30:.1f} GiB for the dense "
            f"pseudo-inverse (it grows as n²; time as n³); at most about {most} fit in this machine's memory"
        )


def analyse_layer(name: str, points: np.ndarray, labels: np.ndarray, classes: int, k: int, seed: int) -> tuple[LayerCommute, np.ndarray]:
    start = time.perf_counter()
    adjacency, components, added = connect_components(knn_adjacency(points, k), points)
    commute, degrees, volume = commute_times(adjacency)
    corrected = amplified_commute(commute, adjacency, degrees, volume)
    clusters = min(classes, len(points) - 1)
    euclidean = KMeans(n_clusters=clusters, n_init=_KMEANS_RESTARTS, random_state=seed).fit_predict(points)
    raw_assignment = cluster_squared_distances(commute, clusters, seed)
    corrected_assignment = cluster_squared_distances(np.maximum(corrected, 0), clusters, seed)
    entry = LayerCommute(
        layer=name,
        images=len(points),
        neighbors=k,
        components=components,
        edges_added=added,
        degree_explained_raw=degree_explained(commute, degrees, volume),
        degree_explained_corrected=degree_explained(corrected, degrees, volume),
        euclidean=scores(labels, euclidean),
        raw=scores(labels, raw_assignment),
        corrected=scores(labels, corrected_assignment),
        seconds=round(time.perf_counter() - start, 3),
        clusters=[],
    )
    return entry, corrected_assignment


@register
class Commute(Analysis):
    name = "commute"
    title = "Commute-time clusters"
    order = 70
    result_type = CommuteResult
    settings_type = CommuteSettings
    page = ACTIVATION_SPACE
    reductions = (Reduction("sample", (1000, 500), "commute-time clusters on a smaller class-balanced sample", rank=3),)

    def consumer(self, ctx: BuildContext) -> FeatureCollector:
        settings = self.settings(ctx.config)
        check_fits_in_memory(settings.sample)
        keep = balanced_sample(ctx.dataset.labels, settings.sample, ctx.config.seed)
        names = [layer.name for layer in ctx.recorded_layers]
        return FeatureCollector(names, settings.max_features, keep)

    def cost(self, ctx: BuildContext, probe: Probe, settings: CommuteSettings) -> Cost:
        images = balanced_count(ctx.dataset.labels, settings.sample)
        classes = len(ctx.dataset.class_names)
        sizes = code_sizes(ctx, settings.max_features)[1:]  # the layers, not the input
        points = random_codes(images, min(max(sizes), 256), classes, ctx.config.seed)[0].astype(np.float64)
        labels = np.arange(images) % classes
        one = probe.cpu_seconds(("commute", images), lambda: analyse_layer(
            "probe", points, labels, classes, settings.neighbors, ctx.config.seed
        ))
        thumbnails = classes * settings.representatives * probe.image_seconds()
        tasks = [one + thumbnails] * len(sizes)
        memory = _DENSE_MATRICES * images * images * 8 * min(len(sizes), ctx.executor.workers) / 2**20
        work = f"{len(sizes)} layers × an exact pseudo-inverse of {images:,}×{images:,}"
        return Cost(work, side_by_side(tasks, ctx.executor.workers), memory, "analyses.commute.sample")

    def finish(self, ctx: BuildContext, consumer: FeatureCollector) -> CommuteResult:
        settings = self.settings(ctx.config)
        labels = np.concatenate(consumer.labels)
        indices = np.concatenate(consumer.indices)
        jobs = [
            (name, np.concatenate(consumer.features[name]).astype(np.float64), labels, indices)
            for name in consumer.layer_names
            if consumer.features[name]
        ]
        layers = ctx.map(_layer_commute, jobs, cpu=True, desc="commute time")
        return CommuteResult(
            sample=len(labels),
            neighbors=settings.neighbors,
            connection="each extra component joined to the largest by its closest pair of points",
            layers=layers,
        )

    def view(self, result: CommuteResult, kit: ViewKit) -> SectionView:
        layers = {
            entry.layer: CommuteView(entry, cluster_views(entry.clusters, f"commute-{kit.slug(entry.layer)}", kit))
            for entry in result.layers
            if kit.slug(entry.layer) is not None
        }
        chart = None
        if result.layers:
            figure = lines_by_depth(
                [e.layer for e in result.layers],
                {
                    "Euclidean k-means": [e.euclidean.purity for e in result.layers],
                    "raw commute time": [e.raw.purity for e in result.layers],
                    "corrected commute distance": [e.corrected.purity for e in result.layers],
                    "degree-explained share (raw)": [e.degree_explained_raw for e in result.layers],
                },
                None, "purity / share", "layer (network order)",
            )
            chart = kit.pictures.chart(figure, "commute-by-depth")
        return SectionView(layers=layers, overview=CommuteOverview(result, chart))


def _layer_commute(ctx: BuildContext, job: tuple) -> LayerCommute:
    name, points, labels, indices = job
    settings = ctx.config.analyses.commute
    classes = len(ctx.dataset.class_names)
    entry, assignment = analyse_layer(name, points, labels, classes, settings.neighbors, ctx.config.seed)
    centres = np.stack([points[assignment == c].mean(axis=0) for c in range(assignment.max() + 1)])
    distances = np.linalg.norm(points - centres[assignment], axis=1)
    summaries = summarise_clusters(ctx, assignment, distances, labels, indices, classes, settings.representatives)
    return dataclasses.replace(entry, clusters=summaries)


@dataclass(frozen=True)
class CommuteView:
    result: LayerCommute
    clusters: list


@dataclass(frozen=True)
class CommuteOverview:
    result: CommuteResult
    chart: str | None
