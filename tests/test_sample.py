"""The offline sample: trained deterministically, cached, accurate, and exercising the later analyses."""

import json
import re
from pathlib import Path

import torch

import dossier.sample as sample
from dossier.manifest import file_sha256


def test_short_training_is_deterministic() -> None:
    first = sample.train_digits_cnn(seed=3, epochs=1)
    second = sample.train_digits_cnn(seed=3, epochs=1)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name


def test_early_checkpoint_is_the_same_run_stopped_early() -> None:
    torch.manual_seed(3)  # as train_digits_cnn seeds itself
    untrained = sample.DigitsCNN().state_dict()
    early = sample.train_digits_cnn(seed=3, epochs=2, stop_after=0)  # the run before its first step
    assert all(torch.equal(a, b) for a, b in zip(untrained.values(), early.state_dict().values()))


def _must_not_train(seed: int, **_):
    raise AssertionError("trained although the weights were there")


def test_trained_model_is_cached(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sample, "train_digits_cnn", lambda seed, **_: sample.DigitsCNN().eval())
    _, path = sample.trained_digits_cnn(5, tmp_path)
    assert path.is_file() and path.is_relative_to(tmp_path)
    _, early = sample.trained_digits_cnn(5, tmp_path, "digits-cnn-early")
    assert early.is_file() and early != path
    monkeypatch.setattr(sample, "train_digits_cnn", _must_not_train)
    model, again = sample.trained_digits_cnn(5, tmp_path)
    assert again == path and not model.training


def test_seed_zero_uses_the_shipped_weights_on_every_machine(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sample, "train_digits_cnn", _must_not_train)
    for name in sample.CHECKPOINTS:
        model, path = sample.trained_digits_cnn(0, tmp_path, name)
        assert path == sample.shipped_weights(name) and file_sha256(path) == sample.SHIPPED_SHA256[name]
        assert not model.training
    assert not any(tmp_path.iterdir())


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


def test_sample_shows_weight_space_sections_for_every_conv_layer(sample_build: Path) -> None:
    from pypdf import PdfReader

    export = json.loads((sample_build / "dossier.json").read_text())
    convs = [layer for layer in export["layers"] if layer["type"] == "Conv2d"]
    analyses = export["analyses"]
    for layer in convs:
        html = (sample_build / f"layer-{layer['slug']}.html").read_text()
        for heading in ("Neuron types", "Kernel clusters", "TDA rings"):
            assert f"<h2>{heading}</h2>" in html, (layer["name"], heading)
        types = next(t for t in analyses["neuron_types"]["layers"] if t["layer"] == layer["name"])
        assert types["units"] == layer["output_shape"][0] == len(types["rows"])
        gallery = next(g for g in analyses["galleries"]["layers"] if g["layer"] == layer["name"])
        blind = {card["unit"] for card in gallery["units"] if card["colour_blind"]}
        rows = re.findall(r'<tr id="neuron_types-unit-(\d+)">.*?</tr>', html, flags=re.S)
        labelled = {int(u) for u, row in zip(rows, re.findall(r'<tr id="neuron_types-unit-\d+">(.*?)</tr>', html, flags=re.S)) if "colour-blind" in row}
        assert labelled == blind  # the galleries' label reaches the neuron-type table
    first = convs[0]["slug"]
    first_page = (sample_build / f"layer-{first}.html").read_text()
    assert "Control: the same layer at random initialisation" in first_page
    control = analyses["tda_rings"]["control"]
    trained = analyses["tda_rings"]["layers"][0]
    assert control["layer"] == trained["layer"] == convs[0]["name"]
    assert f"{trained['ring_score']:.3f}" in first_page and f"{control['ring_score']:.3f}" in first_page
    text = "".join(page.extract_text() for page in PdfReader(sample_build / "dossier.pdf").pages)
    for heading in ("Neuron types", "Kernel clusters", "TDA rings", "Control: the same layer"):
        assert heading in text


def test_the_committed_sample_has_the_numbers_of_a_fresh_build(sample_build: Path) -> None:
    """sample_reports/digits is what `make demo` builds: the shipped weights make its accuracy,
    confusions and check results the same on any machine."""
    committed = json.loads((Path(__file__).parent.parent / "sample_reports" / "digits" / "dossier.json").read_text())
    fresh = json.loads((sample_build / "dossier.json").read_text())
    for key in ("images", "top1", "top5", "per_class_accuracy", "confusion"):
        assert committed["analyses"]["model_card"][key] == fresh["analyses"]["model_card"][key], key
    assert [(c["name"], c["status"]) for c in committed["checks"]] == [(c["name"], c["status"]) for c in fresh["checks"]]
    assert committed["provenance"]["weights_sha256"] == fresh["provenance"]["weights_sha256"]
