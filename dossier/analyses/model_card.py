"""Model card numbers (METHODS §0): accuracy, per-class accuracy, confusion, top-5 samples."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from pydantic import Field

from dossier.analyses.base import Analysis, BuildContext, register
from dossier.capture import Batch
from dossier.report.kit import CrossPage, Picture, SearchEntry, SectionView, ViewKit
from dossier.results import NOT_EXPORTED
from dossier.sampling import round_robin
from dossier.settings import SectionSettings
from dossier.thumbnails import thumbnails


class ModelCardSettings(SectionSettings):
    sample_images: int = Field(8, ge=0, description="images shown with their top-5 predictions")


@dataclass(frozen=True)
class SamplePrediction:
    index: int
    name: str
    label: int
    top_classes: list[int]
    top_probabilities: list[float]
    thumbnail: np.ndarray = field(metadata=NOT_EXPORTED)


@dataclass(frozen=True)
class ModelCardResult:
    images: int
    top1: float
    top5: float
    per_class_accuracy: list[float | None]  # None for a class with no images
    per_class_images: list[int]
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    samples: list[SamplePrediction]
    skipped_images: dict[str, str]  # unreadable file -> why

    @property
    def top_confusions(self) -> list[tuple[int, int, int]]:
        """(true, predicted, count) of the most frequent mistakes."""
        pairs = [
            (t, p, n)
            for t, row in enumerate(self.confusion)
            for p, n in enumerate(row)
            if t != p and n > 0
        ]
        return sorted(pairs, key=lambda item: -item[2])[:20]


class _Accuracy:
    def __init__(self, classes: int, sample_indices: set[int]) -> None:
        self.confusion = np.zeros((classes, classes), dtype=np.int64)
        self.top5_hits = 0
        self.sample_indices = sample_indices
        self.sample_top: dict[int, tuple[list[int], list[float]]] = {}

    def update(self, batch: Batch) -> None:
        logits = batch.logits.float()
        labels = batch.labels
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        np.add.at(self.confusion, (labels.cpu().numpy(), top[:, 0].cpu().numpy()), 1)
        self.top5_hits += int((top == labels[:, None]).any(dim=1).sum())
        probabilities = torch.softmax(logits, dim=1)
        for row, index in enumerate(batch.indices.tolist()):
            if index in self.sample_indices:
                p, c = probabilities[row].topk(k)
                self.sample_top[index] = (c.tolist(), [round(v, 6) for v in p.tolist()])

    def merge(self, other: "_Accuracy") -> None:
        self.confusion += other.confusion
        self.top5_hits += other.top5_hits
        self.sample_top.update(other.sample_top)


@register
class ModelCard(Analysis):
    name = "model_card"
    title = "Model card"
    order = 0
    result_type = ModelCardResult
    settings_type = ModelCardSettings
    page = CrossPage("model.html", "Model card")

    def consumer(self, ctx: BuildContext) -> _Accuracy:
        count = self.settings(ctx.config).sample_images
        chosen = set(round_robin(ctx.dataset.labels, count).tolist())
        return _Accuracy(len(ctx.dataset.class_names), chosen)

    def finish(self, ctx: BuildContext, consumer: _Accuracy) -> ModelCardResult:
        confusion = consumer.confusion
        seen = int(confusion.sum())
        per_class_images = confusion.sum(axis=1)
        per_class = [
            float(confusion[c, c] / n) if n else None for c, n in enumerate(per_class_images)
        ]
        ordered = sorted(consumer.sample_top)
        kept, pictures = thumbnails(ctx.dataset, ordered)
        samples = [
            SamplePrediction(
                index=i,
                name=ctx.dataset.names[i],
                label=int(ctx.dataset.labels[i]),
                top_classes=consumer.sample_top[i][0],
                top_probabilities=consumer.sample_top[i][1],
                thumbnail=picture,
            )
            for i, picture in zip(kept, pictures)
        ]
        return ModelCardResult(
            images=seen,
            top1=float(np.trace(confusion) / seen) if seen else 0.0,
            top5=consumer.top5_hits / seen if seen else 0.0,
            per_class_accuracy=per_class,
            per_class_images=per_class_images.tolist(),
            confusion=confusion.tolist(),
            samples=samples,
            skipped_images=dict(ctx.dataset.skipped),
        )

    def view(self, result: ModelCardResult, kit: ViewKit) -> SectionView:
        return SectionView(overview=ModelCardView(result, _sample_views(result, kit)))

    def search_entries(self, view: SectionView, kit: ViewKit) -> list[SearchEntry]:
        return [
            SearchEntry(f"class {name}", "class", "model.html#per-class", f"class {name} accuracy")
            for name in kit.class_names
        ]


@dataclass(frozen=True)
class SampleView:
    picture: Picture
    true_class: str
    predictions: list[tuple[str, float, bool]]  # class, probability, is the true class


@dataclass(frozen=True)
class ModelCardView:
    result: ModelCardResult
    samples: list[SampleView]


def _sample_views(card: ModelCardResult, kit: ViewKit) -> list[SampleView]:
    return [
        SampleView(
            picture=Picture(kit.pictures.sprite(sample.thumbnail, "samples"), sample.name),
            true_class=kit.class_name(sample.label),
            predictions=[
                (kit.class_name(c), p, c == sample.label) for c, p in zip(sample.top_classes, sample.top_probabilities)
            ],
        )
        for number, sample in enumerate(card.samples)
    ]
