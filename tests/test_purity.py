import numpy as np
import pytest
import torch
from sklearn.metrics.cluster import contingency_matrix

from dossier.analyses.purity import kmeans_clusters, purity_score, reduce_activation
from dossier.sampling import balanced_sample


def test_purity_matches_the_contingency_matrix_definition() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 300)
    clusters = rng.integers(0, 5, 300)
    expected = contingency_matrix(labels, clusters).max(axis=0).sum() / len(labels)
    assert purity_score(labels, clusters) == pytest.approx(expected)


def test_purity_is_one_on_separable_data_and_low_on_noise() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 50)
    centres = rng.normal(0, 20, size=(4, 8))
    separable = centres[labels] + rng.normal(0, 1, size=(200, 8))
    assignment, distances = kmeans_clusters(separable, 4, n_init=4, seed=0)
    assert purity_score(labels, assignment) == 1.0
    assert distances.shape == (200,) and (distances >= 0).all()
    noise = rng.normal(size=(200, 8))
    assert purity_score(labels, kmeans_clusters(noise, 4, 4, 0)[0]) < 0.5


def test_reduce_activation_flattens_small_and_pools_large() -> None:
    small = torch.randn(5, 2, 4, 4)
    vectors, how = reduce_activation(small, max_features=32)
    assert vectors.shape == (5, 32) and how == "flattened 2×4×4"
    assert torch.equal(vectors, small.flatten(1))
    large = torch.randn(5, 8, 16, 16)
    vectors, how = reduce_activation(large, max_features=128)
    assert vectors.shape == (5, 8 * 4 * 4) and "average-pooled 8×16×16 to 8×4×4" in how
    wide = torch.randn(5, 300, 2, 2)
    assert reduce_activation(wide, max_features=128)[0].shape == (5, 300)


def test_balanced_sample() -> None:
    labels = np.array([0] * 10 + [1] * 3 + [2] * 7)
    rows = balanced_sample(labels, len(labels), seed=1)
    assert np.bincount(labels[rows]).tolist() == [3, 3, 3]
    assert np.bincount(labels[balanced_sample(labels, 6, seed=1)]).tolist() == [2, 2, 2]
