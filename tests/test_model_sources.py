import logging
import warnings
from pathlib import Path

import pytest
import torch
import torchvision

from dossier.config import load_config
from dossier.errors import DossierError, ModelError
from dossier.model_source import load_model, resolve_device
from tests.conftest import TINY_CONFIG, tiny_model, write_config

RESNET_CONFIG = """\
model:
  torchvision: resnet18
  kwargs: {num_classes: 3}
  weights: WEIGHTS
  input_size: [3, 32, 32]
data:
  imagefolder: data
"""


def _load(folder: Path, text: str):
    return load_model(load_config(write_config(folder, text)), folder / "cache")


def _assert_same_weights(module: torch.nn.Module, state: dict) -> None:
    for key, value in state.items():
        assert torch.equal(module.state_dict()[key], value), key


def test_torchvision_with_a_state_dict(tmp_path: Path) -> None:
    reference = torchvision.models.resnet18(num_classes=3)
    torch.save(reference.state_dict(), tmp_path / "r18.pt")
    loaded = _load(tmp_path, RESNET_CONFIG.replace("WEIGHTS", "r18.pt"))
    _assert_same_weights(loaded.module, reference.state_dict())
    assert loaded.trained and not loaded.scripted and len(loaded.weights_sha256) == 64
    assert not loaded.module.training


def test_checkpoint_dict_with_dataparallel_prefix(tmp_path: Path) -> None:
    reference = torchvision.models.resnet18(num_classes=3)
    state = {f"module.{k}": v for k, v in reference.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": state}, tmp_path / "ckpt.pth")
    loaded = _load(tmp_path, RESNET_CONFIG.replace("WEIGHTS", "ckpt.pth"))
    _assert_same_weights(loaded.module, reference.state_dict())


def test_torchscript_model(tmp_path: Path, caplog) -> None:
    model = tiny_model().eval()
    torch.jit.save(torch.jit.script(model), tmp_path / "tiny.ts")
    text = TINY_CONFIG.replace("factory: models.py:build", "torchscript: tiny.ts").replace(
        "  kwargs: {num_classes: 3}\n  weights: tiny.pt\n", ""
    )
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        loaded = _load(tmp_path, text)
    assert not [w for w in caught if "torch.jit" in str(w.message)]  # torch's warning, replaced by one line of ours
    assert [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()] == [
        "model.torchscript: TorchScript is deprecated in PyTorch and only the model's output can be recorded; "
        "save the model with torch.export and use model.export for the full analysis"
    ]
    assert loaded.scripted and loaded.trained  # a TorchScript file carries its weights
    x = torch.randn(2, 3, 12, 12)
    assert torch.allclose(loaded.module(x), model(x), atol=1e-6)


def test_factory_by_file_and_by_module(project: Path, monkeypatch) -> None:
    by_file = _load(project, TINY_CONFIG)
    _assert_same_weights(by_file.module, torch.load(project / "tiny.pt", weights_only=True))
    monkeypatch.syspath_prepend(str(project))
    by_module = _load(project, TINY_CONFIG.replace("models.py:build", "models:build"))
    assert type(by_module.module).__name__ == "Tiny"


def test_missing_weights_file(project: Path) -> None:
    with pytest.raises(ModelError, match="model.weights: file .*absent.pt' not found"):
        _load(project, TINY_CONFIG.replace("tiny.pt", "absent.pt"))


def test_weights_file_that_is_not_a_checkpoint(project: Path) -> None:
    (project / "junk.pt").write_text("this is not a checkpoint")
    with pytest.raises(ModelError, match="is not a PyTorch checkpoint"):
        _load(project, TINY_CONFIG.replace("tiny.pt", "junk.pt"))


def test_state_dict_that_does_not_fit_names_the_keys(project: Path) -> None:
    state = tiny_model().state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["fc.bias"]
    state["conv1.weight"] = torch.zeros(9, 3, 3, 3)
    torch.save(state, project / "bad.pt")
    with pytest.raises(ModelError) as error:
        _load(project, TINY_CONFIG.replace("tiny.pt", "bad.pt"))
    message = error.value.message
    assert "missing: fc.bias" in message
    assert "unexpected: extra.weight" in message
    assert "wrong shape: conv1.weight (9, 3, 3, 3) vs (4, 3, 3, 3)" in message


def test_torchvision_weights_name_absent_from_the_hub_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    text = RESNET_CONFIG.replace("WEIGHTS", "IMAGENET1K_V1").replace("{num_classes: 3}", "{}")
    with pytest.raises(ModelError) as error:
        _load(tmp_path, text)
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert "put resnet18-f37072fd.pth" in error.value.message
    assert str(expected) in error.value.message


def test_torchvision_weights_name_from_the_hub_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    reference = torchvision.models.resnet18()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    loaded = _load(tmp_path, RESNET_CONFIG.replace("WEIGHTS", "IMAGENET1K_V1").replace("{num_classes: 3}", "{}"))
    _assert_same_weights(loaded.module, reference.state_dict())
    assert loaded.weights_source == "torchvision resnet18 IMAGENET1K_V1"


def test_unknown_torchvision_model_suggests_names(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown torchvision model 'resnet81'.*resnet18"):
        _load(tmp_path, RESNET_CONFIG.replace("resnet18", "resnet81"))


def test_no_weights_means_random_initialisation(project: Path) -> None:
    loaded = _load(project, TINY_CONFIG.replace("  weights: tiny.pt\n", ""))
    assert not loaded.trained and loaded.weights_sha256 is None
    assert "randomly initialised" in loaded.weights_source


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_an_error() -> None:
    with pytest.raises(DossierError, match="no CUDA GPU is available"):
        resolve_device("cuda")
