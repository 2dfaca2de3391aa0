"""Feature visualisation speed: dossier's batched path against one unit at a time, Lucent-style.

    .venv/bin/python bench/feature_vis.py

resnet18 (random weights), layer3 units, 64 px, equal steps and transforms on both sides:
(a) one unit per optimisation, one after another, through the full model with its parameters
    left requiring gradients (how Lucent is used by default);
(b) dossier: units batched (one image each), frozen parameters, forward cut after layer3;
and the per-step time of (b) ÷ a bare forward+backward (input gradients only) of the same batch
through the same truncated network. The last line is the speed-up of (b) over (a).
"""

from __future__ import annotations

import time

import torch
import torchvision

from dossier.capture import truncated_forward
from dossier.featurevis import ImageParameterisation, Transforms, channel, optimise

SIZE, STEPS, UNITS, LAYER = 64, 16, 16, "layer3"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def one_at_a_time(model: torch.nn.Module) -> float:
    """Lucent's way: a whole optimisation per unit, full forward, parameter gradients computed."""
    generator = torch.Generator().manual_seed(0)
    transforms = Transforms()
    shift, scale = torch.tensor(MEAN).view(1, -1, 1, 1), torch.tensor(STD).view(1, -1, 1, 1)
    start = time.perf_counter()
    for unit in range(UNITS):
        image = ImageParameterisation("fourier", 1, 3, (SIZE, SIZE), generator)
        optimiser = torch.optim.Adam(image.parameters(), lr=0.05)
        for _ in range(STEPS):
            outputs = truncated_forward(model, [LAYER], (transforms.apply(image(), generator) - shift) / scale, stop=False)
            loss = -channel(LAYER, torch.tensor([unit]))(outputs).sum()
            optimiser.zero_grad()
            model.zero_grad()
            loss.backward()
            optimiser.step()
    return time.perf_counter() - start


def batched(model: torch.nn.Module) -> float:
    start = time.perf_counter()
    optimise(model, channel(LAYER, torch.arange(UNITS)), [LAYER], UNITS, (3, SIZE, SIZE), MEAN, STD, STEPS, seed=0)
    return time.perf_counter() - start


def bare_step(model: torch.nn.Module) -> float:
    """Forward to layer3 and backward to the input, same batch, no transforms, no parameters."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    x = torch.randn(UNITS, 3, SIZE, SIZE)
    start = time.perf_counter()
    for _ in range(STEPS):
        inputs = x.clone().requires_grad_(True)
        activation = truncated_forward(model, [LAYER], inputs)[LAYER]
        torch.autograd.grad(activation.mean(), inputs)
    seconds = time.perf_counter() - start
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return seconds / STEPS


def main() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    a = one_at_a_time(model)
    b = batched(model)
    bare = bare_step(model)
    print(f"(a) one unit at a time, full model, parameter gradients: {UNITS / a:.2f} units/s")
    print(f"(b) dossier, {UNITS} units batched, frozen, cut after {LAYER}: {UNITS / b:.2f} units/s")
    print(f"(b) per step ÷ bare forward+backward of the same batch: {b / STEPS / bare:.2f}x")
    print(f"speed-up: {a / b:.1f}x")


if __name__ == "__main__":
    main()
