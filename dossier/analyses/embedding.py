"""An embedding map (METHODS §6, beyond): UMAP of the penultimate code vectors (the classifier's
input) coloured by class, misclassified points marked, like an embedding projector."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
from pydantic import Field
from sklearn.neighbors import NearestNeighbors

from dossier.analyses.base import HOOKS_UNSUPPORTED, Analysis, BuildContext, register
from dossier.analyses.commute import ACTIVATION_SPACE
from dossier.analyses.purity import balanced_count
from dossier.capture import Batch, input_key
from dossier.plan import Cost, Probe, Reduction, random_codes
from dossier.report.jsdata import js_global
from dossier.report.kit import SectionView, ViewKit
from dossier.report.pictures import CLASS_COLOURS, class_colour
from dossier.results import NOT_EXPORTED
from dossier.sampling import balanced_sample
from dossier.settings import SectionSettings
from dossier.thumbnails import thumbnails

SPECTRAL_MIN_POINTS = 16  # this many codes or fewer start UMAP at random


class EmbeddingSettings(SectionSettings):
    sample: int = Field(2000, ge=10, description="class-balanced images embedded (keep under 4,096)")
    neighbors: int = Field(15, ge=2, description="UMAP n_neighbors")
    min_dist: float = Field(0.1, ge=0, description="UMAP min_dist: how tightly points may pack")
    thumbnails: int = Field(24, ge=0, description="misclassified images shown as pictures")


@dataclass(frozen=True)
class EmbeddingResult:
    layer: str  # whose input is embedded
    neighbors: int
    indices: list[int]
    labels: list[int]  # the data's classes
    predicted: list[int]  # the model's top-1 outputs, over all outputs
    points: list[list[float]]
    mistakes: list[int]  # positions (in the lists above) of misclassified images
    mistaken_for: list[str]  # per mistake, the prediction: a class, or "other: <output name>"
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

    def merge(self, other: "_PenultimateCodes") -> None:
        self.codes += other.codes
        self.indices += other.indices
        self.labels += other.labels
        self.predicted += other.predicted


def umap_2d(codes: np.ndarray, neighbors: int, min_dist: float, seed: int) -> np.ndarray:
    import umap  # imported on use: numba compiles it once per process

    k = min(neighbors, len(codes) - 1)
    distances, indices = NearestNeighbors(n_neighbors=k).fit(codes).kneighbors(codes)
    # UMAP's spectral start needs more points than its eigen-solver's k: a few images start at random.
    init = "spectral" if len(codes) > SPECTRAL_MIN_POINTS else "random"
    reducer = umap.UMAP(
        n_neighbors=k, min_dist=min_dist, random_state=seed, precomputed_knn=(indices, distances, None), init=init
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return reducer.fit_transform(codes)


@register
class Embedding(Analysis):
    name = "embedding"
    title = "Embedding map"
    order = 100
    result_type = EmbeddingResult
    settings_type = EmbeddingSettings
    page = ACTIVATION_SPACE
    reductions = (Reduction("sample", (1000, 500), "the embedding map of a smaller class-balanced sample", rank=3),)

    def applies(self, ctx: BuildContext) -> str | None:
        if not ctx.hookable:
            return HOOKS_UNSUPPORTED
        if ctx.classifier is None:
            return "the recorded layers end in no Linear classifier whose input could be embedded"
        return None

    def cost(self, ctx: BuildContext, probe: Probe, settings: EmbeddingSettings) -> Cost:
        images = balanced_count(ctx.dataset.labels, settings.sample)
        classifier = dict(ctx.model.module.named_modules())[ctx.classifier]
        features = int(getattr(classifier, "in_features", 256))
        codes = random_codes(images, features, len(ctx.dataset.class_names), ctx.config.seed)[0]
        seconds = probe.seconds(("umap", images, features), lambda: umap_2d(codes, settings.neighbors, settings.min_dist, 0))
        return Cost(f"UMAP of {images:,} codes of {features}", seconds, shrink="analyses.embedding.sample")

    def consumer(self, ctx: BuildContext) -> _PenultimateCodes:
        keep = balanced_sample(ctx.dataset.labels, self.settings(ctx.config).sample, ctx.config.seed)
        return _PenultimateCodes(ctx.classifier, keep)

    def finish(self, ctx: BuildContext, consumer: _PenultimateCodes) -> EmbeddingResult:
        settings = self.settings(ctx.config)
        points = umap_2d(np.stack(consumer.codes), settings.neighbors, settings.min_dist, ctx.config.seed)
        classes = ctx.dataset.classes
        truths = classes.true_outputs(np.array(consumer.labels, dtype=np.int64))
        mistakes = [n for n, (t, p) in enumerate(zip(truths, consumer.predicted)) if t != p]
        _, pictures = thumbnails(ctx.dataset, [consumer.indices[n] for n in mistakes[: settings.thumbnails]])
        return EmbeddingResult(
            layer=ctx.classifier or "",
            neighbors=min(settings.neighbors, len(points) - 1),
            indices=consumer.indices,
            labels=consumer.labels,
            predicted=consumer.predicted,
            points=points.tolist(),
            mistakes=mistakes,
            mistaken_for=[classes.prediction_name(consumer.predicted[n]) for n in mistakes],
            mistake_thumbnails=pictures,
        )

    def view(self, result: EmbeddingResult, kit: ViewKit) -> SectionView:
        if not result.points:
            return SectionView(overview=EmbeddingOverview(result, None))
        figure = embedding_picture(
            np.array(result.points), np.array(result.labels), result.mistakes, result.mistake_thumbnails, kit.class_names
        )
        picture = kit.pictures.chart(figure, "embedding-map")
        script = kit.text_asset("assets/embedding-data.js", _embedding_script(result, kit))
        return SectionView(overview=EmbeddingOverview(result, picture), scripts=[script])


@dataclass(frozen=True)
class EmbeddingOverview:
    result: EmbeddingResult
    picture: str | None


def _embedding_script(embedding: EmbeddingResult, kit: ViewKit) -> str:
    """The interactive map's points, as a script setting a global (the site works from file://)."""
    thumbs = {
        position: kit.pictures.image(picture, f"embedding-mistake-{n}")
        for n, (position, picture) in enumerate(zip(embedding.mistakes, embedding.mistake_thumbnails))
    }
    mistaken_for = dict(zip(embedding.mistakes, embedding.mistaken_for))
    data = {  # a point: x, y, class, what it was mistaken for ("" when right), mistake's picture
        "classes": kit.class_names,
        "colours": [class_colour(c) for c in range(len(kit.class_names))],
        "points": [
            [round(x, 4), round(y, 4), label, mistaken_for.get(n, ""), thumbs.get(n, "")]
            for n, ((x, y), label) in enumerate(zip(embedding.points, embedding.labels))
        ],
    }
    return js_global("DOSSIER_EMBEDDING", data)


def embedding_picture(
    points: np.ndarray, labels: np.ndarray, mistakes: list[int], pictures: np.ndarray, class_names: list[str]
) -> plt.Figure:
    """The embedding coloured by class; misclassified points crossed, the first ones as pictures."""
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    figure, axes = plt.subplots(figsize=(7.5, 5.5))
    for c, name in enumerate(class_names):
        chosen = labels == c
        if chosen.any():
            axes.scatter(points[chosen, 0], points[chosen, 1], s=8, color=CLASS_COLOURS[c % 20], label=name, alpha=0.8)
    if mistakes:
        axes.scatter(points[mistakes, 0], points[mistakes, 1], s=30, marker="x", color="black", label="misclassified")
    for position, picture in zip(mistakes, pictures):
        image = OffsetImage(picture[..., 0] if picture.shape[2] == 1 else picture, zoom=24 / picture.shape[0], cmap="gray")
        axes.add_artist(AnnotationBbox(image, points[position], frameon=True, pad=0.1, alpha=0.9))
    axes.set_xticks([])
    axes.set_yticks([])
    if len(class_names) <= 20:
        axes.legend(fontsize=6, markerscale=1.5, loc="best", ncols=2)
    figure.tight_layout()
    return figure
