"""Relevance pass ÷ forward+backward of the same batch (resnet18, 224 px, batch 8, random weights).

    .venv/bin/python bench/heatmaps.py

Both sides compute input gradients only (no parameter gradients); the composite is registered
once, as a build does, and each side is timed as the median of several repetitions.
"""

from __future__ import annotations

import statistics
import time

import torch
import torchvision
from torch import nn

from dossier.analyses.relevance import deep_taylor_composite, relevance_graph, relevance_pass

REPEATS = 5


def median_seconds(step) -> float:
    step()  # warm-up
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    x = torch.randn(8, 3, 224, 224)
    targets = torch.zeros(8, dtype=torch.long)

    def forward_backward() -> None:
        inputs = x.clone().requires_grad_(True)
        logits = model(inputs)
        torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), inputs)

    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    traced, _ = relevance_graph(model, x[:1])
    composite = deep_taylor_composite(traced, convs, (3, 224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), torch.device("cpu"))
    baseline = median_seconds(forward_backward)
    with composite.context(traced) as modified:
        relevance = median_seconds(lambda: relevance_pass(modified, x, targets, []))
    print(f"forward+backward: {baseline:.3f} s per batch of 8")
    print(f"relevance pass:   {relevance:.3f} s per batch of 8")
    print(f"relevance/fwd+bwd: {relevance / baseline:.1f}x")


if __name__ == "__main__":
    main()
