"""DeepDream: the start image is reproduced, the dream raises the layer's objective, the model is
left as it was."""

import pytest
import torch
from torch import nn

from dossier.analyses.deepdream import DeepDreamSettings, dream, dream_objective, fit_parameterisation, octave_sizes

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("kind", ["fourier", "pixel", "laplacian"])
def test_the_parameterisation_is_fitted_to_the_start_image(kind: str) -> None:
    images = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    fitted = fit_parameterisation(kind, images, torch.Generator().manual_seed(1))()
    assert (fitted - images).abs().mean() < 2 / 255
    assert (fitted - images).abs().max() < 3 / 255  # the 1% margin kept off pure black and white


def test_octaves_run_from_small_to_full_size() -> None:
    assert octave_sizes(32, 48, 3, 1.4) == [(16, 24), (23, 34), (32, 48)]
    assert octave_sizes(224, 224, 1, 1.4) == [(224, 224)]


def test_the_dream_amplifies_the_layer_and_leaves_the_model_unchanged() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1)).eval()
    before_weights = [p.detach().clone() for p in model.parameters()]
    images = torch.rand(3, 3, 24, 24, generator=torch.Generator().manual_seed(2)) * 0.6 + 0.2
    settings = DeepDreamSettings(octaves=2, steps=8)
    dreamed = dream(model, "2", images, MEAN, STD, settings, seed=0)
    assert dreamed.shape == images.shape and 0 <= dreamed.min() and dreamed.max() <= 1
    shift, scale = torch.tensor(MEAN).view(1, -1, 1, 1), torch.tensor(STD).view(1, -1, 1, 1)
    with torch.no_grad():
        before = dream_objective(model, "2", images, shift, scale)
        after = dream_objective(model, "2", dreamed, shift, scale)
    assert (after > 1.5 * before).all(), (before, after)
    # still the same picture, enhanced: closer to its original than to the other images
    distance = torch.cdist(dreamed.flatten(1), images.flatten(1))
    assert (distance.argmin(dim=1) == torch.arange(3)).all()
    assert all(torch.equal(a, b) for a, b in zip(before_weights, model.parameters()))
    assert all(p.requires_grad for p in model.parameters())
    assert _hooks(model) == 0
