"""An embedding map (METHODS §6, beyond): UMAP of the penultimate code vectors (the classifier's
input) coloured by class, misclassified points marked, like an embedding projector."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.neighbors import NearestNeighbors

from dossier.analyses.base import Analysis, BuildContext, register
from dossier.analyses.purity import balanced_sample
from dossier.capture import Batch, input_key
from dossier.results import NOT_EXPORTED
from dossier.thumbnails import thumbnails


@dataclass(frozen=True)
class EmbeddingResult:
    layer: str  # whose input is embedded
    neighbors: int
    indices: list[int]
    labels: list[int]
    predicted: list[int]
    points: list[list[float]]
    mistakes: list[int]  # positions (in the lists above) of misclassified images
    mistake_thumbnails: np.ndarray = field(metadata=NOT_EXPORTED)


class _PenultimateCodes:
    def __init__(self, classifier: str, keep: np.ndarray) -> None:
        self.key = input_key(classifier)
        self.keep = set(int(i) for i in keep)
        self.codes: list[np.ndarray] = []
        self.indices: list[int] = []
        self.labels: list[int] = []
        self.predicted: list[int] = []

    def update(self, batch: Batch) -> None:
        codes = batch.activations[self.key].flatten(1).float().cpu().numpy()
        predicted = batch.logits.argmax(1).cpu().tolist()
        for row, index in enumerate(batch.indices.cpu().tolist()):
            if index in self.keep:
                self.codes.append(codes[row])
                self.indices.append(index)
                self.labels.append(int(batch.labels[row]))
                self.predicted.append(predicted[row])


def umap_2d(codes: np.ndarray, neighbors: int, seed: int) -> np.ndarray:
    import umap  # imported on use: numba compiles it once per process

    k = min(neighbors, len(codes) - 1)
    distances, indices = NearestNeighbors(n_neighbors=k).fit(codes).kneighbors(codes)
    reducer = umap.UMAP(n_neighbors=k, min_dist=0.1, random_state=seed, precomputed_knn=(indices, distances, None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return reducer.fit_transform(codes)


@register
class Embedding(Analysis):
    name = "embedding"
    title = "Embedding map"
    result_type = EmbeddingResult

    def consumer(self, ctx: BuildContext) -> _PenultimateCodes | None:
        if ctx.classifier is None:
            return None
        keep = balanced_sample(ctx.dataset.labels, ctx.config.analyses.embedding.sample, ctx.config.seed)
        return _PenultimateCodes(ctx.classifier, keep)

    def finish(self, ctx: BuildContext, consumer: _PenultimateCodes | None) -> EmbeddingResult:
        if consumer is None:
            raise ValueError("the model has no recorded Linear classifier whose input could be embedded")
        settings = ctx.config.analyses.embedding
        points = umap_2d(np.stack(consumer.codes), settings.neighbors, ctx.config.seed)
        mistakes = [n for n, (l, p) in enumerate(zip(consumer.labels, consumer.predicted)) if l != p]
        _, pictures = thumbnails(ctx.dataset, [consumer.indices[n] for n in mistakes[: settings.thumbnails]])
        return EmbeddingResult(
            layer=ctx.classifier or "",
            neighbors=min(settings.neighbors, len(points) - 1),
            indices=consumer.indices,
            labels=consumer.labels,
            predicted=consumer.predicted,
            points=points.tolist(),
            mistakes=mistakes,
            mistake_thumbnails=pictures,
        )
