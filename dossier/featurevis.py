"""Feature visualisation machinery (METHODS §3; seed 004 §3.2, Table 3.1; seed 001 Algorithm 2):
image parameterisations, robustness transforms, objectives and the batched optimisation loop.

Lucent-style pieces, written here because the levers that make a dossier affordable on a CPU need
control Lucent does not give: one batch element per unit, no parameter gradients, the forward pass
cut at the deepest target layer, the model's own input size, one set of random transform draws per
step shared by the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dossier.capture import truncated_forward

# Lucid's colour correlation (ImageNet), as its square root: decorrelated → RGB.
_COLOUR_CORRELATION = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOUR_CORRELATION = _COLOUR_CORRELATION / _COLOUR_CORRELATION.norm(dim=0).max()


@dataclass(frozen=True)
class Transforms:
    """The seed's robustness transforms, in pixels at 224 px, scaled to the image size."""

    pad: int = 12
    jitter: int = 8
    scale: tuple[float, float] = (0.9, 1.1)
    rotate: float = 5.0
    jitter_after: int = 4

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One random draw per step for the whole batch, composed into a single affine warp."""
        size = images.shape[-1]
        factor = size / 224

        def uniform(low: float, high: float) -> float:
            return float(torch.empty(1).uniform_(low, high, generator=generator))

        pad = max(1, round(self.pad * factor))
        padded = F.pad(images, (pad,) * 4, mode="reflect" if pad < size else "replicate")
        shift = (uniform(-1, 1) * self.jitter + uniform(-1, 1) * self.jitter_after) * factor
        shift_y = (uniform(-1, 1) * self.jitter + uniform(-1, 1) * self.jitter_after) * factor
        scale = uniform(*self.scale)
        angle = math.radians(uniform(-self.rotate, self.rotate))
        full = padded.shape[-1]
        cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
        # Sample the central size×size window of the padded image, warped.
        crop = size / full
        theta = torch.tensor(
            [[cos * crop, -sin * crop, 2 * shift / full], [sin * crop, cos * crop, 2 * shift_y / full]],
            dtype=images.dtype, device=images.device,
        )
        grid = F.affine_grid(theta.expand(len(images), 2, 3), list(images.shape), align_corners=False)
        return F.grid_sample(padded, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


class ImageParameterisation(nn.Module):
    """A batch of images in [0, 1] from trainable parameters: fourier, pixel or laplacian."""

    def __init__(self, kind: str, batch: int, channels: int, size: tuple[int, int], generator: torch.Generator, decorrelate: bool = True) -> None:
        super().__init__()
        self.kind, self.channels, self.size = kind, channels, size
        self.decorrelate = decorrelate and channels == 3
        height, width = size
        if kind == "fourier":
            frequencies = torch.sqrt(torch.fft.fftfreq(height)[:, None] ** 2 + torch.fft.rfftfreq(width)[None, :] ** 2)
            self.register_buffer("spectrum_scale", 1.0 / torch.clamp(frequencies, min=1.0 / max(height, width)))
            shape = (batch, channels, height, width // 2 + 1, 2)
            self.params = nn.Parameter(torch.randn(shape, generator=generator) * 0.01)
        elif kind == "laplacian":
            self.levels = [s for s in (1, 2, 4, 8) if min(height, width) // s >= 2]
            self.params = nn.ParameterList(
                [nn.Parameter(torch.randn(batch, channels, -(-height // s), -(-width // s), generator=generator) * 0.01) for s in self.levels]
            )
        elif kind == "pixel":
            self.params = nn.Parameter(torch.randn(batch, channels, height, width, generator=generator) * 0.01)
        else:
            raise ValueError(f"unknown parameterisation {kind!r}")

    def forward(self) -> torch.Tensor:
        height, width = self.size
        if self.kind == "fourier":
            spectrum = torch.view_as_complex(self.params) * self.spectrum_scale
            raw = torch.fft.irfft2(spectrum, s=(height, width), norm="ortho") * 4
        elif self.kind == "laplacian":
            raw = sum(
                F.interpolate(p, size=(height, width), mode="bilinear", align_corners=False) if s > 1 else p
                for s, p in zip(self.levels, self.params)
            )
        else:
            raw = self.params
        if self.decorrelate:
            raw = torch.einsum("bchw,dc->bdhw", raw, _COLOUR_CORRELATION.to(raw))
        return torch.sigmoid(raw)


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """No parameter gradients while optimising images; restored afterwards."""
    previous = [p.requires_grad for p in model.parameters()]
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in zip(model.parameters(), previous):
            parameter.requires_grad_(flag)


Objective = Callable[[dict[str, torch.Tensor]], torch.Tensor]  # outputs -> per-image score to maximise


def channel(layer: str, units: torch.Tensor, sign: float = 1.0, after: nn.Module | None = None) -> Objective:
    """Mean over space of unit `units[b]` for batch element b (sign −1: minimise it); `after`
    (the conv's BatchNorm) is applied first, so the unit is the one the next layer sees."""
    def score(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        activation = outputs[layer] if after is None else after(outputs[layer])
        picked = activation[torch.arange(len(units)), units]
        return sign * picked.mean(dim=tuple(range(1, picked.ndim))) if picked.ndim > 1 else sign * picked
    return score


def whole_layer(layer: str) -> Objective:
    return lambda outputs: outputs[layer].flatten(1).mean(dim=1)


def class_logit(classes: torch.Tensor) -> Objective:
    """The logit itself, never the softmax (which can rise by lowering the other classes)."""
    return lambda outputs: outputs["(output)"][torch.arange(len(classes)), classes]


def mix(*weighted: tuple[float, Objective]) -> Objective:
    return lambda outputs: sum(weight * objective(outputs) for weight, objective in weighted)


def optimise(
    model: nn.Module,
    objective: Objective,
    layers: list[str],
    batch: int,
    input_size: tuple[int, int, int],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    steps: int,
    seed: int,
    parameterisation: str = "fourier",
    transforms: Transforms | None = Transforms(),
    learning_rate: float = 0.05,
    device: torch.device = torch.device("cpu"),
    decorrelate: bool = True,
    stop: bool = True,
    trace: list[torch.Tensor] | None = None,
    mixed_precision: bool = False,
) -> torch.Tensor:
    """Images in [0, 1] (batch × C × H × W) maximising objective, one batch element each.
    `trace` collects each step's objective per image (the convergence curve); `mixed_precision`
    runs the forward pass in bf16 (on a GPU: twice the speed, and the image stays fp32)."""
    generator = torch.Generator().manual_seed(seed)
    channels, height, width = input_size
    image = ImageParameterisation(parameterisation, batch, channels, (height, width), generator, decorrelate).to(device)
    optimiser = torch.optim.Adam(image.parameters(), lr=learning_rate)
    shift = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    scale = torch.tensor(std, device=device).view(1, -1, 1, 1)
    with frozen(model):
        for _ in range(steps):
            pixels = image()
            if transforms is not None:
                pixels = transforms.apply(pixels, generator)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed_precision):
                scores = objective(truncated_forward(model, layers, (pixels - shift) / scale, stop)).float()
            if trace is not None:
                trace.append(scores.detach().cpu())
            loss = -scores.sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        return image().detach()


def histogram_peaks(image: np.ndarray) -> list[int]:
    """Per RGB channel, the most frequent 0–255 value (seed 001, Algorithm 3)."""
    return [int(np.bincount(image[..., c].ravel(), minlength=256).argmax()) for c in range(image.shape[2])]
