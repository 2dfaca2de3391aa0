"""The offline sample: trained deterministically, cached, accurate, and exercising the later analyses."""

import json
from pathlib import Path

import pytest
import torch

import dossier.sample as sample


def test_short_training_is_deterministic() -> None:
    first = sample.train_digits_cnn(seed=3, epochs=1)
    second = sample.train_digits_cnn(seed=3, epochs=1)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name


def test_trained_model_is_cached(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sample, "train_digits_cnn", lambda seed: sample.DigitsCNN().eval())
    _, path = sample.trained_digits_cnn(0, tmp_path)
    assert path.is_file()

    def must_not_train(seed: int):
        raise AssertionError("retrained although cached")

    monkeypatch.setattr(sample, "train_digits_cnn", must_not_train)
    model, again = sample.trained_digits_cnn(0, tmp_path)
    assert again == path and not model.training


def test_sample_dossier(sample_build: Path) -> None:
    export = json.loads((sample_build / "dossier.json").read_text())
    card = export["analyses"]["model_card"]
    assert card["top1"] >= 0.9, "the sample model should reach 90%+ held-out accuracy"
    assert export["provenance"]["trained"] is True
    kernels = {tuple(layer["kernel"]) for layer in export["layers"] if layer["type"] == "Conv2d"}
    assert {(3, 3), (5, 5)} <= kernels
    assert export["layers"][0]["output_shape"] == [16, 32, 32]
    model = sample.DigitsCNN()
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert isinstance(model.block, sample.ResidualBlock)
    purity = {entry["layer"]: entry["purity"] for entry in export["analyses"]["purity"]["layers"]}
    assert purity["conv3"] > purity["input"] + 0.3  # the class becomes readable with depth
    assert (sample_build / "dossier.pdf").stat().st_size > 50_000
