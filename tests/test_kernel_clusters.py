import numpy as np
import torchvision
from sklearn.metrics import adjusted_rand_score

from dossier.analyses.kernel_clusters import (
    ONE_BY_ONE_REASON,
    cluster_kernels,
    largest_gap_clusters,
    unit_vectors,
)
from dossier.analyses.kernel_clusters import KernelClustersSettings
from dossier.weights import conv_weight, random_init_copy

SETTINGS = KernelClustersSettings()


def test_three_planted_templates_come_back_as_three_clusters() -> None:
    rng = np.random.default_rng(0)
    templates = rng.normal(size=(3, 8, 3, 3))
    truth = np.repeat(np.arange(3), 20)
    weights = templates[truth] + 0.3 * rng.normal(size=(60, 8, 3, 3))
    shuffle = np.random.default_rng(7).permutation(60)  # no help from the order of the units
    result = cluster_kernels("planted", weights[shuffle], SETTINGS, seed=0)
    assert result.clusters == 3, "the dendrogram's largest gap should choose 3"
    assert adjusted_rand_score(truth[shuffle], result.labels) >= 0.9
    assert sorted(g.size for g in result.groups) == [20, 20, 20]
    assert len(result.embedding) == 60 and result.embedding_method.startswith("UMAP")
    assert result.seed_agreement >= 0.9  # planted clusters do not depend on the seed


def test_clusters_of_structureless_kernels_are_unstable_across_seeds() -> None:
    weights = np.random.default_rng(3).normal(size=(60, 8, 3, 3))
    result = cluster_kernels("noise", weights, SETTINGS.model_copy(update={"clusters": 6}), seed=0)
    assert result.seed_agreement < 0.8


def test_largest_gap_known_answer() -> None:
    # Merges at 1, 1.1, 1.2, 1.3 (within groups), then 5 and 5.5: three groups → cut gives 3.
    heights = np.array([1.0, 1.1, 1.2, 1.3, 5.0, 5.5])
    assert largest_gap_clusters(heights, max_clusters=6) == 3


def test_unit_vectors_are_standardised_k2_by_cin() -> None:
    weight = np.arange(2 * 3 * 2 * 2, dtype=float).reshape(2, 3, 2, 2)
    vectors = unit_vectors(weight)
    assert vectors.shape == (2, 12)
    assert np.allclose(vectors.mean(axis=1), 0) and np.allclose(vectors.std(axis=1), 1)
    # Layout k² × C_in: the first C_in entries are position (0, 0) of every input channel.
    first = weight[0].reshape(3, 4)
    standard = (first - first.mean()) / first.std()
    assert np.allclose(vectors[0][:3], standard[:, 0])


def test_one_by_one_kernels_are_skipped_with_the_seed_reason() -> None:
    result = cluster_kernels("pointwise", np.ones((16, 8, 1, 1)), SETTINGS, seed=0)
    assert result.skipped == ONE_BY_ONE_REASON and result.groups == []


def test_depthwise_convolution_is_clustered() -> None:
    model = torchvision.models.mobilenet_v3_small()
    weight = conv_weight(dict(model.named_modules())["features.1.block.0.0"])
    assert weight.shape == (16, 1, 3, 3)
    result = cluster_kernels("depthwise", weight, SETTINGS, seed=0)
    assert result.skipped is None and result.input_channels == 1 and sum(g.size for g in result.groups) == 16


def test_random_init_copy_changes_weights_not_architecture() -> None:
    model = torchvision.models.resnet18()
    control = random_init_copy(model, seed=1)
    assert not np.allclose(conv_weight(model.conv1), conv_weight(control.conv1))
    assert [n for n, _ in model.named_modules()] == [n for n, _ in control.named_modules()]
    again = random_init_copy(model, seed=1)
    assert np.array_equal(conv_weight(control.conv1), conv_weight(again.conv1))
