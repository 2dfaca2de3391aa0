"""Commute time, probes, translation sensitivity and the embedding map."""

import numpy as np
import pytest
import torch
from torch import nn

from dossier.analyses.commute import (
    amplified_commute,
    analyse_layer,
    check_fits_in_memory,
    commute_times,
    connect_components,
    degree_explained,
    knn_adjacency,
)
from dossier.analyses.probes import probe_layer
from dossier.analyses.translation import measure
from dossier.errors import ConfigError
from dossier.analyses import finding


def test_pseudo_inverse_commute_time_equals_effective_resistance() -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(30, 3))
    adjacency, _, _ = connect_components(knn_adjacency(points, 4), points)
    commute, degrees, volume = commute_times(adjacency)
    laplacian = np.diag(degrees) - adjacency
    for i, j in [(2, 17), (0, 29), (5, 6)]:
        current = np.zeros(30)
        current[i], current[j] = 1, -1
        # Ground node 0 and solve the Laplacian system for the potentials.
        potentials = np.concatenate([[0.0], np.linalg.solve(laplacian[1:, 1:], current[1:])])
        resistance = current @ potentials
        assert commute[i, j] == pytest.approx(volume * resistance, rel=1e-8)


def test_degree_explains_raw_commute_time_on_a_large_geometric_graph() -> None:
    rng = np.random.default_rng(0)
    points = rng.uniform(size=(1500, 10))
    adjacency, _, _ = connect_components(knn_adjacency(points, 10), points)
    commute, degrees, volume = commute_times(adjacency)
    corrected = amplified_commute(commute, adjacency, degrees, volume)
    raw_share = degree_explained(commute, degrees, volume)
    corrected_share = degree_explained(corrected, degrees, volume)
    # Measured: 0.988 raw against 0.568 corrected.
    assert raw_share > 0.95
    assert corrected_share < raw_share - 0.25


def test_corrected_commute_separates_two_rings_where_kmeans_does_not() -> None:
    rng = np.random.default_rng(0)
    angles = rng.uniform(0, 2 * np.pi, 300)
    inner = np.c_[np.cos(angles[:150]), np.sin(angles[:150])]
    outer = 3 * np.c_[np.cos(angles[150:]), np.sin(angles[150:])]
    points = np.r_[inner, outer] + 0.05 * rng.normal(size=(300, 2))
    labels = np.r_[np.zeros(150, int), np.ones(150, int)]
    entry, _ = analyse_layer("rings", points, labels, classes=2, k=10, seed=0)
    assert entry.components == 2 and entry.edges_added == 1  # joined by one edge
    assert entry.corrected.ari > 0.95
    assert entry.euclidean.ari < 0.2


def test_too_large_a_sample_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ConfigError, match=r"analyses.commute.sample: 10000000 images need about .* GiB"):
        check_fits_in_memory(10_000_000)


def test_probes_read_separable_codes_and_not_shuffled_labels() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 50)
    centres = rng.normal(0, 5, size=(4, 20))
    codes = centres[labels] + rng.normal(size=(200, 20))
    separable = probe_layer("separable", codes, labels, folds=5, max_dim=256, trees=50, seed=0)
    assert min(separable.accuracy.values()) > 0.95
    shuffled = probe_layer("shuffled", codes, rng.permutation(labels), folds=5, max_dim=256, trees=50, seed=0)
    assert max(shuffled.accuracy.values()) < 0.4  # chance is 0.25


class _CircularPooled(nn.Module):
    """Circular padding and global pooling: exactly invariant to circular shifts."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1, padding_mode="circular")
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class _DenseOnPixels(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 3)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_translation_curves_are_flat_only_for_a_shift_invariant_model() -> None:
    torch.manual_seed(0)
    images = torch.rand(40, 1, 8, 8)
    invariant = _CircularPooled().eval()
    labels = invariant(images).argmax(1)
    for curve in measure(invariant, images, labels, ["fc"], max_shift=3, batch=16):
        assert np.allclose(curve.true_probability, curve.true_probability[0], atol=1e-5)
        assert np.allclose(curve.cosine_distance["fc"], 0, atol=1e-5)
    dense = _DenseOnPixels().eval()
    labels = dense(images).argmax(1)
    curves = measure(dense, images, labels, ["fc"], max_shift=3, batch=16)
    assert max(abs(c.true_probability[-1] - c.true_probability[0]) for c in curves) > 0.02
    assert max(c.cosine_distance["fc"][-1] for c in curves) > 0.05


def test_finding_is_written_from_the_numbers(sample_build) -> None:
    import json

    export = json.loads((sample_build / "dossier.json").read_text())
    analyses = export["analyses"]
    linear = [(e["layer"], e["accuracy"]["logistic regression"]) for e in analyses["probes"]["layers"]]
    best = max(v for _, v in linear)
    readable = next(layer for layer, v in linear if v >= best - 0.05)
    peak = max(analyses["purity"]["layers"], key=lambda e: e["purity"])["layer"]
    index = (sample_build / "index.html").read_text()
    assert f"linearly readable at {readable}" in index
    assert f"purity peaks at {peak}" in index
    assert export["finding"] in index.replace("&#39;", "'")
    embedding = analyses["embedding"]
    assert len(embedding["points"]) == analyses["probes"]["images"]
    assert all(embedding["labels"][n] != embedding["predicted"][n] for n in embedding["mistakes"])
    assert finding({}) is None
