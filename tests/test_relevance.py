"""Relevance: conservation (on the common architectures too), positivity, a hand-worked network, a
left-looking model, vanished relevance said so, no leftover hooks."""

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from dossier.analyses.relevance import (
    OrientedZPlus,
    RelevanceSettings,
    deep_taylor_composite,
    relevance_graph,
    relevance_pass,
    select_images,
    vanished,
)
from dossier.layers import batchnorm_after
from dossier.sample import DigitsCNN

CPU = torch.device("cpu")
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
TOLERANCE = RelevanceSettings().tolerance  # the project's default


def _explain(model: nn.Module, x: torch.Tensor, convs: list[str], layers: list[str] = ()):
    traced, _ = relevance_graph(model, x[:1])
    composite = deep_taylor_composite(traced, convs, tuple(x.shape[1:]), MEAN[: x.shape[1]], STD[: x.shape[1]], CPU)
    targets = model(x).argmax(dim=1)
    with composite.context(traced) as modified:
        return relevance_pass(modified, x, targets, list(layers))


def _calibrated(model: nn.Module, size: int = 32) -> nn.Module:
    """Random weights that keep the logits well above the rules' stabiliser, as trained ones are:
    BatchNorm statistics measured on random images (a fresh BN is the identity, and activations
    shrink layer by layer), and the classifier scaled so that the logits spread by about 1."""
    torch.manual_seed(0)
    for norm in model.modules():
        if isinstance(norm, nn.modules.batchnorm._BatchNorm):
            norm.reset_running_stats()
            norm.momentum = None  # the statistics of the calibration batch itself
    x = torch.randn(8, 3, size, size)
    with torch.no_grad():
        model.train()(x)
        spread = model.eval()(x).std()
        classifier = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        classifier.weight /= spread
        classifier.bias /= spread
    return model


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def test_conservation_through_batchnorm_and_a_residual_block() -> None:
    model = _calibrated(DigitsCNN())
    x = torch.randn(6, 3, 32, 32).clamp(-2, 2)
    convs = ["conv1", "conv2", "block.conv1", "block.conv2", "conv3"]
    logits, relevance, layers = _explain(model, x, convs, convs)
    ratio = relevance.sum(dim=(1, 2, 3)) / logits
    assert torch.allclose(ratio, torch.ones_like(ratio), atol=0.01), ratio
    for name in ("conv3", "conv2"):
        assert torch.allclose(layers[name].sum(dim=(1, 2, 3)) / logits, torch.ones(6), atol=0.01), name
    assert _hooks(model) == 0


def test_resnet18_additions_are_found_and_conserved() -> None:
    model = torchvision.models.resnet18(num_classes=5).eval()
    x = torch.randn(2, 3, 64, 64)
    traced, rewrites = relevance_graph(model, x[:1])
    assert (rewrites.additions, rewrites.gates) == (8, 0)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    logits, relevance, _ = _explain(model, x, convs)
    assert torch.allclose(relevance.sum(dim=(1, 2, 3)) / logits, torch.ones(2), atol=0.01)
    assert torch.allclose(traced(x), model(x), atol=1e-5)


ARCHITECTURES = {  # torchvision constructor keyword arguments, input size
    "mobilenet_v3_small": ({}, 64),  # squeeze-excitation gates, Hardswish, linear bottlenecks
    "efficientnet_b0": ({}, 64),  # the same with SiLU and stochastic depth
    "googlenet": ({"aux_logits": False, "init_weights": True}, 64),  # concatenated branches, F.relu
    "vgg16": ({}, 32),
    "resnet18": ({}, 64),  # additions
    "densenet121": ({}, 32),  # BatchNorm before the conv, reading a concatenation
}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_relevance_is_conserved_on_the_common_architectures(name: str) -> None:
    kwargs, size = ARCHITECTURES[name]
    torch.manual_seed(0)
    model = _calibrated(getattr(torchvision.models, name)(num_classes=10, **kwargs), size)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1)).clamp(-2, 2)
    traced, _ = relevance_graph(model, x[:1])
    with torch.no_grad():
        assert torch.allclose(traced(x), model(x), atol=1e-5)  # the rewritten graph computes the same
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    logits, relevance, _ = _explain(model, x, convs)
    ratio = relevance.sum(dim=(1, 2, 3)) / logits
    assert ((ratio - 1).abs() <= TOLERANCE).all(), ratio
    assert _hooks(model) == 0


def test_gates_and_functional_activations_get_rules() -> None:
    class Gated(nn.Module):  # squeeze-excitation written with functions, as many model files do
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.squeeze, self.excite = nn.Conv2d(3, 8, 3), nn.Linear(8, 4), nn.Linear(4, 8)
            self.fc = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.silu(self.conv(x))
            scale = torch.sigmoid(self.excite(F.relu(self.squeeze(F.adaptive_avg_pool2d(x, 1).flatten(1)))))
            x = x * scale.view(-1, 8, 1, 1)
            return self.fc(F.adaptive_avg_pool2d(F.hardswish(x), 1).flatten(1))

    torch.manual_seed(0)
    model = Gated().eval()
    x = torch.randn(3, 3, 10, 10)
    traced, rewrites = relevance_graph(model, x[:1])
    assert (rewrites.gates, rewrites.functions, rewrites.additions) == (1, 6, 0)
    logits, relevance, _ = _explain(model, x, ["conv"])
    assert torch.allclose(relevance.sum(dim=(1, 2, 3)) / logits, torch.ones(3), atol=TOLERANCE)


def test_a_batchnorm_reading_a_concatenation_is_merged_into_no_conv() -> None:
    model = torchvision.models.densenet121(num_classes=10).eval()
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    found = batchnorm_after(model, convs, (3, 64, 64), CPU)
    # norm1 of each dense layer reads the concatenation of the earlier features; norm2 reads conv1.
    assert {bn for bn, _ in found.values()} == {"features.norm0"} | {
        f"{conv.rsplit('.', 1)[0]}.norm2" for conv in convs if conv.endswith("conv1")
    }
    assert all(found[conv][0] == f"{conv.rsplit('.', 1)[0]}.norm2" for conv in convs if conv.endswith("conv1"))


def test_vanished_relevance_is_told_apart_from_a_conserved_map() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)).eval()
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    logits, live, _ = _explain(model, x, ["0"])
    assert not vanished(live, logits, TOLERANCE).any()
    with torch.no_grad():  # an untrained googlenet's story: the signals fade, the logits are the biases
        model[0].weight.mul_(1e-12)
        model[0].bias.mul_(1e-12)
        model[3].bias.fill_(0.02)
    logits, dead, _ = _explain(model, x, ["0"])
    assert torch.allclose(logits, torch.full((2,), 0.02))
    assert (dead.sum(dim=(1, 2, 3)) / logits).abs().max() < 1e-3
    assert vanished(dead, logits, TOLERANCE).all()


def test_hidden_relevance_is_non_negative() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 4),
    ).eval()
    x = torch.randn(5, 3, 12, 12)
    logits, _, layers = _explain(model, x, ["0", "2"], ["0", "2"])
    positive = logits > 0
    assert positive.any()
    for name in ("0", "2"):
        assert (layers[name][positive] >= -1e-7).all(), name


def test_agrees_with_a_two_layer_network_worked_by_hand() -> None:
    rng = np.random.default_rng(0)
    w1, b1 = rng.normal(size=(4, 6)), np.abs(rng.normal(size=4))  # positive biases: live hidden units
    w2, b2 = rng.normal(size=(3, 4)) + 0.5, rng.normal(size=3)
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3)).double().eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(w1)); model[0].bias.copy_(torch.from_numpy(b1))
        model[2].weight.copy_(torch.from_numpy(w2)); model[2].bias.copy_(torch.from_numpy(b2))
    x = rng.uniform(-1, 1, size=6)
    low, high = -np.ones(6), np.ones(6)

    # By hand: z+ at the output layer (bias left out), z^B at the input layer.
    hidden = np.maximum(w1 @ x + b1, 0)
    logits = w2 @ hidden + b2
    target = int(np.argmax(logits))
    z = hidden * np.clip(w2[target], 0, None)
    r_hidden = z / z.sum() * logits[target]
    r_input = np.zeros(6)
    for j in range(4):
        contributions = x * w1[j] - low * np.clip(w1[j], 0, None) - high * np.clip(w1[j], None, 0)
        r_input += contributions / contributions.sum() * r_hidden[j]

    from zennit.composites import SpecialFirstLayerMapComposite, layer_map_base
    from zennit.rules import ZBox, ZPlus

    composite = SpecialFirstLayerMapComposite(
        layer_map=layer_map_base() + [(nn.Linear, ZPlus(zero_params=["bias"]))],
        first_map=[(nn.Linear, ZBox(-1.0, 1.0, zero_params=["bias"]))],  # the box of low, high above
    )
    with composite.context(model) as modified:
        _, relevance, _ = relevance_pass(modified, torch.from_numpy(x)[None], torch.tensor([target]), [])
    assert np.allclose(relevance[0].numpy(), r_input, atol=1e-5)
    assert r_input.sum() == pytest.approx(logits[target])


def test_each_unit_shares_its_relevance_by_the_sign_of_its_bias_free_input() -> None:
    from zennit.composites import LayerMapComposite

    layer = nn.Linear(3, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0, -1.0], [1.0, -2.0, -1.0], [1.0, -1.0, 0.0]]))
        layer.bias.fill_(5.0)  # every output positive; the rule must go by x·w alone
    x = torch.tensor([[1.0, 1.0, 2.0]], requires_grad=True)
    # Contributions x·w: [1, 2, -2] (z = 1: the positive ones, 1/3 and 2/3), [1, -2, -2] (z = -3: the
    # negative ones, 1/2 each), [1, -1, 0] (z = 0: evenly, 1/3 each); one unit of relevance each.
    with LayerMapComposite([(nn.Linear, OrientedZPlus())]).context(layer) as modified:
        out = modified(x)
        (relevance,) = torch.autograd.grad(out, x, torch.ones_like(out))
    assert torch.allclose(relevance, torch.tensor([[1 / 3 + 1 / 3, 2 / 3 + 1 / 2 + 1 / 3, 1 / 2 + 1 / 3]]), atol=1e-5)


def test_a_model_looking_at_the_left_half_gets_its_relevance_there() -> None:
    conv = nn.Conv2d(1, 2, 3, padding=1)
    head = nn.Linear(2 * 16 * 16, 2)
    with torch.no_grad():
        conv.weight.uniform_(0.1, 1.0)
        conv.bias.zero_()
        mask = torch.zeros(2, 16, 16)
        mask[:, :, :8] = 1  # only the left half of the feature map reaches the classifier
        head.weight.copy_(torch.rand(2, 2 * 16 * 16) * mask.flatten())
        head.bias.zero_()
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), head).eval()
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    traced, _ = relevance_graph(model, x[:1])
    composite = deep_taylor_composite(traced, ["0"], (1, 16, 16), (0.5,), (0.5,), CPU)
    with composite.context(traced) as modified:
        _, relevance, _ = relevance_pass(modified, x, model(x).argmax(1), [])
    left = relevance[..., :8].abs().sum(dim=(1, 2, 3))
    total = relevance.abs().sum(dim=(1, 2, 3))
    assert (left / total >= 0.95).all(), left / total


def test_image_selection_takes_confident_correct_images_and_mistakes() -> None:
    labels = np.array([0, 0, 1, 1, 1, 0])
    predicted = np.array([0, 0, 1, 0, 1, 1])
    confidence = np.array([0.6, 0.9, 0.7, 0.99, 0.8, 0.5])
    rows = select_images(labels, labels == predicted, confidence, per_class=1, mistakes=1)
    assert rows.tolist() == [1, 4, 3]


def test_analysis_on_a_model_without_mistakes_leaves_no_hooks(project, cli) -> None:
    import json

    from tests.conftest import TINY_CONFIG, write_config

    config = write_config(project, TINY_CONFIG.replace("data:", "analyses: {relevance: {mistakes: 0}}\ndata:"))
    out = project / "out"
    assert cli("build", config, "--out", out, "--no-pdf", "--only", "relevance").exit_code == 0
    result = json.loads((out / "dossier.json").read_text())["analyses"]["relevance"]
    assert all(image["label"] == image["predicted"] for image in result["images"])
    assert all(abs(image["conservation"] - 1) < 0.01 for image in result["images"])
    assert [r["layer"] for r in result["rankings"]] == ["conv1", "conv2"]
    assert "Relevance" in (out / "layer-conv2.html").read_text()


def test_a_model_whose_relevance_vanishes_says_so(project, cli) -> None:
    import json

    from tests.conftest import TINY_CONFIG, tiny_model, write_config

    torch.manual_seed(0)
    model = tiny_model()
    with torch.no_grad():  # signals far below the rules' stabiliser; the logits are the classifier's biases
        for conv in (model.conv1, model.conv2):
            conv.weight.mul_(1e-12)
            conv.bias.mul_(1e-12)
        model.fc.bias.copy_(torch.tensor([0.02, 0.01, 0.0]))
    torch.save(model.state_dict(), project / "tiny.pt")
    out = project / "out"
    config = write_config(project, TINY_CONFIG)
    assert cli("build", config, "--out", out, "--no-pdf", "--only", "relevance").exit_code == 0
    result = json.loads((out / "dossier.json").read_text())["analyses"]["relevance"]
    assert result["images"] and all(image["vanished"] for image in result["images"])
    assert all(ranking["ranking"] == [] for ranking in result["rankings"])
    page = (out / "relevance.html").read_text()
    assert f"{len(result['images'])} of {len(result['images'])} image(s): the relevance vanished" in page
    assert "No filter ranking" in (out / "layer-conv2.html").read_text()
