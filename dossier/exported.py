"""torch.export programs (`.pt2` files) as ordinary nn.Modules with their original module names.

`torch.export.unflatten` restores the module hierarchy of an exported program, but as
InterpreterModules: they are not nn.Conv2d, cannot be deep-copied (their graphs hold fake tensors)
and cannot be traced by torch.fx. So each one is rebuilt: a leaf that was a torch.nn layer calling
one operator becomes that layer again (an nn.Conv2d holding the exported weights, ...), and every
other module becomes an fx.GraphModule running its exported graph under its original class name.
Forward hooks, `copy.deepcopy`, `reset_parameters` and torch.fx then work as on the eager model,
so an exported model gets every analysis a torchvision model gets.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn
from torch.export import ExportedProgram
from torch.fx.operator_schemas import normalize_function

from dossier.errors import ModelError

_aten = torch.ops.aten
_DYNAMIC_BATCH = "dynamic_shapes=({0: torch.export.Dim('batch')},) and an example batch of 2 or more"


def _conv2d(k: dict[str, Any]) -> nn.Module:
    weight, groups = k["weight"], k["groups"]
    return nn.Conv2d(
        weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]), k["stride"], k["padding"],
        k["dilation"], groups, bias=k["bias"] is not None, device="meta",
    )


def _linear(k: dict[str, Any]) -> nn.Module:
    weight = k["weight"]
    return nn.Linear(weight.shape[1], weight.shape[0], bias=k["bias"] is not None, device="meta")


def _batch_norm(k: dict[str, Any]) -> nn.Module | None:
    if k["training"] or k["running_mean"] is None:  # batch statistics: not what an eval BatchNorm2d does
        return None
    return nn.BatchNorm2d(
        k["running_mean"].shape[0], k["eps"], k["momentum"], affine=k["weight"] is not None, device="meta"
    )


def _max_pool2d(k: dict[str, Any]) -> nn.Module:
    # aten's empty stride means "the kernel size", nn's None does.
    return nn.MaxPool2d(
        k["kernel_size"], k["stride"] or None, k["padding"], k["dilation"], ceil_mode=k["ceil_mode"]
    )


def _avg_pool2d(k: dict[str, Any]) -> nn.Module:
    return nn.AvgPool2d(
        k["kernel_size"], k["stride"] or None, k["padding"], k["ceil_mode"], k["count_include_pad"],
        k["divisor_override"],
    )


# (original class, the one operator its exported graph calls) -> the layer rebuilt from that call's
# arguments, or None when the call is not what the layer does in eval mode. The weights are the
# exported ones (created on the meta device, then assigned); dossier reads these layer types by
# class (conv weights and kernels, BatchNorm merging, zennit's relevance rules).
_LEAVES: dict[tuple[str, Any], Callable[[dict[str, Any]], nn.Module | None]] = {
    ("torch.nn.modules.conv.Conv2d", _aten.conv2d.default): _conv2d,
    ("torch.nn.modules.conv.Conv2d", _aten.conv2d.padding): _conv2d,
    ("torch.nn.modules.linear.Linear", _aten.linear.default): _linear,
    ("torch.nn.modules.batchnorm.BatchNorm2d", _aten.batch_norm.default): _batch_norm,
    ("torch.nn.modules.activation.ReLU", _aten.relu.default): lambda k: nn.ReLU(),
    ("torch.nn.modules.activation.ReLU", _aten.relu_.default): lambda k: nn.ReLU(inplace=True),
    ("torch.nn.modules.pooling.MaxPool2d", _aten.max_pool2d.default): _max_pool2d,
    ("torch.nn.modules.pooling.AvgPool2d", _aten.avg_pool2d.default): _avg_pool2d,
    ("torch.nn.modules.pooling.AdaptiveAvgPool2d", _aten.adaptive_avg_pool2d.default): (
        lambda k: nn.AdaptiveAvgPool2d(k["output_size"])
    ),
}


def load_exported(path: Path, input_size: tuple[int, int, int]) -> nn.Module:
    """The program saved at path as an nn.Module in eval mode, checked against the input size."""
    program = read_program(path)
    check_signature(program, path, input_size)
    return as_module(program).eval()


def read_program(path: Path) -> ExportedProgram:
    if not path.is_file():
        raise ModelError(f"model.export: file '{path}' not found")
    try:
        with _quiet("torch.export"):  # it logs a traceback before raising on a foreign file
            return torch.export.load(path)
    except Exception:  # a foreign or corrupt file fails anywhere in the archive reader
        raise ModelError(f"model.export: '{path}' is not a program saved with torch.export.save") from None


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_signature(program: ExportedProgram, path: Path, input_size: tuple[int, int, int]) -> None:
    """One image batch in, one tensor out, with the configured image size and any batch size.

    The rebuilt module runs the exported graph without torch.export's input guards, so what the
    guards would have refused is refused here, with what to do about it."""
    signature = program.graph_signature
    inputs, outputs = len(signature.user_inputs), len(signature.user_outputs)
    if inputs != 1 or outputs != 1 or not program.call_spec.out_spec.is_leaf():
        raise ModelError(
            f"model.export: '{path}' takes {inputs} input(s) and returns {outputs} output(s); "
            "dossier needs one image batch in and one tensor of class scores out"
        )
    placeholder = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == signature.user_inputs[0])
    value = placeholder.meta.get("val")
    shape = tuple(value.shape) if isinstance(value, torch.Tensor) else ()
    static = [d if isinstance(d, int) else None for d in shape[1:]]
    if len(shape) != 4 or any(d is not None and d != want for d, want in zip(static, input_size)):
        raise ModelError(
            f"model.export: '{path}' was exported for inputs of shape {_shape_text(shape)} but "
            f"model.input_size is {list(input_size)}; exported programs keep the shapes they were "
            "exported with: export with an example input of the configured size"
        )
    if isinstance(shape[0], int):
        raise ModelError(
            f"model.export: '{path}' was exported with a static batch size of {shape[0]}, but dossier runs "
            f"batches of other sizes: export with {_DYNAMIC_BATCH}"
        )


def _shape_text(shape: tuple) -> str:
    """(batch, 3, 224, 224): dynamic sizes by what they are, not by torch's symbol names."""
    sizes = [str(d) if isinstance(d, int) else ("batch" if i == 0 else "*") for i, d in enumerate(shape)]
    return f"({', '.join(sizes)})"


def as_module(program: ExportedProgram) -> nn.Module:
    """The program's module hierarchy, with its original names, as ordinary nn.Modules."""
    unflat = torch.export.unflatten(program)
    module = _rebuild(unflat, "", _original_types(program))
    # The root graph returns the flat outputs; check_signature made sure there is exactly one.
    output = next(n for n in module.graph.nodes if n.op == "output")
    (logits,) = output.args[0]
    output.args = (logits,)
    module.recompile()
    return module


def _original_types(program: ExportedProgram) -> dict[str, str]:
    """Module path -> qualified name of the class it was, from the graph's module-stack metadata."""
    types: dict[str, str] = {}
    for node in program.graph.nodes:
        for path, kind in node.meta.get("nn_module_stack", {}).values():
            types.setdefault(path, kind if isinstance(kind, str) else f"{kind.__module__}.{kind.__qualname__}")
    return types


def _rebuild(module: nn.Module, path: str, types: dict[str, str]) -> fx.GraphModule | nn.Module:
    kind = types.get(re.sub(r"@\d+(?=\.|$)", "", path), "")  # unflatten names a second call "name@1"
    graph = getattr(module, "graph", None)
    if not isinstance(graph, fx.Graph):
        raise ModelError(f"model.export: cannot rebuild module '{path}' ({type(module).__name__}) of the program")
    if not any(True for _ in module.children()):
        layer = _leaf(module, graph, kind)
        if layer is not None:
            return layer
    holder = nn.Module()
    for name, child in module.named_children():
        holder.add_module(name, _rebuild(child, f"{path}.{name}" if path else name, types))
    copied = fx.Graph()
    copied.output(copied.graph_copy(graph, {}))
    for node in copied.nodes:
        node.meta = {}  # fake tensors in there make the module impossible to deep-copy
        if node.op == "get_attr" and not hasattr(holder, node.target):
            # Parameters stay parameters; buffers and constants become buffers (they follow .to()).
            setattr(holder, node.target, getattr(module, node.target))
    name = kind.rsplit(".", 1)[-1] or "Module"  # no type recorded: a module that calls no operator
    return fx.GraphModule(holder, copied, class_name=name)


def _leaf(module: nn.Module, graph: fx.Graph, kind: str) -> nn.Module | None:
    """The torch.nn layer this leaf was, rebuilt from its single operator call; None if it is not
    a layer dossier knows or its graph is more than the layer's one call on the layer's own state."""
    calls = [n for n in graph.nodes if n.op == "call_function"]
    if len(calls) != 1 or (kind, calls[0].target) not in _LEAVES:
        return None
    normal = normalize_function(calls[0].target, calls[0].args, calls[0].kwargs, normalize_to_only_use_kwargs=True)
    if normal is None:
        return None
    arguments = dict(normal.kwargs)
    for key, value in arguments.items():
        if isinstance(value, fx.Node) and value.op == "get_attr":
            if value.target != key:
                return None
            arguments[key] = getattr(module, key)
    layer = _LEAVES[(kind, calls[0].target)](arguments)
    if layer is None:
        return None
    try:
        layer.load_state_dict(module.state_dict(), strict=True, assign=True)
    except RuntimeError:  # the leaf's state is not the layer's: keep running its graph instead
        return None
    return layer
