import pytest
import torch
import torchvision
from torch import nn

from dossier.errors import ConfigError, ModelError
from dossier.layers import discover_layers, select_layer_names
from tests.conftest import tiny_model

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    "name, kwargs, classifier",
    [
        ("resnet18", {}, "fc"),
        ("googlenet", {"aux_logits": False, "init_weights": False}, "fc"),
        ("mobilenet_v3_small", {}, "classifier.3"),
    ],
)
def test_auto_discovers_every_conv_and_the_classifier(name: str, kwargs: dict, classifier: str) -> None:
    model = torchvision.models.get_model(name, num_classes=7, **kwargs).eval()
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    layers, outputs = discover_layers(model, "auto", (3, 64, 64), CPU, scripted=False)
    assert [layer.name for layer in layers] == [*convs, classifier]
    assert outputs == 7
    assert layers[-1].type == "Linear" and layers[-1].output_shape == (7,)
    modules = dict(model.named_modules())
    for layer in layers[:-1]:
        assert layer.output_shape[0] == modules[layer.name].out_channels
        assert layer.parameters == sum(p.numel() for p in modules[layer.name].parameters())
    assert len({layer.slug for layer in layers}) == len(layers)


def test_resnet18_shapes_and_receptive_fields() -> None:
    model = torchvision.models.resnet18().eval()
    layers = {l.name: l for l in discover_layers(model, "auto", (3, 64, 64), CPU, False)[0]}
    assert layers["conv1"].output_shape == (64, 32, 32)
    assert layers["conv1"].kernel == (7, 7) and layers["conv1"].stride == (2, 2)
    # conv1: 7; max-pool 3×3 at jump 2: +4 → 11; 3×3 conv at jump 4: +8 → 19; another: +8 → 27.
    assert layers["conv1"].receptive_field == 7
    assert layers["layer1.0.conv1"].receptive_field == 19
    assert layers["layer1.0.conv2"].receptive_field == 27


def test_depthwise_groups_are_reported() -> None:
    model = torchvision.models.mobilenet_v3_small().eval()
    layers = discover_layers(model, "auto", (3, 64, 64), CPU, False)[0]
    depthwise = next(l for l in layers if l.name == "features.1.block.0.0")
    assert depthwise.groups == 16


def test_explicit_layers_in_network_order() -> None:
    names = select_layer_names(tiny_model(), ["fc", "conv1"])
    assert names == ["conv1", "fc"]


def test_unknown_layer_lists_close_matches() -> None:
    with pytest.raises(ConfigError, match="no module named 'conv3'.*close matches: conv2, conv1"):
        select_layer_names(tiny_model(), ["conv3"])


def test_input_size_the_model_rejects() -> None:
    model = torchvision.models.resnet18().eval()
    with pytest.raises(ModelError, match=r"model.input_size \[1, 64, 64\]: the model rejects"):
        discover_layers(model, "auto", (1, 64, 64), CPU, False)


def test_torchscript_records_only_the_classifier() -> None:
    scripted = torch.jit.script(tiny_model().eval())
    layers, outputs = discover_layers(scripted, "auto", (3, 12, 12), CPU, scripted=True)
    assert [l.name for l in layers] == ["conv1", "conv2", "fc"]
    assert [l.recordable for l in layers] == [False, False, True]
    assert layers[-1].output_shape == (3,) and outputs == 3
    assert layers[0].kernel == (3, 3)


def test_auto_leaves_out_modules_the_forward_pass_never_calls() -> None:
    import torchvision

    model = torchvision.models.googlenet(num_classes=4, aux_logits=True, init_weights=True).eval()
    layers, outputs = discover_layers(model, "auto", (3, 64, 64), torch.device("cpu"), scripted=False)
    names = [layer.name for layer in layers]
    assert outputs == 4 and names[-1] == "fc" and len(names) == 58
    assert not [name for name in names if name.startswith("aux")]  # eval mode never runs them
    assert all(layer.output_shape for layer in layers)
