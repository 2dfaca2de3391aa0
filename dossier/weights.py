"""Reading convolution weights, and the randomly initialised control model."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn


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
