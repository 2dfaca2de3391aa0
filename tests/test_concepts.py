"""Concepts: TCAV finds the planted shortcut for its class only, a concept of random images is
never significant, a unit that detects a colour is labelled with that colour's concept, and bad
settings say which key is wrong. (The whole build on the planted shortcut: test_shortcut.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dossier.analyses.concepts import (
    ConceptsSettings,
    LayerConcepts,
    class_gradients,
    concept_labels,
    fit_cavs,
    layer_codes,
    layer_result,
    positive_counts,
    stage_ends,
    train_cav,
)
from dossier.build import build
from dossier.classes import ClassMap
from dossier.config import load_config
from dossier.data import ImageSet
from dossier.errors import ConfigError
from tests import planted
from tests.conftest import TINY_CONFIG, write_config

LAYERS = ["conv1", "conv2", "conv3"]
SETTINGS = ConceptsSettings(runs=30, random_images=30)


@pytest.fixture(scope="module")
def shortcut_model() -> nn.Module:
    model, accuracy = planted.train()
    assert accuracy > 0.95
    return model


def _images(pixels: np.ndarray, labels: np.ndarray | None = None) -> ImageSet:
    return ImageSet(
        classes=ClassMap(planted.CLASSES, [0, 1, 2], planted.CLASSES, "test"), labels=np.zeros(len(pixels), dtype=np.int64) if labels is None else labels,
        names=[str(n) for n in range(len(pixels))], input_size=(3, planted.SIZE, planted.SIZE), mean=(0.5,) * 3,
        std=(0.5,) * 3, fingerprint="", source="test", _pixels=pixels,
    )


def tcav(model: nn.Module, concept: np.ndarray, seed: int) -> list[LayerConcepts]:
    """The concepts section's computation on the planted data, one concept called "concept"."""
    pixels, labels, _ = planted.images(40, seed=7)
    data = _images(pixels, labels)

    def codes(images: ImageSet, indices):
        return layer_codes(model, images, indices, LAYERS, [], SETTINGS.max_features, {}, 64)

    concept_codes = codes(_images(concept), range(len(concept)))
    rng = np.random.default_rng(seed)
    sets = [rng.choice(len(data), SETTINGS.random_images, replace=False) for _ in range(SETTINGS.runs)]
    random_codes = codes(data, range(len(data)))
    gradients = class_gradients(model, torch.stack([data[i][0] for i in range(len(data))]), torch.from_numpy(labels), LAYERS,
                                SETTINGS.max_features)
    counted = {c: int((labels == c).sum()) for c in range(3)}
    results = []
    for layer in LAYERS:
        fit = fit_cavs({"concept": concept_codes.vectors[layer]}, [random_codes.vectors[layer][s] for s in sets], seed)
        shares = positive_counts(gradients[layer], labels, fit["cavs"], [0, 1, 2]) / np.array(list(counted.values()))
        results.append(layer_result(layer, "", fit, shares, counted, ["concept"], 3 * len(LAYERS), SETTINGS))
    return results


def test_the_corner_mark_is_significant_for_the_marked_class_only(shortcut_model: nn.Module) -> None:
    for layer in tcav(shortcut_model, planted.mark_concept(25, seed=3), seed=0):
        assert layer.represented["concept"] and np.mean(layer.accuracy["concept"]) > 0.9
        mark = layer.score("concept", 0)
        assert mark.significant and mark.direction == "raises" and mark.mean > 0.8, (layer.layer, mark)
        # The mark takes the other classes' logits down (the model's "not 1, not 2"): never a rise.
        for other in (1, 2):
            score = layer.score("concept", other)
            assert not (score.significant and score.direction == "raises"), (layer.layer, score)


@pytest.mark.parametrize("seed", range(5))
def test_a_concept_of_random_images_is_never_significant(shortcut_model: nn.Module, seed: int) -> None:
    random_concept, _, _ = planted.images(9, seed=5000 + seed)  # 27 fresh images of the data's own kind
    for layer in tcav(shortcut_model, random_concept, seed):
        assert not any(score.significant for score in layer.scores), (layer.layer, np.mean(layer.accuracy["concept"]), layer)


def test_a_cav_points_from_random_to_concept_and_sorts_held_out_images() -> None:
    rng = np.random.default_rng(0)
    concept = rng.normal(size=(30, 5)) + np.array([3, 0, 0, 0, 0])
    random = rng.normal(size=(30, 5))
    cav, accuracy = train_cav(concept, random, seed=0)
    assert np.isclose(np.linalg.norm(cav), 1) and cav[0] > 0.9 and accuracy > 0.9
    _, chance = train_cav(rng.normal(size=(30, 5)), random, seed=0)
    assert chance < 0.8


def test_a_unit_that_detects_a_colour_is_labelled_with_that_colour() -> None:
    """1×1 convolution: unit 0 is red minus the rest, unit 1 green minus the rest, unit 2 blue
    minus the rest. Concepts: red and green images; random images: every hue."""
    model = nn.Sequential(nn.Conv2d(3, 3, 1))
    with torch.no_grad():
        model[0].weight.copy_((torch.eye(3) * 1.5 - 0.5).view(3, 3, 1, 1))
        model[0].bias.zero_()
    rng = np.random.default_rng(0)

    def painted(colour: np.ndarray, count: int) -> np.ndarray:
        noise = rng.uniform(-20, 20, size=(count, 8, 8, 3))
        return np.clip(colour[:, None, None, :] + noise, 0, 255).astype(np.uint8)

    red = painted(np.tile([220, 40, 40], (20, 1)), 20)
    green = painted(np.tile([40, 220, 40], (20, 1)), 20)
    random = painted(rng.uniform(0, 255, size=(60, 3)), 60)

    def means(pixels: np.ndarray) -> np.ndarray:
        images = ImageSet(ClassMap(["x"], [0], ["x"], "test"), np.zeros(len(pixels), dtype=np.int64), [str(n) for n in range(len(pixels))], (3, 8, 8),
                          (0.5,) * 3, (0.5,) * 3, "", "test", _pixels=pixels)
        return layer_codes(model, images, range(len(pixels)), [], ["0"], 2048, {}, 32).means["0"]

    labels = concept_labels({"red": means(red), "green": means(green)}, means(random), threshold=0.9)
    assert [(unit, concept) for unit, concept, _, _ in labels] == [(0, "red"), (1, "green")]
    assert all(d > 1 and auroc >= 0.9 for _, _, d, auroc in labels)
    # A unit neuron types found dead on the data gets no label, whatever the concept images do to it.
    labels = concept_labels({"red": means(red), "green": means(green)}, means(random), threshold=0.9, dead={0})
    assert [(unit, concept) for unit, concept, _, _ in labels] == [(1, "green")]


def test_auto_layers_are_the_ends_of_the_deepest_stages() -> None:
    class Info:
        def __init__(self, name: str, side: int) -> None:
            self.name, self.output_shape = name, (8, side, side)

    layers = [Info("a", 32), Info("b", 32), Info("c", 16), Info("d", 8), Info("e", 8), Info("f", 4), Info("g", 2)]
    assert stage_ends(layers) == ["c", "e", "f", "g"]
    assert stage_ends(layers[:2]) == ["b"]


def test_without_concepts_the_section_says_why(project: Path) -> None:
    out = build(load_config(write_config(project, TINY_CONFIG)), project / "out", device="cpu", pdf=False, only=["concepts"])
    html = (out.out_dir / "index.html").read_text()
    assert "<strong>Concepts (TCAV)</strong>: no concepts are configured (analyses.concepts.folders names" in html


def test_a_missing_concept_folder_is_named_by_its_key(project: Path) -> None:
    text = TINY_CONFIG + "analyses:\n  concepts: {folders: {stripes: nowhere/stripes}}\n"
    with pytest.raises(ConfigError, match=r"analyses\.concepts\.folders\.stripes: folder .*nowhere/stripes' not found"):
        build(load_config(write_config(project, text)), project / "out", device="cpu", pdf=False, only=["concepts"])
