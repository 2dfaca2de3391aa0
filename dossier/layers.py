"""Layer discovery: which modules a dossier records, with their shapes and receptive fields."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import torch
from torch import nn

from dossier.capture import hooks, recording, truncated_forward
from dossier.errors import ConfigError, ModelError

_RECEPTIVE_FIELD_BATCH = 4


@dataclass(frozen=True)
class LayerInfo:
    """One recorded layer, in network order."""

    name: str
    type: str
    kernel: tuple[int, int] | None
    stride: tuple[int, int] | None
    groups: int
    output_shape: tuple[int, ...] | None  # per image; None when it cannot be observed
    parameters: int
    receptive_field: int | None  # pixels of input that can reach one output unit (measured)
    slug: str  # file-name-safe name, unique in the model
    recordable: bool  # False for inner layers of a TorchScript model (no hooks there)

    @property
    def units(self) -> int | None:
        return self.output_shape[0] if self.output_shape else None

    @property
    def kernel_text(self) -> str:
        return f"{self.kernel[0]}×{self.kernel[1]}" if self.kernel else ""

    @property
    def shape_text(self) -> str:
        return "×".join(str(d) for d in self.output_shape) if self.output_shape else "?"


def module_type(module: nn.Module) -> str:
    # TorchScript modules keep their Python class name in original_name.
    return getattr(module, "original_name", None) or type(module).__name__


def is_conv2d(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) or module_type(module) == "Conv2d"


def select_layer_names(model: nn.Module, requested: str | list[str]) -> list[str]:
    """`auto`: every Conv2d plus the last Linear (the classifier); else the names, checked."""
    modules = dict(model.named_modules())
    if requested == "auto":
        names = [n for n, m in modules.items() if n and is_conv2d(m)]
        linears = [n for n, m in modules.items() if n and module_type(m) == "Linear"]
        if linears:
            names.append(linears[-1])
        if not names:
            raise ConfigError("layers: auto found no Conv2d or Linear module; list module names")
        return names
    order = {name: i for i, name in enumerate(modules)}
    for name in requested:
        if name not in modules or name == "":
            close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.5)
            hint = f"; close matches: {', '.join(close)}" if close else ""
            raise ConfigError(f"layers: the model has no module named '{name}'{hint}")
    return sorted(dict.fromkeys(requested), key=order.__getitem__)


def discover_layers(
    model: nn.Module,
    requested: str | list[str],
    input_size: tuple[int, int, int],
    device: torch.device,
    scripted: bool,
) -> tuple[list[LayerInfo], int]:
    """The recorded layers and the number of model outputs; checks the model accepts the input."""
    names = select_layer_names(model, requested)
    modules = dict(model.named_modules())
    probe = torch.randn(2, *input_size, device=device)
    shapes: dict[str, tuple[int, ...]] = {}
    try:
        with torch.no_grad():
            if scripted:
                logits = model(probe)
            else:
                with recording(model, names) as outputs:
                    logits = model(probe)
                shapes = {name: tuple(out.shape[1:]) for name, out in outputs.items()}
    except Exception as exc:  # any failure of the user's model on this input is an input error
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"model.input_size {list(input_size)}: the model rejects an input of this size ({first})"
        ) from None
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ModelError(f"model: output is {shape}; expected class scores of shape (batch, classes)")
    if requested == "auto" and not scripted:
        # Modules the forward pass never calls (GoogLeNet's auxiliary classifiers in eval mode)
        # have nothing to record.
        names = [name for name in names if name in shapes]
    output_layer = names[-1] if module_type(modules[names[-1]]) == "Linear" else None
    if scripted and output_layer:
        shapes[output_layer] = tuple(logits.shape[1:])
    fields = receptive_fields(model, names, shapes, input_size, device) if not scripted else {}
    slugs = _unique_slugs(names)
    layers = []
    for name in names:
        module = modules[name]
        layers.append(
            LayerInfo(
                name=name,
                type=module_type(module),
                kernel=_pair(getattr(module, "kernel_size", None)),
                stride=_pair(getattr(module, "stride", None)),
                groups=int(getattr(module, "groups", 1)),
                output_shape=shapes.get(name),
                parameters=sum(p.numel() for p in module.parameters()),
                receptive_field=fields.get(name),
                slug=slugs[name],
                recordable=not scripted or name == output_layer,
            )
        )
    return layers, int(logits.shape[1])


def receptive_fields(
    model: nn.Module,
    names: list[str],
    shapes: dict[str, tuple[int, ...]],
    input_size: tuple[int, int, int],
    device: torch.device,
) -> dict[str, int]:
    """Receptive field of each spatial layer, measured from input gradients.

    Summing architecture formulas breaks on branches (residual shortcuts, Inception), so instead
    the gradient of the centre output unit is traced back to the input; its non-zero extent is the
    receptive field, taken over a few random inputs so that ReLU and max-pool gating average out.
    """
    fields: dict[str, int] = {}
    for name in names:
        if len(shapes.get(name, ())) != 3:
            continue
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(_RECEPTIVE_FIELD_BATCH, *input_size, generator=generator).to(device)
        x.requires_grad_(True)
        out = truncated_forward(model, [name], x)[name]
        centre = out[:, :, out.shape[2] // 2, out.shape[3] // 2]
        (grad,) = torch.autograd.grad(centre.abs().sum(), x, allow_unused=True)
        if grad is None:
            continue
        reached = grad.abs().sum(dim=(0, 1)) > 0
        rows = torch.nonzero(reached.any(dim=1)).flatten()
        cols = torch.nonzero(reached.any(dim=0)).flatten()
        if len(rows):
            fields[name] = int(max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1)
    model.zero_grad(set_to_none=True)
    return fields


def _pair(value: object) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return (value, value)
    values = tuple(int(v) for v in value)  # type: ignore[union-attr]
    return values if len(values) == 2 else None


def _unique_slugs(names: list[str]) -> dict[str, str]:
    slugs: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "layer"
        slug, n = base, 2
        while slug.lower() in used or slug.lower() == "index":
            slug, n = f"{base}-{n}", n + 1
        used.add(slug.lower())
        slugs[name] = slug
    return slugs


def batchnorm_after(
    model: nn.Module, names: list[str], input_size: tuple[int, int, int], device: torch.device
) -> dict[str, tuple[str, nn.Module]]:
    """For each named conv, the (name, module) of the BatchNorm whose input is that conv's output.

    Found by tensor identity on one forward pass, so it works in any architecture (sequential,
    residual, Inception branches) without knowing how the model is written."""
    modules = dict(model.named_modules())
    norms = {n: m for n, m in modules.items() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    # id of a conv's output -> (the conv's name, the output). The output is kept alive for the pass:
    # a freed tensor's id is reused, and in DenseNet a later concatenation took a conv output's id,
    # so the BatchNorm reading it was matched to that conv.
    produced_by: dict[int, tuple[str, torch.Tensor]] = {}
    found: dict[str, tuple[str, nn.Module]] = {}

    def remember(name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            produced_by[id(output)] = (name, output)

        return hook

    def match(bn_name: str):
        def pre_hook(_module: nn.Module, inputs: tuple) -> None:
            source, output = produced_by.get(id(inputs[0]), (None, None))
            if output is inputs[0] and source not in found:
                found[source] = (bn_name, norms[bn_name])

        return pre_hook

    with torch.no_grad(), hooks(model, {n: remember(n) for n in names}, {n: match(n) for n in norms}):
        model(torch.zeros(1, *input_size, device=device))
    return found
