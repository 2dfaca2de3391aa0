"""Broken models are refused in one line naming the tensor or the layer."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.conftest import TINY_CONFIG, tiny_model, write_config

FAILING_FACTORY = '''
import torch
from torch import nn


class Picky(nn.Module):
    def forward(self, x):
        raise ValueError("picky refuses every input")


def build(num_classes=3):
    return nn.Sequential(nn.Conv2d(3, 4, 3), Picky(), nn.Flatten(), nn.LazyLinear(num_classes))


def flat(num_classes=3):
    return nn.Sequential(nn.Conv2d(3, num_classes, 3))  # (batch, classes, h, w): not class scores
'''


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    return lines[0]


def test_nan_or_infinite_weights_are_refused_naming_the_tensor(project: Path, cli) -> None:
    state = tiny_model().state_dict()
    state["conv2.weight"][0, 0, 0, 0] = float("nan")
    state["fc.bias"][1] = float("inf")
    torch.save(state, project / "tiny.pt")
    line = _one_line_error(cli("build", write_config(project, TINY_CONFIG), "--out", project / "out"))
    assert "model.weights: tensor 'conv2.weight' holds 1 NaN or infinite value(s) of 144" in line
    assert not (project / "out").exists()


def test_a_model_that_raises_names_the_layer(project: Path, cli) -> None:
    (project / "picky.py").write_text(FAILING_FACTORY)
    text = TINY_CONFIG.replace("models.py:build", "picky.py:build").replace("  weights: tiny.pt\n", "")
    line = _one_line_error(cli("build", write_config(project, text), "--out", project / "out"))
    assert "in layer '1' (Picky)" in line and "picky refuses every input" in line


def test_output_that_is_not_class_scores(project: Path, cli) -> None:
    (project / "picky.py").write_text(FAILING_FACTORY)
    text = TINY_CONFIG.replace("models.py:build", "picky.py:flat").replace("  weights: tiny.pt\n", "")
    line = _one_line_error(cli("build", write_config(project, text), "--out", project / "out"))
    assert "model: output is (2, 3, 10, 10); expected class scores of shape (batch, classes)" in line
