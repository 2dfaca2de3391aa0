"""Feature galleries: optimised images beat the data, a known pattern comes back, top-k is exact."""

import numpy as np
import torch
from torch import nn

from dossier.analyses.galleries import RunningExtremes, receptive_patch
from dossier.capture import Batch, truncated_forward
from dossier.featurevis import (
    ImageParameterisation,
    Transforms,
    channel,
    class_logit,
    histogram_peaks,
    mix,
    optimise,
    whole_layer,
)

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()


def _unit_means(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return truncated_forward(model, ["2"], (images - 0.5) / 0.5)["2"].mean(dim=(2, 3))


def test_max_images_beat_every_data_image_and_min_images_undercut_them() -> None:
    model = _tiny()
    data = torch.rand(200, 3, 16, 16)
    on_data = _unit_means(model, data)
    units = torch.arange(4)
    common = dict(layers=["2"], batch=4, input_size=(3, 16, 16), mean=MEAN, std=STD, steps=80, seed=0)
    maxima = optimise(model, channel("2", units), **common)
    minima = optimise(model, channel("2", units, -1.0), **common)
    reached_max = _unit_means(model, maxima)[units, units]
    reached_min = _unit_means(model, minima)[units, units]
    assert (reached_max > on_data.max(dim=0).values).all()  # quality > 1
    assert (reached_min <= on_data.min(dim=0).values).all()
    assert all(p.requires_grad for p in model.parameters())  # restored after optimising


def test_a_red_vertical_edge_detector_yields_a_red_vertical_structure() -> None:
    conv = nn.Conv2d(3, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, :, 0] = -1.0  # red channel: dark on the left,
        conv.weight[0, 0, :, 2] = 1.0  # bright on the right: a vertical edge in red
    model = nn.Sequential(conv).eval()
    image = optimise(model, channel("0", torch.tensor([0])), ["0"], 1, (3, 24, 24), MEAN, STD, 100, 0,
                     parameterisation="pixel", transforms=None, decorrelate=False)[0]
    horizontal = (image[:, :, 1:] - image[:, :, :-1]).abs().mean(dim=(1, 2))
    vertical = (image[:, 1:, :] - image[:, :-1, :]).abs().mean(dim=(1, 2))
    assert horizontal[0] > 2 * vertical[0], "red changes across columns: vertical edges"
    assert horizontal[0] > 2 * horizontal[1:].max(), "the structure is in the red channel"


def test_running_extremes_equal_a_brute_force_sort() -> None:
    rng = torch.Generator().manual_seed(0)
    activations = torch.randn(50, 3, 4, 4, generator=rng)
    extremes = RunningExtremes(["layer"], k=5, norms={})
    for start in range(0, 50, 7):
        rows = slice(start, start + 7)
        n = len(activations[rows])
        extremes.update(Batch(torch.zeros(n, 1), torch.zeros(n, dtype=torch.long), torch.arange(start, start + n),
                              torch.zeros(n, 2), {"layer": activations[rows]}))
    state = extremes.state["layer"]
    means = activations.mean(dim=(2, 3))
    peaks, where = activations.flatten(2).max(dim=2)
    for unit in range(3):
        order = torch.argsort(means[:, unit], descending=True)
        assert state["top_ids"][unit].tolist() == order[:5].tolist()
        assert state["bottom_ids"][unit].tolist() == torch.argsort(means[:, unit])[:5].tolist()
        best = torch.argsort(peaks[:, unit], descending=True)[:5]
        assert state["peak_ids"][unit].tolist() == best.tolist()
        assert state["peak_where"][unit].tolist() == where[best, unit].tolist()


def test_parameterisations_objectives_and_transforms() -> None:
    generator = torch.Generator().manual_seed(0)
    for kind in ("fourier", "pixel", "laplacian"):
        images = ImageParameterisation(kind, 2, 3, (20, 24), generator)()
        assert images.shape == (2, 3, 20, 24) and images.min() >= 0 and images.max() <= 1
    gray = ImageParameterisation("fourier", 1, 1, (16, 16), generator)
    assert not gray.decorrelate  # colour decorrelation needs three channels
    warped = Transforms().apply(torch.rand(3, 3, 32, 32), generator)
    assert warped.shape == (3, 3, 32, 32)
    model = _tiny()
    outputs = truncated_forward(model, ["0"], torch.randn(2, 3, 16, 16), stop=False)
    combined = mix((1.0, whole_layer("0")), (0.5, class_logit(torch.tensor([0, 2]))))(outputs)
    expected = outputs["0"].flatten(1).mean(1) + 0.5 * outputs["(output)"][torch.arange(2), torch.tensor([0, 2])]
    assert torch.allclose(combined, expected)


def test_histogram_peaks_and_patches() -> None:
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    image[..., 0] = 200
    image[:2, :, 1] = 7
    assert histogram_peaks(image) == [200, 0, 0]
    pixels = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
    patch = receptive_patch(pixels, position=0, feature_shape=(8, 8), field_size=7)
    assert patch.shape[:2] == (7, 7)
    assert (patch[0, 0] == pixels[0, 0]).all()  # clamped at the top-left corner


def test_convergence_is_read_from_the_objective_curve() -> None:
    from dossier.analyses.galleries import LATE_GAIN_LIMIT, late_gain, mean_curve

    steps = np.arange(100, dtype=float)
    plateau = 1 - np.exp(-steps / 8)  # all but done after a third of the steps
    ramp = steps / 99  # still climbing at the end
    assert late_gain(plateau) < 0.01 < LATE_GAIN_LIMIT < late_gain(ramp)
    assert late_gain(np.zeros(100)) is None and late_gain(ramp[:5]) is None  # no gain; too short to say
    curve = mean_curve([plateau, 3 * plateau + 2])  # scaled from start to end, they coincide
    assert curve[0] == 0 and abs(curve[-1] - 1) < 0.01 and curve == sorted(curve)


def test_exemplar_agreement_compares_the_classes_of_the_two_halves() -> None:
    from dossier.analyses.galleries import exemplar_agreement

    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    assert exemplar_agreement(labels, torch.tensor([0, 2]), torch.tensor([1, 3])) == 1.0  # classes 0, 1 both
    assert exemplar_agreement(labels, torch.tensor([0, 1]), torch.tensor([4, 6])) == 0.0  # class 0 vs 2, 3
    assert exemplar_agreement(labels, torch.tensor([0, 2]), torch.tensor([1, 4])) == 0.5


def test_the_halves_keep_their_own_top_images_through_shards() -> None:
    whole, first, second = (RunningExtremes(["conv"], k=2, norms={}) for _ in range(3))
    values = torch.randn(8, 5, 3, 3, generator=torch.Generator().manual_seed(0))  # 8 images, 5 units
    batch = Batch(values, torch.zeros(8, dtype=torch.long), torch.arange(8), torch.zeros(8, 2), {"conv": values})
    whole.update(batch)
    first.update(Batch(values[:4], batch.labels[:4], batch.indices[:4], batch.logits[:4], {"conv": values[:4]}))
    second.update(Batch(values[4:], batch.labels[4:], batch.indices[4:], batch.logits[4:], {"conv": values[4:]}))
    first.merge(second)
    for key in ("top", "top_h0", "top_h1", "bottom", "peak"):
        assert torch.equal(whole.state["conv"][f"{key}_ids"], first.state["conv"][f"{key}_ids"]), key
    assert set(whole.state["conv"]["top_h0_ids"][0].tolist()) <= {0, 2, 4, 6}  # even images only
