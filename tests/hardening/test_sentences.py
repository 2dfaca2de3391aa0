"""Every sentence the report writes is true, including at the edges: one recorded layer, no layer
better than the pixels, accuracy at chance, ties, a TorchScript file that carries its weights."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
from pypdf import PdfReader

from dossier.analyses.model_card import ModelCard, ModelCardResult
from dossier.analyses.probes import PROBES, LayerProbes, Probes, ProbesResult
from dossier.analyses.purity import LayerPurity, Purity, PurityResult
from dossier.analyses.translation import ShiftCurve, Translation, TranslationResult
from tests.conftest import TINY_CONFIG, tiny_model, write_config


def _probes(*accuracies: float, chance: float = 0.1) -> ProbesResult:
    layers = [
        LayerProbes(name, 10, 10, {probe: accuracy for probe in PROBES}, {probe: 0.0 for probe in PROBES})
        for name, accuracy in zip(["input", "conv1", "conv2", "fc"], accuracies)
    ]
    return ProbesResult(images=100, folds=2, chance=chance, layers=layers)


def test_probe_finding_names_the_first_layer_that_reads_the_class() -> None:
    sentence = Probes().finding(_probes(0.3, 0.6, 0.9, 0.92))
    assert sentence.startswith("The class becomes linearly readable at conv2:")
    assert "rises from 30.0% on the raw pixels to 90.0% there (best 92.0%; chance 10.0%)" in sentence


def test_probe_finding_when_no_layer_beats_the_pixels() -> None:
    sentence = Probes().finding(_probes(0.8, 0.5, 0.8, 0.78))
    assert sentence.startswith("No recorded layer makes the class more linearly readable than the raw pixels")
    assert "rises" not in sentence and "at most 80.0% from a layer (conv2;" in sentence  # the first of the tie


def test_probe_finding_at_chance_says_so() -> None:
    sentence = Probes().finding(_probes(0.14, 0.14, 0.15, chance=0.14))
    assert sentence.startswith("No recorded layer makes the class linearly readable")
    assert "close to chance (14.0%)" in sentence and "rises" not in sentence


def test_no_probe_finding_without_a_recorded_layer() -> None:
    assert Probes().finding(_probes(0.5)) is None


def _purity(*values: float) -> PurityResult:
    layers = [LayerPurity(n, 10, "flattened", v, 0.0, 0.0, 1.0, []) for n, v in zip(["input", "conv1", "conv2"], values)]
    return PurityResult(images=30, per_class=10, classes=3, chance_purity=0.333, layers=layers)


def test_purity_finding_is_true_at_the_edges() -> None:
    assert Purity().finding(_purity(0.5)) is None
    assert Purity().finding(_purity(0.5, 0.9, 0.7)).startswith("k-means purity peaks at conv1 (0.900")
    worse = Purity().finding(_purity(0.6, 0.5, 0.6))
    assert worse.startswith("No recorded layer clusters the classes better than the raw pixels")


def test_translation_finding_when_nothing_changes() -> None:
    curve = ShiftCurve("x", [0, 1, 2], [0.5, 0.5, 0.5], [0.7, 0.7, 0.7], {})
    sentence = Translation().finding(TranslationResult(images=10, max_shift=2, curves=[curve]))
    assert sentence == "Shifting the images by up to 2 px does not change accuracy (70.0%)."


def _card(top1: float, per_class_images: list[int]) -> ModelCardResult:
    fields = {f.name: None for f in dataclasses.fields(ModelCardResult)}
    return ModelCardResult(**{**fields, "images": sum(per_class_images), "top1": top1, "per_class_images": per_class_images})


def test_a_model_at_chance_gets_a_warning_naming_the_likely_cause() -> None:
    warning = ModelCard().warning(_card(0.058, [10] * 10))
    assert "top-1 accuracy 5.8%, chance 10.0%" in warning and "sorted order" in warning
    assert ModelCard().warning(_card(0.9, [10] * 10)) is None
    assert ModelCard().warning(_card(0.6, [80, 10, 10])) is not None  # below the largest class's share


@pytest.fixture
def guessing(project: Path, cli) -> Path:
    """The tiny model's random weights guess on the tiny data: 1/3 top-1 on three classes."""
    out = project / "out"
    assert cli("build", write_config(project, TINY_CONFIG), "--out", out, "--only", "probes").exit_code == 0
    return out


def test_the_warning_heads_the_index_the_model_card_and_the_pdf_cover(guessing: Path) -> None:
    export = json.loads((guessing / "dossier.json").read_text())
    (warning,) = export["warnings"]
    assert warning.startswith("The model is guessing on this data")
    for page in ("index.html", "model.html"):
        html = (guessing / page).read_text()
        banner = html.index('class="banner danger"')
        assert banner < html.index("<h1") or banner < html.index("Checks")
        assert "The model is guessing on this data" in html
    cover = PdfReader(guessing / "dossier.pdf").pages[0].extract_text()
    assert "The model is guessing on this data" in re.sub(r"\s+", " ", cover)


def test_a_torchscript_file_carries_trained_weights(project: Path, cli) -> None:
    torch.jit.save(torch.jit.script(tiny_model().eval()), project / "tiny.ts")
    text = TINY_CONFIG.replace("factory: models.py:build", "torchscript: tiny.ts").replace("  kwargs: {num_classes: 3}\n", "")
    out = project / "out"
    assert cli("build", write_config(project, text.replace("  weights: tiny.pt\n", "")), "--out", out, "--no-pdf", "--only", "probes").exit_code == 0
    assert "Randomly initialised" not in (out / "index.html").read_text()
    provenance = json.loads((out / "dossier.json").read_text())["provenance"]
    assert provenance["trained"] and provenance["weights_source"] == "tiny.ts (the TorchScript file's own weights)"
