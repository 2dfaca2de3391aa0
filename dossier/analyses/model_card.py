"""Model card numbers (METHODS §0): accuracy, per-class accuracy, confusion, top-5 samples.

Predictions are over all of the model's outputs: when the data covers only some of its classes
(dossier.classes), a prediction of any other output is a mistake, counted in the confusion
matrix's last column and listed by output."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from pydantic import Field

from dossier.analyses.base import Analysis, BuildContext, register
from dossier.capture import Batch
from dossier.classes import ClassMap
from dossier.report.kit import CheckResult, CrossPage, Picture, SearchEntry, SectionView, ViewKit, judged
from dossier.results import NOT_EXPORTED
from dossier.sampling import round_robin
from dossier.settings import SectionSettings, StrictModel
from dossier.thumbnails import thumbnails


OTHER_OUTPUTS = "other outputs"  # the confusion column of predictions that are none of the data's classes


class ModelCardChecks(StrictModel):
    min_top1: float = Field(0.5, ge=0, le=1, description="top-1 accuracy below this fails (up to 5 points above it: a warning)")
    min_class_accuracy: float = Field(0.25, ge=0, le=1, description="a class whose top-1 accuracy is below this fails")


PRINT_CLASSES = 40  # per-class rows in the PDF when there are more classes
NEAR_CHANCE = 1.5  # top-1 at most this many times chance: the model is guessing on this data


class ModelCardSettings(SectionSettings):
    sample_images: int = Field(8, ge=0, description="images shown with their top-5 predictions")


@dataclass(frozen=True)
class SamplePrediction:
    index: int
    name: str
    label: int
    top_outputs: list[int]  # the model's outputs, most probable first
    top_names: list[str]  # each as a class, or "other: <output name>"
    top_probabilities: list[float]
    thumbnail: np.ndarray = field(metadata=NOT_EXPORTED)


@dataclass(frozen=True)
class ClassOutput:
    """One class of the data and the model output it was mapped to."""

    folder: str
    output: int
    output_name: str


@dataclass(frozen=True)
class OutsidePrediction:
    """An output that is none of the data's classes, and how many images it was the top-1 of."""

    output: int
    name: str
    images: int


@dataclass(frozen=True)
class ModelCardResult:
    images: int
    top1: float  # over all of the model's outputs
    top5: float
    per_class_accuracy: list[float | None]  # None for a class with no images
    per_class_images: list[int]
    confusion: list[list[int]]  # rows: true class; columns: predicted class, then every other output
    samples: list[SamplePrediction]
    skipped_images: dict[str, str]  # unreadable file -> why
    outputs: int  # the model's output count
    mapping_source: str  # how the classes were mapped to outputs
    mapping: list[ClassOutput]  # per class, in label order
    outside: list[OutsidePrediction]  # top-1 predictions of other outputs, most frequent first

    @property
    def mapped(self) -> bool:
        """The classes are not simply the model's outputs in order: the card says how they map."""
        return len(self.mapping) != self.outputs or any(m.output != k for k, m in enumerate(self.mapping))

    @property
    def top_confusions(self) -> list[tuple[int, int, int]]:
        """(true, predicted, count) of the most frequent mistakes; predicted K is another output."""
        pairs = [
            (t, p, n)
            for t, row in enumerate(self.confusion)
            for p, n in enumerate(row)
            if t != p and n > 0
        ]
        return sorted(pairs, key=lambda item: -item[2])[:20]


class _Accuracy:
    def __init__(self, classes: ClassMap, sample_indices: set[int]) -> None:
        self.classes = classes
        count = len(classes.class_names)
        self.confusion = np.zeros((count, count + 1), dtype=np.int64)  # the last column: other outputs
        self.outside = np.zeros(classes.outputs, dtype=np.int64)  # top-1 counts of the other outputs
        self.top5_hits = 0
        self.sample_indices = sample_indices
        self.sample_top: dict[int, tuple[list[int], list[float]]] = {}

    def update(self, batch: Batch) -> None:
        logits = batch.logits.float()
        labels = batch.labels.cpu().numpy()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices.cpu().numpy()
        predicted = self.classes.labels_of(top[:, 0])
        np.add.at(self.confusion, (labels, predicted), 1)
        np.add.at(self.outside, top[predicted == len(self.classes.class_names), 0], 1)
        self.top5_hits += int((top == self.classes.true_outputs(labels)[:, None]).any(axis=1).sum())
        probabilities = torch.softmax(logits, dim=1)
        for row, index in enumerate(batch.indices.tolist()):
            if index in self.sample_indices:
                p, c = probabilities[row].topk(k)
                self.sample_top[index] = (c.tolist(), [round(v, 6) for v in p.tolist()])

    def merge(self, other: "_Accuracy") -> None:
        self.confusion += other.confusion
        self.outside += other.outside
        self.top5_hits += other.top5_hits
        self.sample_top.update(other.sample_top)


def guessing_at(result: ModelCardResult) -> float | None:
    """Chance accuracy (the largest class's share) when top-1 is not clearly above it, else None."""
    chance = max(result.per_class_images) / max(1, result.images)
    return chance if result.top1 <= NEAR_CHANCE * chance else None


@register
class ModelCard(Analysis):
    name = "model_card"
    title = "Model card"
    order = 0
    result_type = ModelCardResult
    settings_type = ModelCardSettings
    check_settings = ModelCardChecks
    page = CrossPage("model.html", "Model card")

    def consumer(self, ctx: BuildContext) -> _Accuracy:
        count = self.settings(ctx.config).sample_images
        chosen = set(round_robin(ctx.dataset.labels, count).tolist())
        return _Accuracy(ctx.dataset.classes, chosen)

    def finish(self, ctx: BuildContext, consumer: _Accuracy) -> ModelCardResult:
        classes = ctx.dataset.classes
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
                top_outputs=consumer.sample_top[i][0],
                top_names=[classes.prediction_name(output) for output in consumer.sample_top[i][0]],
                top_probabilities=consumer.sample_top[i][1],
                thumbnail=picture,
            )
            for i, picture in zip(kept, pictures)
        ]
        outside = np.flatnonzero(consumer.outside)
        return ModelCardResult(
            images=seen,
            top1=float(np.trace(confusion) / seen) if seen else 0.0,
            top5=consumer.top5_hits / seen if seen else 0.0,
            per_class_accuracy=per_class,
            per_class_images=per_class_images.tolist(),
            confusion=confusion.tolist(),
            samples=samples,
            skipped_images=dict(ctx.dataset.skipped),
            outputs=classes.outputs,
            mapping_source=classes.source,
            mapping=[
                ClassOutput(folder, output, classes.output_names[output])
                for folder, output in zip(classes.class_names, classes.class_outputs)
            ],
            outside=[
                OutsidePrediction(int(o), classes.output_names[o], int(consumer.outside[o]))
                for o in sorted(outside, key=lambda o: (-consumer.outside[o], o))
            ],
        )

    def warning(self, result: ModelCardResult) -> str | None:
        chance = guessing_at(result)
        if chance is None:
            return None
        return (
            f"The model is guessing on this data: top-1 accuracy {result.top1:.1%}, chance {chance:.1%}. "
            "The likely cause is class folders whose sorted order differs from the model's outputs "
            "(map them with data.class_index), or data unlike the training data; every finding below "
            "describes a model that does not work on these images."
        )

    def checks(self, result: ModelCardResult, thresholds: ModelCardChecks, ctx: BuildContext) -> list[CheckResult]:
        chance = guessing_at(result)
        guessing = chance is not None
        top1 = CheckResult(
            "top-1 accuracy", judged(result.top1 < thresholds.min_top1 or guessing, result.top1 < thresholds.min_top1 + 0.05),
            f"{result.top1:.1%}", f"≥ {thresholds.min_top1:.0%}",
            f"at or near chance ({chance:.1%}): are the class folders in the order of the model's outputs?" if guessing else "",
            "model.html#per-class",
        )
        measured = [(c, a) for c, a in enumerate(result.per_class_accuracy) if a is not None]
        if not measured:
            return [top1]
        worst, accuracy = min(measured, key=lambda item: item[1])
        per_class = CheckResult(
            "per-class accuracy", judged(accuracy < thresholds.min_class_accuracy, accuracy < thresholds.min_class_accuracy + 0.05),
            f"{accuracy:.1%}", f"≥ {thresholds.min_class_accuracy:.0%} for every class",
            f"lowest: class {ctx.dataset.class_names[worst]}", "model.html#per-class",
        )
        return [top1, per_class]

    def view(self, result: ModelCardResult, kit: ViewKit) -> SectionView:
        predicted = [*kit.class_names, OTHER_OUTPUTS]
        columns = predicted if len(result.mapping) < result.outputs else kit.class_names
        confusions = [(kit.class_name(t), predicted[p], n) for t, p, n in result.top_confusions]
        return SectionView(overview=ModelCardView(
            result, _sample_views(result, kit), columns, confusions, _print_classes(result.per_class_accuracy),
        ))

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
    columns: list[str]  # the confusion matrix's predicted columns: "other outputs" only when the model has more
    confusions: list[tuple[str, str, int]]  # the most frequent mistakes: true, predicted, images
    print_classes: list[int]  # the per-class rows the PDF shows: all, or the lowest accuracies of many


def _print_classes(accuracy: list[float | None]) -> list[int]:
    """Every class, or for a data set of many the PRINT_CLASSES of lowest accuracy (pages of a
    thousand rows help no reader of the PDF)."""
    classes = list(range(len(accuracy)))
    if len(classes) <= PRINT_CLASSES:
        return classes
    return sorted(classes, key=lambda c: (accuracy[c] is None, accuracy[c] or 0.0, c))[:PRINT_CLASSES]


def _sample_views(card: ModelCardResult, kit: ViewKit) -> list[SampleView]:
    return [
        SampleView(
            picture=Picture(kit.pictures.sprite(sample.thumbnail, "samples"), sample.name),
            true_class=kit.class_name(sample.label),
            predictions=[
                (name, p, output == card.mapping[sample.label].output)
                for output, name, p in zip(sample.top_outputs, sample.top_names, sample.top_probabilities)
            ],
        )
        for sample in card.samples
    ]
