"""One pass over the data through both models at once: each image's two predictions and the
moments of both models' units, so that units can be correlated on the same images."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from dossier.analyses.base import BuildContext
from dossier.capture import recording
from dossier.compare.matching import Moments
from dossier.data import collate_readable

# Σ units of A × Σ units of B above which only same-name layers are cross-multiplied: the full
# layer × layer CKA map of two resnet50s would hold 10⁹ numbers.
CROSS_BUDGET = 2**24


@dataclass
class Streamed:
    moments: Moments
    indices: np.ndarray  # data-set indices of the images read, in order
    labels: np.ndarray
    predicted_a: np.ndarray
    predicted_b: np.ndarray


def unit_layers(ctx: BuildContext) -> dict[str, int]:
    """Recorded layers with units (a conv's channels, a dense layer's outputs) and how many."""
    if not ctx.hookable:
        return {}
    return {
        layer.name: layer.output_shape[0]
        for layer in ctx.recorded_layers
        if layer.output_shape and len(layer.output_shape) in (1, 3)
    }


def layer_pairs(units_a: dict[str, int], units_b: dict[str, int]) -> list[tuple[str, str]]:
    """Every A layer × B layer when their cross-products fit CROSS_BUDGET, else the same-name ones."""
    if sum(units_a.values()) * sum(units_b.values()) <= CROSS_BUDGET:
        return [(a, b) for a in units_a for b in units_b]
    return [(name, name) for name in units_a if name in units_b]


def unit_values(norms: dict[str, tuple[str, torch.nn.Module]], name: str, activation: torch.Tensor) -> torch.Tensor:
    """Images × units, each unit as the galleries see it: after the BatchNorm reading the conv
    (BuildContext.conv_norms), averaged over positions."""
    norm = norms.get(name)
    if norm is not None:
        activation = norm[1](activation)
    return activation.mean(dim=(2, 3)) if activation.ndim == 4 else activation.flatten(1)


def stream(ctx_a: BuildContext, ctx_b: BuildContext, pairs: list[tuple[str, str]]) -> Streamed:
    """Run A's data set through both models once (B gets each image normalised its own way)."""
    units_a, units_b = unit_layers(ctx_a), unit_layers(ctx_b)
    moments = Moments(units_a, units_b, pairs)
    loader = DataLoader(
        ctx_a.dataset, batch_size=ctx_a.options.batch_size, shuffle=False, collate_fn=collate_readable,
        num_workers=ctx_a.options.loader_workers,
    )
    for_b = _renormalisation(ctx_a, ctx_b)
    # Found by a forward pass of their own, which must not run while the layers are recorded.
    norms_a, norms_b = ctx_a.conv_norms, ctx_b.conv_norms
    parts: dict[str, list[np.ndarray]] = {"indices": [], "labels": [], "a": [], "b": []}
    model_a, model_b = ctx_a.model.module, ctx_b.model.module
    with torch.inference_mode(), recording(model_a, list(units_a)) as out_a, recording(model_b, list(units_b)) as out_b:
        for item in loader:
            if item is None:
                continue
            images, labels, indices = item
            logits_a = model_a(images.to(ctx_a.device))
            logits_b = model_b(for_b(images).to(ctx_b.device))
            moments.update(
                {name: unit_values(norms_a, name, value) for name, value in out_a.items()},
                {name: unit_values(norms_b, name, value) for name, value in out_b.items()},
            )
            parts["indices"].append(indices.numpy())
            parts["labels"].append(labels.numpy())
            parts["a"].append(logits_a.argmax(dim=1).cpu().numpy())
            parts["b"].append(logits_b.argmax(dim=1).cpu().numpy())
    if not parts["indices"]:
        return Streamed(moments, *(np.zeros(0, dtype=np.int64) for _ in range(4)))
    joined = {key: np.concatenate(values) for key, values in parts.items()}
    return Streamed(moments, joined["indices"], joined["labels"], joined["a"], joined["b"])


def _renormalisation(ctx_a: BuildContext, ctx_b: BuildContext) -> Callable[[torch.Tensor], torch.Tensor]:
    """A's normalised input → B's: the same pixels, normalised with B's mean and std."""
    spec_a, spec_b = ctx_a.config.model, ctx_b.config.model
    if (spec_a.channel_mean, spec_a.channel_std) == (spec_b.channel_mean, spec_b.channel_std):
        return lambda images: images

    def shape(values: tuple[float, ...]) -> torch.Tensor:
        return torch.tensor(values).view(1, -1, 1, 1)

    def convert(images: torch.Tensor) -> torch.Tensor:
        pixels = images * shape(spec_a.channel_std) + shape(spec_a.channel_mean)
        return (pixels - shape(spec_b.channel_mean)) / shape(spec_b.channel_std)

    return convert
