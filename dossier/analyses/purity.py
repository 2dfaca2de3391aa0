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
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from tqdm import tqdm

from dossier.analyses.base import Analysis, BuildContext, register
from dossier.capture import Batch
from dossier.results import NOT_EXPORTED
from dossier.thumbnails import thumbnails

INPUT_LAYER = "input"


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
    clusters: list[ClusterSummary]


@dataclass(frozen=True)
class PurityResult:
    images: int
    per_class: int
    classes: int
    chance_purity: float  # purity of clustering that ignores the data: the largest class share
    layers: list[LayerPurity]  # the input first, then the layers in network order

    def for_layer(self, name: str) -> LayerPurity | None:
        return next((entry for entry in self.layers if entry.layer == name), None)


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
    if channels * height * width <= max_features:
        return x.flatten(1).float(), f"flattened {shape}"
    side = max(1, math.isqrt(max_features // channels)) if channels <= max_features else 1
    grid = (min(side, height), min(side, width))
    pooled = F.adaptive_avg_pool2d(x.float(), grid).flatten(1)
    return pooled, f"average-pooled {shape} to {channels}×{grid[0]}×{grid[1]}"


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
            batch = _rows(batch, torch.isin(batch.indices.cpu(), self.keep).to(batch.indices.device))
        sources = {INPUT_LAYER: batch.images}
        # A module the forward pass never calls (an auxiliary head in eval mode) records nothing.
        sources.update({n: batch.activations[n] for n in self.layer_names if n in batch.activations})
        for name, tensor in sources.items():
            vectors, how = reduce_activation(tensor, self.max_features)
            self.features[name].append(vectors.cpu().numpy().astype(np.float32))
            self.representation[name] = how
        self.indices.append(batch.indices.cpu().numpy())
        self.labels.append(batch.labels.cpu().numpy())


def _rows(batch: Batch, mask: torch.Tensor) -> Batch:
    return Batch(
        batch.images[mask], batch.labels[mask], batch.indices[mask], batch.logits[mask],
        {name: value[mask] for name, value in batch.activations.items()},
    )


def balanced_sample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Positions in `labels` of an equal number of items per class, at most `size` in all, sorted
    (given the data set's labels, these are data-set indices)."""
    classes = np.unique(labels)
    per_class = min(min(int((labels == c).sum()) for c in classes), max(1, size // len(classes)))
    rng = np.random.default_rng(seed)
    rows = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in classes]
    return np.sort(np.concatenate(rows))


@register
class Purity(Analysis):
    name = "purity"
    title = "Activation-cluster purity"
    result_type = PurityResult

    def consumer(self, ctx: BuildContext) -> FeatureCollector:
        names = [layer.name for layer in ctx.recorded_layers]
        return FeatureCollector(names, ctx.config.analyses.purity.max_features)

    def finish(self, ctx: BuildContext, consumer: FeatureCollector) -> PurityResult:
        settings = ctx.config.analyses.purity
        labels_all = np.concatenate(consumer.labels)
        rows = balanced_sample(labels_all, len(labels_all), ctx.config.seed)
        labels = labels_all[rows]
        indices = np.concatenate(consumer.indices)[rows]
        classes = len(ctx.dataset.class_names)
        layers = []
        recorded = [name for name, parts in consumer.features.items() if parts]
        for name in tqdm(recorded, desc="purity k-means", unit="layer", leave=False):
            vectors = np.concatenate(consumer.features[name])[rows]
            assignment, distances = kmeans_clusters(vectors, classes, settings.n_init, ctx.config.seed)
            layers.append(
                LayerPurity(
                    layer=name,
                    features=int(vectors.shape[1]),
                    representation=consumer.representation[name],
                    purity=purity_score(labels, assignment),
                    nmi=float(normalized_mutual_info_score(labels, assignment)),
                    ari=float(adjusted_rand_score(labels, assignment)),
                    clusters=summarise_clusters(
                        ctx, assignment, distances, labels, indices, classes, settings.representatives
                    ),
                )
            )
        return PurityResult(
            images=len(rows),
            per_class=len(rows) // max(1, len(np.unique(labels))),
            classes=classes,
            chance_purity=float(np.bincount(labels).max() / len(labels)),
            layers=layers,
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
