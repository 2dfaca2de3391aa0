"""Heatmap faithfulness and the sanity check: known answers on tiny models (a model looking at the
left half, a constant model, an attribution that ignores the model), the randomisation's
bookkeeping, sentences true in edge cases, no leftover hooks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dossier.analyses.faithfulness import (
    RANDOM,
    REFERENCE,
    DataMean,
    Estimate,
    FaithfulnessResult,
    FaithfulnessSettings,
    MethodCurves,
    SanityCheck,
    attribute,
    deletion_check,
    faithfulness_finding,
    image_curves,
    patch_grid,
    perturbation_curves,
    randomisation_stages,
    randomised,
    sanity_check,
    sanity_gate,
    sanity_summary,
    standard_methods,
    summarise,
    verdict,
)
from dossier.capture import Batch
from tests.conftest import tiny_model

THRESHOLD = FaithfulnessSettings().threshold  # the project's default
BATCH = 64


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def _left_half_model() -> nn.Module:
    """Class 0's logit sums a ReLU conv of the left half only; class 1's is a constant, so the
    probability of class 0 falls exactly as the left half's evidence is taken away."""
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 2, 3, padding=1)
    head = nn.Linear(2 * 16 * 16, 2)
    with torch.no_grad():
        conv.weight.uniform_(0.1, 1.0)
        conv.bias.zero_()
        mask = torch.zeros(2, 16, 16)
        mask[:, :, :8] = 1  # only the left half of the feature map reaches the classifier
        head.weight.zero_()
        head.weight[0] = torch.rand(2 * 16 * 16) * mask.flatten() / 40
        head.bias.copy_(torch.tensor([0.0, 2.0]))
    return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), head).eval()


def _scorecard(model: nn.Module, images: torch.Tensor, methods: dict, per_side: int = 8):
    targets = model(images).argmax(dim=1)
    originals = {name: attribute(method, model, images, targets, BATCH) for name, method in methods.items()}
    curves = [
        image_curves(model, images[n], int(targets[n]), {m: originals[m][n] for m in methods}, per_side, 3,
                     torch.zeros(images.shape[1]), np.random.default_rng([0, n]), BATCH)
        for n in range(len(images))
    ]
    return {c.method: c for c in summarise([*methods, RANDOM], curves)}


def test_patches_tile_the_image() -> None:
    grid = patch_grid(32, 32, 8)
    assert torch.bincount(grid.flatten()).tolist() == [16] * 64
    assert grid[0, 0] == 0 and grid[0, 31] == 7 and grid[31, 0] == 56
    uneven = torch.bincount(patch_grid(10, 10, 4).flatten())
    assert len(uneven) == 16 and uneven.min() >= 4 and uneven.max() <= 9


def test_curves_run_from_the_image_to_the_filled_image_and_back() -> None:
    model = _left_half_model()
    image = torch.rand(1, 16, 16)
    grid = patch_grid(16, 16, 4)
    orders = np.stack([np.arange(16), np.arange(16)[::-1]])
    fill = torch.tensor([0.3])
    curves = perturbation_curves(model, image, 0, orders, grid, fill, batch=5)  # batches cutting through orders
    with torch.no_grad():
        full = torch.softmax(model(image[None]), 1)[0, 0]
        empty = torch.softmax(model(torch.full((1, 1, 16, 16), 0.3)), 1)[0, 0]
    assert curves.shape == (2, 2, 17)
    assert np.allclose(curves[:, 0, 0], full) and np.allclose(curves[:, 0, -1], empty)  # deletion
    assert np.allclose(curves[:, 1, 0], empty) and np.allclose(curves[:, 1, -1], full)  # insertion


def test_lrp_on_a_model_looking_at_the_left_half_beats_random_orders() -> None:
    model = _left_half_model()
    images = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    assert (model(images).argmax(1) == 0).all()
    scores = _scorecard(model, images, standard_methods(["0"], "0", (0.5,), (0.5,)))
    lrp, random = scores["LRP"], scores[RANDOM]
    # LRP puts the left half first: the probability falls (rises) within the first half of the steps
    assert lrp.deletion_area.mean < random.deletion_area.mean - 0.1, (lrp.deletion_area, random.deletion_area)
    assert lrp.insertion_area.mean > random.insertion_area.mean + 0.1, (lrp.insertion_area, random.insertion_area)
    assert verdict(lrp.deletion_gain) == 1 and verdict(lrp.insertion_gain) == 1
    for curves in scores.values():
        areas = curves.deletion_areas + curves.insertion_areas
        assert all(0 <= a <= 1 for a in areas)
    assert _hooks(model) == 0


def test_a_constant_model_gives_flat_curves_equal_to_random() -> None:
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 10 * 10, 3)).eval()
    with torch.no_grad():
        model[3].weight.zero_()
        model[3].bias.copy_(torch.tensor([1.0, 0.0, -1.0]))
    images = torch.randn(3, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    scores = _scorecard(model, images, standard_methods(["0"], "0", (0.5,) * 3, (0.25,) * 3), per_side=4)
    constant = float(torch.softmax(torch.tensor([1.0, 0.0, -1.0]), 0)[0])
    for curves in scores.values():
        assert np.allclose(curves.deletion, constant) and np.allclose(curves.insertion, constant)
        assert curves.deletion_area.mean == pytest.approx(scores[RANDOM].deletion_area.mean)
        if curves.method != RANDOM:
            assert verdict(curves.deletion_gain) == 0 and verdict(curves.insertion_gain) == 0


def test_stages_randomise_cumulatively_from_the_output() -> None:
    model = tiny_model().eval()
    stages = randomisation_stages(model, torch.randn(1, 3, 12, 12), 3)
    assert stages == [("fc", ["fc"]), ("conv2 and above", ["conv2", "fc"]), ("every layer", ["conv1", "bn1", "conv2", "fc"])]
    assert randomisation_stages(model, torch.randn(1, 3, 12, 12), 10)[-1][0] == "every layer"
    assert [label for label, _ in randomisation_stages(model, torch.randn(1, 3, 12, 12), 1)] == ["every layer"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.random.get_rng_state()
    first, again = randomised(model, ["conv2", "fc"], 0), randomised(model, ["fc"], 0)
    assert torch.equal(first.fc.weight, again.fc.weight)  # a later stage re-draws earlier stages' layers alike
    assert not torch.equal(first.conv2.weight, model.conv2.weight) and torch.equal(again.conv2.weight, model.conv2.weight)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model itself is untouched
    assert torch.equal(state, torch.random.get_rng_state())  # and so is the build's random state


def _input_itself(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """An "edge detector" that never asks the model: the image's own intensity."""
    return images.sum(dim=1)


def _corner_model() -> nn.Module:
    """Two ReLU convs whose classifier reads the top-left quarter of the feature maps only: what
    the maps should point at is known, and a randomised copy has no reason to point there."""
    torch.manual_seed(0)
    first, second, head = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Linear(4 * 16 * 16, 3)
    with torch.no_grad():
        for conv in (first, second):
            conv.weight.uniform_(-0.2, 1.0)
            conv.bias.zero_()
        mask = torch.zeros(4, 16, 16)
        mask[:, :8, :8] = 1
        head.weight.copy_(torch.randn(3, 4 * 16 * 16).abs() * mask.flatten() / 20)
        head.weight[1:] *= 0.5  # class 0 is the one explained
        head.bias.zero_()
    return nn.Sequential(first, nn.ReLU(), second, nn.ReLU(), nn.Flatten(), head).eval()


def test_the_sanity_check_flags_a_method_that_ignores_the_model() -> None:
    model = _corner_model()
    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1  # noise: no structure to echo
    targets = model(images).argmax(dim=1)
    assert (targets == 0).all()
    methods = {**standard_methods(["0", "2"], "2", (0.5,) * 3, (0.25,) * 3), "input itself": _input_itself}
    originals = {name: attribute(method, model, images, targets, BATCH) for name, method in methods.items()}
    stages = randomisation_stages(model, images[:1], 3)
    assert [label for label, _ in stages] == ["5", "2 and above", "every layer"]
    per_stage = [sanity_check(model, images, targets, methods, originals, names, 0, BATCH) for _, names in stages]
    checks = {name: sanity_summary(name, [stage[name] for stage in per_stage], THRESHOLD) for name in methods}
    assert checks["input itself"].insensitive and checks["input itself"].correlations == pytest.approx([1.0] * 3)
    for name in ("LRP", "Grad-CAM"):
        assert checks[name].correlations[-1] < THRESHOLD - 0.3, checks[name].correlations
        assert not checks[name].insensitive
    assert _hooks(model) == 0
    # in the Checks panel: the method that ignores the model fails the gate, the model's own heatmaps pass it
    failed = sanity_gate(_result(0.3, 0.4, sanity=list(checks.values())))
    assert failed.status == "fail" and failed.detail == "insensitive to the model: input itself"
    assert failed.value == "input itself: 1.00"
    passed = sanity_gate(_result(0.3, 0.4, sanity=[checks["LRP"], checks["Grad-CAM"]]))
    assert passed.status == "pass" and passed.detail.endswith("once every layer is re-initialised")


def _estimate(mean: float, spread: float | None) -> Estimate:
    return Estimate(mean, None, None) if spread is None else Estimate(mean, mean - spread, mean + spread)


def _curves(method: str, area: float, gain: float | None, images: int, spread: float | None) -> MethodCurves:
    """The same area for deletion and insertion, so the insertion gain is the deletion gain negated."""
    gains = (None, None) if gain is None else (_estimate(gain, spread), _estimate(-gain, spread))
    estimate = _estimate(area, spread)
    return MethodCurves(method, [1.0, 0.0], [0.0, 1.0], [area] * images, [area] * images, estimate, estimate, *gains)


def _result(
    deletion: float, random: float, images: int = 4, spread: float | None = 0.0, last: float | None = None,
    sanity: list[SanityCheck] | None = None,
) -> FaithfulnessResult:
    """Areas the same on every image, with the given half-width of their intervals (None: no
    interval); `last`: LRP's correlation at the last randomisation stage, unless `sanity` is given."""
    curves = [_curves("LRP", deletion, random - deletion, images, spread), _curves(RANDOM, random, None, images, spread)]
    if sanity is None:
        sanity = [SanityCheck("LRP", [0.9, last], [[0.9] * images, [last] * images], last > 0.5)] if last is not None else []
    return FaithfulnessResult(
        score="p", baseline="0", fill=[0.0], patches=8, random_orders=3, threshold=0.5, gradcam_layer="conv2",
        indices=list(range(images)), names=[str(n) for n in range(images)], targets=[0] * images,
        curves=curves if images else [], stages=["fc", "every layer"][-len(sanity[0].correlations):] if sanity else [],
        sanity=sanity,
    )


def test_the_finding_stays_true_in_edge_cases() -> None:
    better = faithfulness_finding(_result(0.31, 0.52, spread=0.05, last=0.1))
    assert better == (
        "Heatmap faithfulness on 4 image(s), deletion / insertion areas against random order's 0.52 / 0.52: LRP 0.31 / "
        "0.31. Faster than random on deletion: LRP. Slower than random on insertion: LRP. Re-initialising the model "
        "changes every method's maps (rank correlation at most 0.10)."
    )
    for close in (_result(0.40, 0.42, spread=0.05), _result(0.40, 0.40)):  # within the interval; equal areas
        sentence = faithfulness_finding(close)
        assert "No method beats random order on either curve." in sentence and "Slower" not in sentence
    lone = faithfulness_finding(_result(0.3, 0.4, images=1, spread=None))  # no interval: by the sign
    assert "Faster than random on deletion: LRP. Slower than random on insertion: LRP." in lone
    flagged = faithfulness_finding(_result(0.3, 0.4, last=0.8))
    assert "The sanity check flags LRP (0.80) as insensitive to the model" in flagged
    assert faithfulness_finding(_result(0.3, 0.3, images=0)) == (
        "Heatmap faithfulness: no image was explained, so nothing was measured."
    )


def test_the_deletion_check_holds_heatmaps_to_the_minimum_gain() -> None:
    clearly = deletion_check(_result(0.30, 0.50, spread=0.05), 0.0)
    assert clearly.status == "pass" and clearly.value == "LRP: +0.200" and clearly.threshold == "deletion gain over random ≥ 0.00"
    assert "deletion area 0.300 vs random's 0.500, 95% interval [+0.150, +0.250], over 4 image(s)" in clearly.detail
    assert deletion_check(_result(0.48, 0.50, spread=0.05), 0.0).status == "warn"  # not told from random
    assert deletion_check(_result(0.52, 0.50, spread=0.05), 0.0).status == "warn"  # nor is this
    assert deletion_check(_result(0.55, 0.50, spread=0.01), 0.0).status == "fail"  # slower than random
    assert deletion_check(_result(0.55, 0.50, images=1, spread=None), 0.0).status == "fail"  # by its sign alone
    assert deletion_check(_result(0.30, 0.50, spread=0.05), 0.3).status == "fail"  # an impossible threshold
    assert deletion_check(_result(0.3, 0.3, images=0), 0.0) is None


def test_the_reference_is_shown_but_not_gated() -> None:
    result = _result(0.3, 0.5, sanity=[SanityCheck(REFERENCE, [0.9, 0.8], [[0.9], [0.8]], True),
                                       SanityCheck("LRP", [0.5, 0.1], [[0.5], [0.1]], False)])
    gate = sanity_gate(result)
    assert gate.status == "warn" and gate.detail == f"insensitive to the model: {REFERENCE}"


def test_the_data_mean_is_each_channels_mean_over_every_shard() -> None:
    images = torch.rand(10, 3, 4, 5, generator=torch.Generator().manual_seed(0))

    def fed(rows: slice) -> DataMean:
        mean = DataMean()
        part = images[rows]
        mean.update(Batch(part, torch.zeros(len(part)), torch.arange(len(part)), torch.zeros(len(part), 2), {}))
        return mean

    first, second = fed(slice(0, 7)), fed(slice(7, 10))
    first.merge(second)
    assert torch.allclose(first.mean(), images.mean(dim=(0, 2, 3)))
