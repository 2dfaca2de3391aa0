"""Translation sensitivity (METHODS §7; seed 003's table, generalised).

Images are shifted circularly by 0…s pixels along x and along y (what leaves one side re-enters on
the other, so a perfectly shift-invariant model gives flat curves). For each shift: the mean
probability of the true class's output, the accuracy over all outputs, and per layer the mean cosine distance of the code
vectors to those of the unshifted images."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from dossier.analyses.base import HOOKS_UNSUPPORTED, Analysis, BuildContext, register
from dossier.analyses.commute import ACTIVATION_SPACE
from dossier.analyses.purity import balanced_count, reduce_activation
from dossier.plan import Cost, Probe, Reduction
from dossier.capture import recording
from dossier.report.kit import CheckResult, SectionView, ViewKit, judged
from dossier.sampling import balanced_sample
from dossier.settings import SectionSettings, StrictModel

# Codes longer than this are average-pooled before the cosine distance: memory stays bounded.
_CODE_FEATURES = 4096


class TranslationChecks(StrictModel):
    max_shift_accuracy_drop: float = Field(
        0.2, ge=0, le=1, description="accuracy falling by more than this under the translation test fails"
    )


class TranslationSettings(SectionSettings):
    images: int = Field(200, ge=2, description="class-balanced images shifted")
    max_shift: int | None = Field(None, ge=1, description="largest shift in pixels; null: input size / 8")


@dataclass(frozen=True)
class ShiftCurve:
    axis: str  # "x" or "y"
    shifts: list[int]
    true_probability: list[float]
    accuracy: list[float]
    cosine_distance: dict[str, list[float]]  # layer -> mean distance to the unshifted code, per shift


@dataclass(frozen=True)
class TranslationResult:
    images: int
    max_shift: int
    curves: list[ShiftCurve]


def shifted(images: torch.Tensor, axis: str, pixels: int) -> torch.Tensor:
    return torch.roll(images, shifts=pixels, dims=3 if axis == "x" else 2)


def measure(model, images: torch.Tensor, truths: torch.Tensor, layers: list[str], max_shift: int, batch: int) -> list[ShiftCurve]:
    """Per axis and shift: P(true output), accuracy and each layer's code distance; `truths` are the
    model outputs of the images' classes."""
    def codes_and_probabilities(x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        codes: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
        probabilities = []
        with torch.no_grad(), recording(model, layers) as outputs:
            for start in range(0, len(x), batch):
                probabilities.append(torch.softmax(model(x[start : start + batch]).float(), dim=1))
                for name in layers:
                    codes[name].append(reduce_activation(outputs[name], _CODE_FEATURES)[0])
        return {n: torch.cat(c) for n, c in codes.items()}, torch.cat(probabilities)

    reference, _ = codes_and_probabilities(images)
    curves = []
    for axis in ("x", "y"):
        truth, accuracy, distance = [], [], {name: [] for name in layers}
        for pixels in range(max_shift + 1):
            codes, probabilities = codes_and_probabilities(shifted(images, axis, pixels))
            truth.append(float(probabilities.gather(1, truths[:, None]).mean()))
            accuracy.append(float((probabilities.argmax(1) == truths).float().mean()))
            for name in layers:
                similarity = F.cosine_similarity(codes[name], reference[name], dim=1, eps=1e-12)
                distance[name].append(max(0.0, float((1 - similarity).mean())))  # rounding gives -0.0
        curves.append(ShiftCurve(axis, list(range(max_shift + 1)), truth, accuracy, distance))
    return curves


@register
class Translation(Analysis):
    name = "translation"
    title = "Translation sensitivity"
    order = 90
    result_type = TranslationResult
    settings_type = TranslationSettings
    check_settings = TranslationChecks
    page = ACTIVATION_SPACE
    reductions = (Reduction("images", (100, 50), "translation sensitivity on fewer images", rank=3),)

    def applies(self, ctx: BuildContext) -> str | None:
        return None if ctx.hookable else HOOKS_UNSUPPORTED

    def cost(self, ctx: BuildContext, probe: Probe, settings: TranslationSettings) -> Cost:
        images = balanced_count(ctx.dataset.labels, settings.images)
        passes = 1 + 2 * (_max_shift(ctx, settings) + 1)  # the originals, then every shift along x and y
        seconds = passes * images * (probe.forward_per_image() + probe.image_seconds() / passes)
        return Cost(f"{passes} shifted passes over {images:,} images", seconds, shrink="analyses.translation.images")

    def finish(self, ctx: BuildContext, consumer: None) -> TranslationResult:
        settings = self.settings(ctx.config)
        chosen = balanced_sample(ctx.dataset.labels, settings.images, ctx.config.seed)
        items = [ctx.dataset[int(i)] for i in chosen]
        items = [item for item in items if item is not None]
        images = torch.stack([item[0] for item in items]).to(ctx.device)
        labels = np.array([item[1] for item in items], dtype=np.int64)
        truths = torch.from_numpy(ctx.dataset.classes.true_outputs(labels)).to(ctx.device)
        max_shift = _max_shift(ctx, settings)
        layers = [layer.name for layer in ctx.recorded_layers]
        curves = measure(ctx.model.module, images, truths, layers, max_shift, ctx.options.batch_size)
        return TranslationResult(images=len(items), max_shift=max_shift, curves=curves)

    def view(self, result: TranslationResult, kit: ViewKit) -> SectionView:
        if not result.curves:
            return SectionView(overview=TranslationOverview(result, None, None))
        curves = kit.pictures.chart(
            translation_curves([(c.axis, c.shifts, c.true_probability, c.accuracy) for c in result.curves]),
            "translation-curves",
        )
        layers = list(result.curves[0].cosine_distance)
        columns = [f"{c.axis}+{s}" for c in result.curves for s in c.shifts]
        values = np.array([[d for c in result.curves for d in c.cosine_distance[layer]] for layer in layers])
        heatmap = kit.pictures.chart(translation_heatmap(layers, columns, values), "translation-heatmap")
        return SectionView(overview=TranslationOverview(result, curves, heatmap))

    def checks(self, result: TranslationResult, thresholds: TranslationChecks, ctx: BuildContext) -> list[CheckResult]:
        if not result.curves:
            return []
        worst = max(result.curves, key=lambda curve: curve.accuracy[0] - min(curve.accuracy))
        drop, limit = worst.accuracy[0] - min(worst.accuracy), thresholds.max_shift_accuracy_drop
        return [CheckResult(
            "accuracy under shifts", judged(drop > limit, drop > limit / 2), f"−{100 * drop:.1f} points",
            f"≤ {100 * limit:.0f} points", f"along {worst.axis}, up to {result.max_shift} px", "activation-space.html#translation",
        )]

    def finding(self, result: TranslationResult) -> str | None:
        if not result.curves:
            return None
        worst = min(result.curves, key=lambda curve: curve.accuracy[-1])
        return (
            f"Shifting the images by {result.max_shift} px along {worst.axis} changes accuracy from "
            f"{worst.accuracy[0]:.1%} to {worst.accuracy[-1]:.1%}."
        )


def _max_shift(ctx: BuildContext, settings: TranslationSettings) -> int:
    return settings.max_shift or max(1, min(ctx.config.model.input_size[1:]) // 8)


@dataclass(frozen=True)
class TranslationOverview:
    result: TranslationResult
    curves: str | None
    heatmap: str | None


def translation_curves(curves: list[tuple[str, list[int], list[float], list[float]]]) -> plt.Figure:
    """Probability of the true class and accuracy against the shift, per axis."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(8, 2.8))
    for axis, shifts, truth, accuracy in curves:
        left.plot(shifts, truth, marker="o", markersize=4, label=f"shift along {axis}")
        right.plot(shifts, accuracy, marker="o", markersize=4, label=f"shift along {axis}")
    for axes, label in ((left, "P(true class)"), (right, "accuracy")):
        axes.set_xlabel("shift (pixels, circular)")
        axes.set_ylabel(label)
        axes.set_ylim(0, 1.02)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    figure.tight_layout()
    return figure


def translation_heatmap(layer_names: list[str], columns: list[str], values: np.ndarray) -> plt.Figure:
    """Cosine distance of each layer's code to the unshifted one: layers × shifts."""
    figure, axes = plt.subplots(figsize=(min(10, 1.2 + 0.55 * len(columns)), 0.9 + 0.3 * len(layer_names)))
    image = axes.imshow(values, cmap="magma", aspect="auto", vmin=0)
    axes.set_xticks(np.arange(len(columns)), columns, fontsize=7)
    axes.set_yticks(np.arange(len(layer_names)), layer_names, fontsize=7)
    axes.set_xlabel("shift")
    figure.colorbar(image, ax=axes, label="cosine distance", shrink=0.9)
    figure.tight_layout()
    return figure
