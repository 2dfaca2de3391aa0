"""Shared fixtures: tiny models and image folders the tests make themselves."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from tests import tiny_models

# UMAP's numba code compiles for ~25 s per process; let test runs on one machine share the result.
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).parent.parent / ".pytest_cache" / "numba"))

TINY_FACTORY = Path(tiny_models.__file__).read_text()


def tiny_model(num_classes: int = 3) -> nn.Module:
    return tiny_models.build(num_classes)


def make_image_folder(root: Path, classes: list[str], per_class: int, size: int = 12, seed: int = 0) -> Path:
    """Class c's images are bright in channel c % 3: a model can tell them apart."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
            pixels[..., c % 3] += 150
            Image.fromarray(pixels).save(folder / f"img{i}.png")
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder with a factory model file, trained-looking weights and an image folder."""
    (tmp_path / "models.py").write_text(TINY_FACTORY)
    torch.manual_seed(0)
    torch.save(tiny_model().state_dict(), tmp_path / "tiny.pt")
    make_image_folder(tmp_path / "data", ["cat", "dog", "eel"], per_class=6)
    return tmp_path


def write_config(folder: Path, text: str, name: str = "dossier.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


TINY_CONFIG = """\
title: Tiny test model
model:
  factory: models.py:build
  kwargs: {num_classes: 3}
  weights: tiny.pt
  input_size: [3, 12, 12]
  mean: [0.5, 0.5, 0.5]
  std: [0.25, 0.25, 0.25]
data:
  imagefolder: data
batch_size: 8
budget: none
"""


@pytest.fixture
def tiny_config(project: Path) -> Path:
    return write_config(project, TINY_CONFIG)


@pytest.fixture
def cli():
    """Invoke the dossier CLI in-process; returns click's Result."""
    from dossier.cli import main

    def invoke(*args: str):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture(scope="session")
def sample_build(tmp_path_factory) -> Path:
    """The sample dossier (examples/digits.yaml), built once per test session."""
    from dossier.build import build
    from dossier.config import load_config

    out = tmp_path_factory.mktemp("sample") / "digits"
    # No time budget: on a loaded machine the estimate could reduce the sample's settings.
    build(load_config(Path(__file__).parent.parent / "examples" / "digits.yaml"), out, device="cpu", budget="none")
    return out
