"""Builds that reproduce: the same inputs on the same machine give the same dossier.json, and
every output carries a manifest that `dossier verify` checks a published copy against."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dossier.build import build
from dossier.config import load_config
from dossier.manifest import file_sha256
from tests.conftest import TINY_CONFIG, write_config

FAST = TINY_CONFIG + """\
analyses:
  galleries: {steps: 3}
  deepdream: {steps: 2, octaves: 1}
  probes: {folds: 2, trees: 5}
"""
# What a rebuild may change: when it ran, how long each part took, how much memory it used.
TIMINGS = ("generated_at", "stage_seconds", "cached_analyses", "peak_memory_mib")


def _numbers(out: Path) -> dict:
    export = json.loads((out / "dossier.json").read_text())
    for key in TIMINGS:
        export["provenance"].pop(key)
    for layer in export["analyses"]["commute"]["layers"]:
        layer.pop("seconds")
    export["plan"] = None  # estimates are timings too
    return export


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    import torch

    from tests.conftest import TINY_FACTORY, make_image_folder, tiny_model

    root = tmp_path_factory.mktemp("reproducible")
    (root / "models.py").write_text(TINY_FACTORY)
    torch.manual_seed(0)
    torch.save(tiny_model().state_dict(), root / "tiny.pt")
    make_image_folder(root / "data", ["cat", "dog", "eel"], per_class=6)
    config = load_config(write_config(root, FAST))
    for run in ("first", "second"):  # each with a cache of its own: both compute everything
        build(config, root / run / "out", device="cpu")
    return root


def test_a_rebuild_gives_the_same_numbers(built: Path) -> None:
    first, second = _numbers(built / "first" / "out"), _numbers(built / "second" / "out")
    assert first["analyses"]["galleries"]["layers"] and first["analyses"]["relevance"]["images"]
    assert first == second


def test_the_manifest_lists_every_file_with_its_hash(built: Path) -> None:
    out = built / "first" / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"}
    assert set(manifest["files"]) == files and {"dossier.json", "dossier.pdf", "index.html"} <= files
    assert all(manifest["files"][name] == file_sha256(out / name) for name in files)
    assert manifest["inputs"]["weights_sha256"] == file_sha256(built / "tiny.pt")
    assert manifest["inputs"]["config_sha256"] == file_sha256(built / "dossier.yaml")
    assert manifest["versions"]["torch"].startswith("2.")


def test_verify_names_every_file_that_changed(built: Path, cli, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "published"
    shutil.copytree(built / "second" / "out", copy)
    result = cli("verify", copy)
    assert result.exit_code == 0 and result.output.startswith("verified: ")
    (copy / "index.html").write_text((copy / "index.html").read_text().replace("top-1", "top-one"))
    (copy / "layer-conv1.html").unlink()
    (copy / "extra.html").write_text("<p>not built</p>")
    result = cli("verify", copy)
    assert result.exit_code == 1
    assert result.output.splitlines() == ["added: extra.html", "changed: index.html", "missing: layer-conv1.html"]


def test_verify_refuses_a_folder_without_a_manifest(cli, tmp_path: Path) -> None:
    result = cli("verify", tmp_path)
    assert result.exit_code == 2 and "has no manifest.json" in result.output
