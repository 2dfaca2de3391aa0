"""The planted shortcut, end to end: a model that learnt to read class 0 off a bright corner mark
(tests/planted.py) gets a dossier in which SpRAy puts the marked images into a strategy of their
own and flags it, TCAV finds the concept "corner mark" significant for class 0 only, units are
labelled with it and found by search, and CRP points at the mark."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dossier.build import build
from dossier.config import load_config
from tests import planted
from tests.conftest import write_config

CONFIG = """\
title: Planted shortcut
model:
  factory: models.py:build
  weights: shortcut.pt
  input_size: [3, 16, 16]
  mean: [0.5, 0.5, 0.5]
  std: [0.5, 0.5, 0.5]
data:
  imagefolder: data
batch_size: 64
budget: none
analyses:
  galleries: {steps: 2}
  concepts: {folders: {corner mark: concepts/corner-mark}, class_images: 40}
  crp: {per_class: 40}
  spray: {per_class: 40}
"""
CLASS_FOLDERS = [f"{n}-{name}" for n, name in enumerate(planted.CLASSES)]  # sorted as the model's outputs


@pytest.fixture(scope="module")
def shortcut(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """The built dossier and which data-set images (in ImageFolder order) carry the mark."""
    project = tmp_path_factory.mktemp("shortcut")
    shutil.copy(planted.__file__, project / "models.py")
    model, _ = planted.train()
    torch.save(model.state_dict(), project / "shortcut.pt")
    pixels, labels, marked = planted.images(40, seed=7)
    for c, folder in enumerate(CLASS_FOLDERS):
        rows = np.flatnonzero(labels == c)
        planted.write_folder(project / "data" / folder, pixels[rows], [f"{n:03d}" for n in rows])
    planted.write_folder(project / "concepts" / "corner-mark", planted.mark_concept(25, seed=3), [f"{n:02d}" for n in range(25)])
    out = project / "dossier"
    build(load_config(write_config(project, CONFIG)), out, device="cpu", pdf=False,
          only=["neuron_types", "galleries", "concepts", "crp", "spray"])
    return out, marked  # file names sort in data-set order within each class, classes in order


def _analyses(out: Path) -> dict:
    document = json.loads((out / "dossier.json").read_text())
    assert document["failures"] == {} and document["not_applicable"] == {}
    return document["analyses"]


def test_spray_puts_the_marked_images_in_a_flagged_strategy_of_their_own(shortcut) -> None:
    out, marked = shortcut
    spray = _analyses(out)["spray"]
    first = spray["classes"][0]
    flagged = [s for s in first["strategies"] if s["flagged"]]
    assert len(flagged) == 1
    members = set(flagged[0]["members"])
    assert members == set(np.flatnonzero(marked).tolist())  # every marked image, nothing else
    assert flagged[0]["corner"] == "top-left" and flagged[0]["corner_share"] >= 0.4
    others = [s for c in spray["classes"] for s in c["strategies"] if s is not flagged[0]]
    assert not any(s["flagged"] for s in others) and max(s["corner_share"] for s in others) < 0.2
    assert len(spray["warnings"]) == 1 and spray["warnings"][0].startswith("class 0-horizontal, strategy")
    index = (out / "index.html").read_text()
    assert "Possible shortcuts" in index and "0-horizontal" in index
    document = json.loads((out / "dossier.json").read_text())
    assert "SpRAy flags 1 strategy whose relevance sits off the object" in document["finding"]
    check = next(c for c in document["checks"] if c["name"] == "shortcut strategies (SpRAy)")
    assert check["status"] == "warn" and check["detail"].startswith("class 0-horizontal") and check["evidence"] == "shortcuts.html"
    assert 'id="checks"' in index and "shortcut strategies (SpRAy)" in index  # in the Checks panel


def test_tcav_finds_the_corner_mark_significant_for_the_marked_class_only(shortcut) -> None:
    out, _ = shortcut
    concepts = _analyses(out)["concepts"]
    assert [layer["layer"] for layer in concepts["layers"]] == ["conv1", "conv3"]  # the ends of the two stages
    for layer in concepts["layers"]:
        scores = {s["class_index"]: s for s in layer["scores"]}
        assert scores[0]["significant"] and np.mean(scores[0]["scores"]) > np.mean(scores[0]["random_scores"])
        for other in (1, 2):  # the mark lowers the other classes' logits, never raises them
            assert not scores[other]["significant"] or np.mean(scores[other]["scores"]) < np.mean(scores[other]["random_scores"])
    page = (out / "concepts.html").read_text()
    assert "corner mark" in page and "raises" in page
    inputs = json.loads((out / "manifest.json").read_text())["inputs"]
    assert len(inputs["analyses.concepts.folders.corner mark"]) == 64  # the concept images' SHA-256


def test_units_are_labelled_with_the_concept_and_found_by_search(shortcut) -> None:
    out, _ = shortcut
    analyses = _analyses(out)
    labels = analyses["concepts"]["labels"]
    assert labels and {label["concept"] for label in labels} == {"corner mark"}
    dead = {(layer["layer"], row["unit"]) for layer in analyses["neuron_types"]["layers"] for row in layer["rows"] if row["dead"]}
    assert analyses["concepts"]["dead_skipped"] == len(dead)
    assert not dead & {(label["layer"], label["unit"]) for label in labels}  # dead units are never labelled
    shards = "".join(path.read_text() for path in (out / "assets" / "search").glob("*.js"))
    assert "concept: corner mark" in shards
    layer = labels[0]["layer"]
    assert "concept: corner mark" in (out / f"layer-{layer}.html").read_text()  # on the unit's card


def test_crp_points_at_the_mark_for_the_marked_class(shortcut) -> None:
    """Among class 0's most relevant units at the last conv layer, one is most relevant on marked
    images only, and its conditional heatmaps sit in the corner."""
    out, marked = shortcut
    crp = _analyses(out)["crp"]
    assert crp["layer"] == "conv3" and crp["active_source"]
    first = crp["classes"][0]
    assert abs(first["through"] - 1) < 0.01  # every path crosses conv3
    mark_units = [u for u in first["units"] if all(marked[image["index"]] for image in u["relevant"])]
    assert mark_units, first["units"]
    shares = [u["share"] for u in first["units"]]
    assert shares == sorted(shares, reverse=True)
