"""The activation-capture engine: forward hooks that are always removed, and one streaming pass.

Every analysis that needs activations plugs a consumer into the single pass over the data set,
so the data is read once per build and no analysis holds more than its running statistic needs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from dossier.data import ImageSet, collate_readable


def input_key(name: str) -> str:
    """Where recording() keeps the input of a module named in `inputs_of`."""
    return f"{name} (input)"


@contextmanager
def recording(
    model: nn.Module, layer_names: Sequence[str], inputs_of: Sequence[str] = ()
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the output of each named module (and the input of each in `inputs_of`, under
    input_key(name)) into the yielded dict on every forward pass."""
    modules = dict(model.named_modules())
    outputs: dict[str, torch.Tensor] = {}
    handles = []

    def hook_for(name: str):
        def store(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            outputs[name] = output.detach()

        return store

    def input_hook_for(name: str):
        def store(_module: nn.Module, inputs: tuple) -> None:
            outputs[input_key(name)] = inputs[0].detach()

        return store

    try:
        for name in layer_names:
            handles.append(modules[name].register_forward_hook(hook_for(name)))
        for name in inputs_of:
            handles.append(modules[name].register_forward_pre_hook(input_hook_for(name)))
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class Batch:
    """One batch of the data pass: images, labels, dataset indices, logits, recorded activations."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    logits: torch.Tensor
    activations: dict[str, torch.Tensor]


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
