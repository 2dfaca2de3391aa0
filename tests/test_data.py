from pathlib import Path

import numpy as np
import pytest
import torch

from dossier.config import load_config
from dossier.data import balanced_subset, load_dataset
from dossier.errors import DataError
from dossier.sample import colourise, digit_strokes, held_out_digits
from tests.conftest import TINY_CONFIG, make_image_folder, write_config


def test_image_folder_is_resized_and_normalised(project: Path) -> None:
    config = load_config(write_config(project, TINY_CONFIG.replace("[3, 12, 12]", "[3, 8, 10]")))
    dataset = load_dataset(config)
    assert dataset.class_names == ["cat", "dog", "eel"]
    assert len(dataset) == 18 and np.bincount(dataset.labels).tolist() == [6, 6, 6]
    x, label, index = dataset[7]
    assert x.shape == (3, 8, 10) and label == 1 and index == 7
    pixels = dataset.image(7)
    expected = (torch.from_numpy(pixels).permute(2, 0, 1).float() / 255 - 0.5) / 0.25
    assert torch.allclose(x, expected)


def test_grayscale_model_gets_one_channel(project: Path) -> None:
    text = TINY_CONFIG.replace("[3, 12, 12]", "[1, 12, 12]").replace("[0.5, 0.5, 0.5]", "[0.5]")
    dataset = load_dataset(load_config(write_config(project, text.replace("[0.25, 0.25, 0.25]", "[0.25]"))))
    assert dataset[0][0].shape == (1, 12, 12)


def test_limit_is_balanced_over_classes() -> None:
    labels = np.array([0] * 50 + [1] * 5 + [2] * 45)
    chosen = balanced_subset(labels, 30, seed=0)
    assert len(chosen) == 30 and len(set(chosen)) == 30
    counts = np.bincount(labels[chosen]).tolist()
    assert counts[1] == 5 and abs(counts[0] - counts[2]) <= 1
    assert np.array_equal(chosen, balanced_subset(labels, 30, seed=0))


def test_missing_and_empty_image_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder .* not found"):
        load_dataset(load_config(write_config(tmp_path, TINY_CONFIG)))
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        load_dataset(load_config(write_config(tmp_path, TINY_CONFIG)))
    (tmp_path / "data" / "cat").mkdir()
    (tmp_path / "data" / "cat" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="no images in"):
        load_dataset(load_config(write_config(tmp_path, TINY_CONFIG)))


def test_undecodable_image_is_skipped_and_remembered(project: Path) -> None:
    (project / "data" / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    dataset = load_dataset(load_config(write_config(project, TINY_CONFIG)))
    broken = dataset.names.index("dog/broken.png")
    assert dataset[broken] is None
    assert list(dataset.skipped) == ["dog/broken.png"]


def test_fingerprint_changes_with_the_bytes(project: Path) -> None:
    config = load_config(write_config(project, TINY_CONFIG))
    before = load_dataset(config).fingerprint
    make_image_folder(project / "data", ["cat"], per_class=1, seed=5)
    assert load_dataset(config).fingerprint != before


def test_digits_colours_do_not_predict_the_class() -> None:
    images, labels = held_out_digits()
    assert images.shape[1:] == (32, 32, 3) and images.dtype == np.uint8
    mean_colour = images.reshape(len(images), -1, 3).mean(axis=1)
    class_means = np.stack([mean_colour[labels == c].mean(axis=0) for c in range(10)])
    # Per-class mean colours differ far less than colours differ between images.
    assert class_means.std(axis=0).max() < 0.25 * mean_colour.std(axis=0).min()


def test_colourise_keeps_digits_visible() -> None:
    strokes, _ = digit_strokes("test")
    images = colourise(strokes[:50], np.random.default_rng(1)).astype(float) / 255
    luminance = images @ np.array([0.299, 0.587, 0.114])
    ink, paper = strokes[:50] > 0.9, strokes[:50] < 0.1
    gaps = [abs(l[i].mean() - l[p].mean()) for l, i, p in zip(luminance, ink, paper)]
    assert min(gaps) >= 0.25
