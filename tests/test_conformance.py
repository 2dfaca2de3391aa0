"""Every registered analysis, checked the same way (in the style of scikit-learn's estimator
checks): on a tiny model its result round-trips through the cache and shows in the site, the PDF
and dossier.json; on models it cannot apply to (TorchScript, one input channel, only 1×1
convolutions) it states why, in the site and the PDF, instead of failing or disappearing; on the
tiny model saved with torch.export it gives the eager model's result."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from pypdf import PdfReader

from dossier import results as results_io
from dossier.analyses import REGISTRY
from dossier.build import build, cache_dir_for
from dossier.config import load_config
from dossier.manifest import file_sha256
from tests.conftest import TINY_CONFIG, make_image_folder, tiny_model, write_config

FAST = """\
analyses:
  galleries: {steps: 2}
  deepdream: {steps: 2, octaves: 2}
  probes: {folds: 2, trees: 5}
"""
ODD_MODELS = ("torchscript", "grayscale", "pointwise")


def _config(project: Path, case: str) -> Path:
    text = TINY_CONFIG + FAST
    if case == "export":
        model = tiny_model().eval()
        model.load_state_dict(torch.load(project / "tiny.pt", weights_only=True))
        batch = torch.export.Dim("batch")
        program = torch.export.export(model, (torch.randn(2, 3, 12, 12),), dynamic_shapes=({0: batch},))
        torch.export.save(program, project / "tiny.pt2")
        text = text.replace("factory: models.py:build", "export: tiny.pt2").replace("  kwargs: {num_classes: 3}\n", "")
        text = text.replace("  weights: tiny.pt\n", "")
    elif case == "torchscript":
        torch.jit.save(torch.jit.script(tiny_model().eval()), project / "tiny.ts")
        text = text.replace("factory: models.py:build", "torchscript: tiny.ts").replace("  kwargs: {num_classes: 3}\n", "")
    elif case == "grayscale":
        text = (
            text.replace("{num_classes: 3}", "{num_classes: 3, channels: 1}").replace("  weights: tiny.pt\n", "")
            .replace("[3, 12, 12]", "[1, 12, 12]").replace("[0.5, 0.5, 0.5]", "[0.5]").replace("[0.25, 0.25, 0.25]", "[0.25]")
        )
    elif case == "pointwise":
        text = text.replace("{num_classes: 3}", "{num_classes: 3, kernel: 1}").replace("  weights: tiny.pt\n", "")
    return write_config(project, text, f"{case}.yaml")


@pytest.fixture(scope="module")
def dossiers(tmp_path_factory) -> dict[str, Path]:
    from tests.conftest import TINY_FACTORY

    project = tmp_path_factory.mktemp("conformance")
    (project / "models.py").write_text(TINY_FACTORY)
    torch.manual_seed(0)
    torch.save(tiny_model().state_dict(), project / "tiny.pt")
    make_image_folder(project / "data", ["cat", "dog", "eel"], per_class=6)
    built = {}
    for case in ("tiny", "export", *ODD_MODELS):
        out = project / case / "dossier"  # a cache of its own beside each
        build(load_config(_config(project, case)), out, device="cpu")
        built[case] = out
    return built


def _export(out: Path) -> dict:
    return json.loads((out / "dossier.json").read_text())


def _site_text(out: Path) -> str:
    return "\n".join(page.read_text() for page in out.glob("*.html"))


def _pdf_text(out: Path) -> str:
    return re.sub(r"\s+", "", "".join(page.extract_text() for page in PdfReader(out / "dossier.pdf").pages))


def _same(a, b) -> None:
    """Deep equality of two results, arrays included."""
    assert type(a) is type(b)
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            _same(getattr(a, f.name), getattr(b, f.name))
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _same(a[key], b[key])
    else:
        assert a == b


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_result_round_trips_through_the_cache(name: str, dossiers: dict[str, Path], tmp_path: Path) -> None:
    out = dossiers["tiny"]
    (cached,) = (cache_dir_for(out) / "results").glob(f"{name}-*.json")
    result_type = REGISTRY[name].result_type
    loaded = results_io.load(result_type, cached.with_suffix(""))
    assert isinstance(loaded, result_type)
    results_io.save(loaded, tmp_path / "again")
    _same(loaded, results_io.load(result_type, tmp_path / "again"))
    assert results_io.to_export(loaded) == _export(out)["analyses"][name]


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_result_shows_in_the_site_the_pdf_and_the_json(name: str, dossiers: dict[str, Path]) -> None:
    out = dossiers["tiny"]
    export = _export(out)
    assert name in export["analyses"] and name not in export["failures"] and name not in export["not_applicable"]
    site = _site_text(out)
    assert f'data-section="{name}"' in site or name == "model_card"
    assert re.sub(r"\s+", "", REGISTRY[name].title) in _pdf_text(out)


@pytest.mark.parametrize("case", ODD_MODELS)
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_an_analysis_that_cannot_apply_says_why(name: str, case: str, dossiers: dict[str, Path]) -> None:
    out = dossiers[case]
    export = _export(out)
    assert name not in export["failures"], export["failures"].get(name)
    if name in export["analyses"]:
        return
    reason = export["not_applicable"][name]
    assert reason and reason[0].islower() and not reason.endswith("."), reason  # a clause, shown after a colon
    index = (out / "index.html").read_text()
    title = REGISTRY[name].title
    assert f"<strong>{title}</strong>: {reason}" in index.replace("&#39;", "'")
    assert re.sub(r"\s+", "", reason) in _pdf_text(out)


def test_the_odd_models_lose_the_expected_sections(dossiers: dict[str, Path]) -> None:
    """The cases that do not apply are the expected ones, so the test above cannot pass vacuously."""
    missing = {case: set(_export(dossiers[case])["not_applicable"]) for case in ODD_MODELS}
    assert {"relevance", "galleries", "deepdream", "translation", "embedding"} <= missing["torchscript"]
    assert {"kernel_clusters", "tda_rings"} <= missing["pointwise"]
    assert "galleries" not in missing["grayscale"]  # applies; only its colour-blind part does not
    grayscale = (dossiers["grayscale"] / "neuron-types.html").read_text()
    assert "there is no colour to be blind to" in grayscale


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def test_an_exported_model_gets_the_eager_models_dossier(dossiers: dict[str, Path]) -> None:
    """The same weights through torch.export: inner layers hooked, every analysis run, same numbers."""
    eager, exported = _export(dossiers["tiny"]), _export(dossiers["export"])
    assert exported["failures"] == {} and exported["not_applicable"] == {}
    assert exported["layers"] == eager["layers"]
    assert all(layer["recordable"] for layer in exported["layers"])
    analyses = exported["analyses"]
    units = [unit for layer in analyses["neuron_types"]["layers"] for unit in layer["rows"]]
    assert units and all(unit["dead"] is not None for unit in units)  # None: no activations recorded
    assert [layer["layer"] for layer in analyses["galleries"]["layers"]] == ["conv1", "conv2"]
    assert analyses["relevance"]["graph"].startswith("1 tensor addition(s) split")
    assert all(abs(image["conservation"] - 1) < 0.01 for image in analyses["relevance"]["images"])
    # The export turns the eager model's torch.relu calls into ReLU modules: the same graph,
    # described differently; every number is the same.
    for relevance in (analyses["relevance"], eager["analyses"]["relevance"]):
        relevance.pop("graph")
    assert _without_timings(analyses) == _without_timings(eager["analyses"])
    provenance = exported["provenance"]
    assert provenance["trained"] and provenance["weights_sha256"] == file_sha256(dossiers["export"].parent.parent / "tiny.pt2")
