"""Translation sensitivity (METHODS §7; seed 003's table, generalised).

Images are shifted circularly by 0…s pixels along x and along y (what leaves one side re-enters on
the other, so a perfectly shift-invariant model gives flat curves). For each shift: the mean
probability of the true class, the accuracy, and per layer the mean cosine distance of the code
vectors to those of the unshifted images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dossier.analyses.base import Analysis, BuildContext, register
from dossier.analyses.purity import balanced_sample, reduce_activation
from dossier.capture import recording


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


def measure(model, images: torch.Tensor, labels: torch.Tensor, layers: list[str], max_shift: int, batch: int) -> list[ShiftCurve]:
    def codes_and_probabilities(x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        codes: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
        probabilities = []
        with torch.no_grad(), recording(model, layers) as outputs:
            for start in range(0, len(x), batch):
                probabilities.append(torch.softmax(model(x[start : start + batch]).float(), dim=1))
                for name in layers:
                    codes[name].append(reduce_activation(outputs[name], 4096)[0])
        return {n: torch.cat(c) for n, c in codes.items()}, torch.cat(probabilities)

    reference, _ = codes_and_probabilities(images)
    curves = []
    for axis in ("x", "y"):
        truth, accuracy, distance = [], [], {name: [] for name in layers}
        for pixels in range(max_shift + 1):
            codes, probabilities = codes_and_probabilities(shifted(images, axis, pixels))
            truth.append(float(probabilities.gather(1, labels[:, None]).mean()))
            accuracy.append(float((probabilities.argmax(1) == labels).float().mean()))
            for name in layers:
                similarity = F.cosine_similarity(codes[name], reference[name], dim=1, eps=1e-12)
                distance[name].append(max(0.0, float((1 - similarity).mean())))  # rounding gives -0.0
        curves.append(ShiftCurve(axis, list(range(max_shift + 1)), truth, accuracy, distance))
    return curves


@register
class Translation(Analysis):
    name = "translation"
    title = "Translation sensitivity"
    result_type = TranslationResult

    def finish(self, ctx: BuildContext, consumer: None) -> TranslationResult:
        settings = ctx.config.analyses.translation
        if ctx.model.scripted:
            raise ValueError("translation sensitivity records inner layers, which TorchScript models do not allow")
        chosen = balanced_sample(ctx.dataset.labels, settings.images, ctx.config.seed)
        items = [ctx.dataset[int(i)] for i in chosen]
        items = [item for item in items if item is not None]
        images = torch.stack([item[0] for item in items]).to(ctx.device)
        labels = torch.tensor([item[1] for item in items], device=ctx.device)
        max_shift = settings.max_shift or max(1, min(ctx.config.model.input_size[1:]) // 8)
        layers = [layer.name for layer in ctx.recorded_layers]
        curves = measure(ctx.model.module, images, labels, layers, max_shift, ctx.config.batch_size)
        return TranslationResult(images=len(items), max_shift=max_shift, curves=curves)
