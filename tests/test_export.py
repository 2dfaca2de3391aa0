"""model.export: torch.export programs rebuilt into ordinary modules with their original names.

The tiny model's whole dossier through torch.export is checked in test_conformance.py; here a
torchvision resnet18 (residual blocks, downsampling shortcuts, in-place ReLUs) is compared with the
eager model layer by layer, and every way an export can be unusable gets its one-line error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from dossier.analyses.relevance import relevance_graph
from dossier.capture import recording
from dossier.config import load_config
from dossier.errors import ConfigError, ModelError
from dossier.layers import discover_layers
from dossier.model_source import load_model
from dossier.manifest import file_sha256
from dossier.weights import control_weights
from tests.conftest import tiny_model, write_config

CONFIG = """\
model:
  export: model.pt2
  input_size: [3, SIZE, SIZE]
data:
  imagefolder: data
"""
CPU = torch.device("cpu")


def save_export(model: nn.Module, path: Path, example: torch.Tensor, dynamic_batch: bool = True) -> Path:
    shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    torch.export.save(torch.export.export(model.eval(), (example,), dynamic_shapes=shapes), path)
    return path


def _load(folder: Path, size: int):
    config = load_config(write_config(folder, CONFIG.replace("SIZE", str(size))))
    return load_model(config, folder / "cache")


def _architecture(model: nn.Module, size: int) -> list[tuple]:
    layers, _ = discover_layers(model, "auto", (3, size, size), CPU, scripted=False)
    return [
        (l.name, l.type, l.kernel, l.stride, l.groups, l.output_shape, l.parameters, l.receptive_field) for l in layers
    ]


@pytest.fixture(scope="module")
def resnet18(tmp_path_factory) -> tuple[nn.Module, nn.Module]:
    """(eager resnet18, the same loaded from its export), random init at 64 px."""
    folder = tmp_path_factory.mktemp("resnet18")
    torch.manual_seed(0)
    eager = torchvision.models.resnet18(num_classes=3).eval()
    save_export(eager, folder / "model.pt2", torch.randn(2, 3, 64, 64))
    loaded = _load(folder, 64)
    assert loaded.trained and not loaded.scripted
    assert loaded.weights_sha256 == file_sha256(folder / "model.pt2")
    assert "model.pt2" in loaded.weights_source
    return eager, loaded.module


def test_resnet18_export_has_the_eager_layers(resnet18) -> None:
    eager, exported = resnet18
    assert _architecture(exported, 64) == _architecture(eager, 64)
    modules = dict(exported.named_modules())
    assert type(modules["layer1.0.conv1"]) is nn.Conv2d and type(modules["layer2.0.downsample.1"]) is nn.BatchNorm2d
    assert type(modules["layer1.0"]).__name__ == "BasicBlock"
    assert exported.state_dict().keys() == eager.state_dict().keys()


def test_resnet18_export_computes_what_the_eager_model_computes(resnet18) -> None:
    eager, exported = resnet18
    names = ["conv1", "layer1.0.conv2", "layer2.0.downsample.0", "layer4.1", "fc"]
    x = torch.randn(3, 3, 64, 64)  # not the export's example batch size
    with torch.no_grad(), recording(eager, names) as expected, recording(exported, names) as found:
        assert torch.allclose(exported(x), eager(x), atol=1e-5)
        for name in names:
            assert torch.allclose(found[name], expected[name], atol=1e-5), name


def test_resnet18_export_supports_tracing_and_the_random_init_control(resnet18) -> None:
    eager, exported = resnet18
    example = torch.randn(1, 3, 64, 64)
    assert relevance_graph(exported, example)[1].additions == relevance_graph(eager, example)[1].additions == 8
    # The control re-initialises a deep copy layer by layer: the same layers draw the same weights.
    name, weights = control_weights(exported, ["conv1", "layer1.0.conv1"], seed=0)
    assert name == "conv1" and np.array_equal(weights, control_weights(eager, ["conv1"], seed=0)[1])
    assert not np.array_equal(weights, exported.conv1.weight.detach().double().numpy())


def test_missing_export_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model.export: file .*model.pt2' not found"):
        _load(tmp_path, 12)


@pytest.mark.parametrize("content", ["text", "state_dict"])
def test_file_that_is_not_an_exported_program(tmp_path: Path, content: str) -> None:
    if content == "text":
        (tmp_path / "model.pt2").write_text("not a program")
    else:
        torch.save(tiny_model().state_dict(), tmp_path / "model.pt2")
    with pytest.raises(ModelError, match="model.pt2' is not a program saved with torch.export.save$"):
        _load(tmp_path, 12)


def test_export_for_another_image_size_names_both_shapes(tmp_path: Path) -> None:
    save_export(tiny_model(), tmp_path / "model.pt2", torch.randn(2, 3, 12, 12))
    with pytest.raises(ModelError) as error:
        _load(tmp_path, 16)
    message = error.value.message
    assert "was exported for inputs of shape (batch, 3, 12, 12) but model.input_size is [3, 16, 16]" in message


def test_static_batch_asks_for_a_dynamic_one(tmp_path: Path, cli) -> None:
    save_export(tiny_model(), tmp_path / "model.pt2", torch.randn(1, 3, 12, 12), dynamic_batch=False)
    result = cli("build", write_config(tmp_path, CONFIG.replace("SIZE", "12")), "--out", tmp_path / "out")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "static batch size of 1" in result.output and "torch.export.Dim('batch')" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_export_must_return_one_tensor(tmp_path: Path) -> None:
    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = tiny_model()

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.inner(x), x.mean()

    save_export(Pair(), tmp_path / "model.pt2", torch.randn(2, 3, 12, 12))
    with pytest.raises(ModelError, match="returns 2 output.*one tensor of class scores out"):
        _load(tmp_path, 12)


def test_weights_cannot_be_combined_with_export(tmp_path: Path) -> None:
    text = CONFIG.replace("SIZE", "12").replace("  export: model.pt2\n", "  export: model.pt2\n  weights: tiny.pt\n")
    with pytest.raises(ConfigError, match="'model': weights cannot be used with export: an exported program"):
        load_config(write_config(tmp_path, text))
