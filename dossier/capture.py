"""The activation-capture engine: forward hooks that are always removed, and one streaming pass.

Every analysis that needs activations plugs a consumer into the single pass over the data set,
so the data is read once per build and no analysis holds more than its running statistic needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from dossier.data import ImageSet, collate_readable

ForwardHook = Callable[[nn.Module, tuple, torch.Tensor], None]
PreHook = Callable[[nn.Module, tuple], None]


@contextmanager
def hooks(
    model: nn.Module, forward: Mapping[str, ForwardHook] | None = None, pre: Mapping[str, PreHook] | None = None
) -> Iterator[None]:
    """Forward hooks (after the module) and pre-hooks (before it) on the named modules, removed on
    exit whatever happens inside: the one place dossier instruments a model."""
    modules = dict(model.named_modules())
    handles = []
    try:
        for name, hook in (forward or {}).items():
            handles.append(modules[name].register_forward_hook(hook))
        for name, hook in (pre or {}).items():
            handles.append(modules[name].register_forward_pre_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


class _Stop(Exception):
    """Raised from a hook once the deepest wanted layer has run."""


def truncated_forward(
    model: nn.Module, layers: Sequence[str], images: torch.Tensor, stop: bool = True
) -> dict[str, torch.Tensor]:
    """Outputs of the named layers (with their autograd graph), stopping the forward pass once
    the last of them has run (unless stop is False: then the model's output is there too, as
    "(output)"): what follows the deepest layer is never computed."""
    outputs: dict[str, torch.Tensor] = {}
    wanted = set(layers)

    def keep(name: str) -> ForwardHook:
        def hook(_m: nn.Module, _i: tuple, output: torch.Tensor) -> None:
            outputs[name] = output
            if stop and wanted <= outputs.keys():
                raise _Stop

        return hook

    try:
        with hooks(model, {name: keep(name) for name in layers}):
            outputs["(output)"] = model(images)
    except _Stop:
        pass
    return outputs


def input_key(name: str) -> str:
    """Where recording() keeps the input of a module named in `inputs_of`."""
    return f"{name} (input)"


@contextmanager
def recording(
    model: nn.Module, layer_names: Sequence[str], inputs_of: Sequence[str] = (), detach: bool = True
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the output of each named module (and the input of each in `inputs_of`, under
    input_key(name)) into the yielded dict on every forward pass."""
    outputs: dict[str, torch.Tensor] = {}

    def store_output(name: str) -> ForwardHook:
        def store(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            outputs[name] = output.detach() if detach else output

        return store

    def store_input(name: str) -> PreHook:
        def store(_module: nn.Module, inputs: tuple) -> None:
            outputs[input_key(name)] = inputs[0].detach() if detach else inputs[0]

        return store

    forward = {name: store_output(name) for name in layer_names}
    pre = {name: store_input(name) for name in inputs_of}
    with hooks(model, forward, pre):
        yield outputs


@dataclass
class Batch:
    """One batch of the data pass: images, labels, dataset indices, logits, recorded activations."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    logits: torch.Tensor
    activations: dict[str, torch.Tensor]

    def rows(self, mask: torch.Tensor) -> "Batch":
        """The batch restricted to the rows where mask is true."""
        return Batch(
            self.images[mask], self.labels[mask], self.indices[mask], self.logits[mask],
            {name: value[mask] for name, value in self.activations.items()},
        )


class Consumer(Protocol):
    def update(self, batch: Batch) -> None: ...


def data_pass(
    model: nn.Module,
    dataset: ImageSet,
    layer_names: Sequence[str],
    device: torch.device,
    batch_size: int,
    consumers: Sequence[Consumer],
    logits_layer: str | None = None,
    inputs_of: Sequence[str] = (),
) -> int:
    """Run the model over the data set once, feeding every consumer; return the images seen.

    `logits_layer` names a layer whose output is the model's output and that cannot be hooked
    (the classifier of a TorchScript model): its activations are the logits.
    """
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_readable)
    seen = 0
    hooked = [name for name in layer_names if name != logits_layer]
    with torch.inference_mode(), recording(model, hooked, inputs_of) as outputs:
        for item in tqdm(loader, desc="data pass", unit="batch", leave=False):
            if item is None:
                continue
            images, labels, indices = (t.to(device) for t in item)
            outputs.clear()
            logits = model(images)
            activations = dict(outputs)
            if logits_layer is not None:
                activations[logits_layer] = logits
            batch = Batch(images, labels, indices, logits, activations)
            for consumer in consumers:
                consumer.update(batch)
            seen += len(labels)
    return seen
