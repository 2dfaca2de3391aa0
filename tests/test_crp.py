"""Concept relevance (CRP): the conditional heatmaps of a layer's channels add up to the layer's
heatmap, which on a layer every path crosses is the image's whole heatmap; relevance that bypasses
a layer is left out of its channels' maps; no hook is left behind."""

from __future__ import annotations

import torch
from torch import nn

from dossier.analyses.crp import conditional_relevance
from dossier.analyses.relevance import deep_taylor_composite, relevance_graph, relevance_pass
from tests.conftest import tiny_model

SIZE = (3, 12, 12)
MEAN = STD = (0.5, 0.5, 0.5)


def _images() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(4, *SIZE, generator=generator) * 2 - 1, torch.tensor([0, 1, 2, 0])


def _channel_maps(model: nn.Module, convs: list[str], layer: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Σ over channels of the conditional maps, the layer's map, the full heatmap, the logits)."""
    images, targets = _images()
    composite = deep_taylor_composite(model, convs, SIZE, MEAN, STD, torch.device("cpu"))
    with composite.context(model) as modified:
        logits, full, layers = relevance_pass(modified, images, targets, [layer])
        whole = conditional_relevance(modified, images, targets, layer, None)
        parts = [
            conditional_relevance(modified, images, targets, layer, torch.full((len(images),), c))
            for c in range(layers[layer].shape[1])
        ]
    return torch.stack(parts).sum(dim=0), whole, full, logits


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def test_conditional_heatmaps_add_up_to_the_heatmap_of_a_sequential_model() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(20, 3),
    ).eval()
    for layer in ("0", "2"):
        summed, whole, full, logits = _channel_maps(model, ["0", "2"], layer)
        scale = full.abs().max()
        assert (summed - whole).abs().max() <= 1e-5 * scale
        assert (whole - full).abs().max() <= 1e-5 * scale
        assert torch.allclose(full.sum(dim=(1, 2, 3)), logits, rtol=1e-3)  # and the heatmap is conserved
    assert _hooks(model) == 0


def test_relevance_that_bypasses_a_layer_is_not_in_its_channels() -> None:
    """The tiny model adds conv1's output to conv2's (a residual connection): conv1 is crossed by
    every path, conv2 only by part of the relevance."""
    torch.manual_seed(0)
    model, _ = relevance_graph(tiny_model().eval(), _images()[0][:1])
    summed, whole, full, _ = _channel_maps(model, ["conv1", "conv2"], "conv1")
    scale = full.abs().max()
    assert (summed - whole).abs().max() <= 1e-5 * scale and (whole - full).abs().max() <= 1e-5 * scale
    summed, whole, full, _ = _channel_maps(model, ["conv1", "conv2"], "conv2")
    assert (summed - whole).abs().max() <= 1e-5 * full.abs().max()
    through = whole.sum(dim=(1, 2, 3)) / full.sum(dim=(1, 2, 3))
    assert ((through > 0) & (through < 0.95)).all(), through  # a part passes conv2, the rest goes around it
