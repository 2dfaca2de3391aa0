import numpy as np
import pytest
import torch

from dossier.analyses.neuron_types import (
    _UnitStatistics,
    is_border_aware,
    ks_spreads,
    selectivity_index,
)
from dossier.capture import Batch
from dossier.layers import batchnorm_after
from dossier.sample import DigitsCNN
from tests.conftest import tiny_model


def test_a_unit_differing_only_in_its_first_column_is_border_aware() -> None:
    rng = np.random.default_rng(0)
    unit = rng.normal(size=(16, 3, 3))
    unit[:, :, 0] += 3.0
    column, row = ks_spreads(unit)
    assert column >= 0.5 and row < 0.2
    assert is_border_aware((column, row), 0.5, "either")
    # The seed's literal rule needs both spreads, which such a unit cannot reach.
    assert not is_border_aware((column, row), 0.5, "both")


def test_iid_units_are_not_border_aware() -> None:
    rng = np.random.default_rng(1)
    flagged = [is_border_aware(ks_spreads(rng.normal(size=(64, 3, 3))), 0.5, "either") for _ in range(50)]
    assert not any(flagged)


def test_small_kernels_are_not_judged() -> None:
    assert ks_spreads(np.zeros((4, 1, 1))) is None
    assert not is_border_aware(None, 0.5, "either")


def test_selectivity_index_known_values() -> None:
    assert selectivity_index(np.array([1.0, 1.0, 1.0])) == (0.0, 0)
    index, top = selectivity_index(np.array([0.0, 3.0, 0.0]))
    assert index == 1.0 and top == 1
    index, _ = selectivity_index(np.array([3.0, 1.0, 1.0]))
    assert index == pytest.approx(0.5)


def test_batchnorm_after_matches_by_tensor_identity() -> None:
    model = DigitsCNN().eval()
    names = ["conv1", "conv2", "block.conv1", "block.conv2", "conv3"]
    found = batchnorm_after(model, names, (3, 32, 32), torch.device("cpu"))
    assert {conv: bn for conv, (bn, _) in found.items()} == {
        "conv1": "bn1", "conv2": "bn2", "block.conv1": "block.bn1", "block.conv2": "block.bn2", "conv3": "bn3",
    }
    tiny = tiny_model().eval()
    found = batchnorm_after(tiny, ["conv1", "conv2"], (3, 12, 12), torch.device("cpu"))
    assert list(found) == ["conv1"]  # conv2 feeds a ReLU directly
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in tiny.modules()) == 0


def _feed(stats: _UnitStatistics, activations: torch.Tensor, labels: torch.Tensor) -> None:
    n = len(labels)
    stats.update(Batch(torch.zeros(n, 1), labels, torch.arange(n), torch.zeros(n, 2), {"conv": activations}))


def test_statistics_find_dead_border_and_selective_units() -> None:
    stats = _UnitStatistics(["conv"], {}, classes=2)
    x = torch.zeros(8, 3, 6, 6)
    x[:, 0] = -1.0  # unit 0: never positive → dead after ReLU
    x[:, 1, :, 0] = 2.0  # unit 1: fires on the left border only
    x[:, 1, 2:4, 2:4] = 0.1
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    x[labels == 0, 2] = 1.0  # unit 2: fires for class 0 only
    _feed(stats, x, labels)
    sides = stats.side_sums["conv"][:, 1] / 8
    interior = stats.interior_sum["conv"][1] / 8
    assert sides.argmax() == 2 and float(sides[2] / interior) == pytest.approx(2.0 / (0.1 * 4 / 16))
    class_means = (stats.class_sums["conv"][:, 2] / stats.class_counts).numpy()
    assert selectivity_index(class_means) == (1.0, 0)
    assert float(stats.maximum["conv"][0]) == 0.0
