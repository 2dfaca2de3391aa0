"""Reading convolution weights, and the randomly initialised control model."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from dossier.layers import is_conv2d


def conv_weight(module: nn.Module) -> np.ndarray | None:
    """A conv layer's weights as units × (C_in / groups) × kh × kw, or None if it has none."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 4:
        return None
    return weight.detach().cpu().double().numpy()


def random_init_copy(model: nn.Module, seed: int) -> nn.Module | None:
    """The same architecture at random initialisation: the control a trained model is compared with.

    Every module's own reset_parameters() is used, so the initialisation is the one the model's
    authors chose. TorchScript models cannot be re-initialised this way: None.
    """
    if isinstance(model, torch.jit.ScriptModule):
        return None
    control = copy.deepcopy(model).cpu()
    torch.manual_seed(seed)
    for module in control.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
    return control.eval()


def conv_layer_weights(model: nn.Module, names: list[str]) -> list[tuple[str, np.ndarray]]:
    """(name, weights) of every conv layer among names, in order."""
    modules = dict(model.named_modules())
    found = []
    for name in names:
        weight = conv_weight(modules[name]) if is_conv2d(modules[name]) else None
        if weight is not None:
            found.append((name, weight))
    return found


def spatial_conv_layers(model: nn.Module, names: list[str]) -> list[str]:
    """The conv layers among names whose kernels are larger than 1×1."""
    return [name for name, w in conv_layer_weights(model, names) if w.shape[2] * w.shape[3] > 1]


def control_weights(model: nn.Module, names: list[str], seed: int) -> tuple[str, np.ndarray] | None:
    """The first conv layer with spatial kernels, as it is at random initialisation."""
    spatial = spatial_conv_layers(model, names)
    control = random_init_copy(model, seed) if spatial else None
    if control is None:
        return None
    return conv_layer_weights(control, spatial[:1])[0]
