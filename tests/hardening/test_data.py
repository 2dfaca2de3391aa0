"""Awkward image folders: a class of one image, classes of very different sizes, grayscale, RGBA,
16-bit and palette images mixed, a truncated file, decompression bombs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dossier.build import build
from dossier.config import load_config
from dossier.data import load_dataset
from tests.conftest import TINY_CONFIG, make_image_folder, write_config

FAST = TINY_CONFIG + """\
analyses:
  galleries: {steps: 2}
  deepdream: {steps: 2, octaves: 2}
  probes: {folds: 2, trees: 5}
"""


def _mixed_folder(root: Path) -> Path:
    """cat: one image; dog: twelve, in every mode Pillow reads; eel: three, one of them truncated."""
    make_image_folder(root, ["cat"], per_class=1)
    make_image_folder(root, ["eel"], per_class=2, seed=2)
    dog = root / "dog"
    dog.mkdir(parents=True)
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(dog / "rgb.png")
    Image.fromarray(rgb).convert("L").save(dog / "gray.png")
    Image.fromarray(rgb).convert("RGBA").save(dog / "rgba.png")
    Image.fromarray(rgb).convert("P").save(dog / "palette.gif")
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(dog / "sixteen.png")
    Image.fromarray(rgb).convert("CMYK").save(dog / "cmyk.jpg")
    for i in range(6):
        Image.fromarray(rgb).save(dog / f"more{i}.bmp")
    whole = (root / "eel" / "img0.png").read_bytes()
    (root / "eel" / "cut.png").write_bytes(whole[: len(whole) // 2])
    return root


def test_every_mode_reads_as_the_model_sees_it(project: Path) -> None:
    _mixed_folder(project / "mixed")
    config = load_config(write_config(project, FAST.replace("imagefolder: data", "imagefolder: mixed")))
    dataset = load_dataset(config, 3)
    images = {name: dataset.image(i) for i, name in enumerate(dataset.names)}
    assert images["eel/cut.png"] is None and "eel/cut.png" in dataset.skipped
    read = {name: pixels for name, pixels in images.items() if pixels is not None}
    assert all(pixels.shape == (12, 12, 3) and pixels.dtype == np.uint8 for pixels in read.values())
    # 16-bit values scale to 8 bits instead of clipping to white.
    assert np.abs(read["dog/sixteen.png"][..., 0].astype(int) - read["dog/rgb.png"][..., 0]).max() <= 1
    assert np.array_equal(read["dog/rgba.png"], read["dog/rgb.png"])


def test_a_decompression_bomb_is_skipped_naming_pillows_limit(project: Path, monkeypatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    folder = make_image_folder(project / "bombs", ["a", "b"], per_class=1)  # 144 pixels: over the limit
    Image.new("RGB", (20, 20)).save(folder / "b" / "huge.png")  # 400 pixels: over twice the limit
    config = load_config(write_config(project, FAST.replace("imagefolder: data", "imagefolder: bombs")))
    dataset = load_dataset(config, 2)
    assert [dataset.image(i) for i in range(len(dataset))] == [None] * 3
    assert all("exceeds limit of" in why and "decompression bomb" in why for why in dataset.skipped.values())


def test_a_build_on_an_awkward_folder_completes_with_reasons(project: Path) -> None:
    _mixed_folder(project / "mixed")
    out = project / "out"
    build(load_config(write_config(project, FAST.replace("imagefolder: data", "imagefolder: mixed"))), out, device="cpu")
    export = json.loads((out / "dossier.json").read_text())
    assert export["failures"] == {}
    card = export["analyses"]["model_card"]
    assert card["per_class_images"] == [1, 12, 2] and list(card["skipped_images"]) == ["eel/cut.png"]
    for name, reason in export["not_applicable"].items():
        assert reason, name
