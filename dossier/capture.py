"""The activation-capture engine: forward hooks that are always removed, and one streaming pass.

Every analysis that needs activations plugs a consumer into the single pass over the data set,
so the data is read once per build and no analysis holds more than its running statistic needs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from dossier.data import ImageSet, collate_readable

log = logging.getLogger(__name__)

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

    def merge(self, other: "Consumer") -> None:
        """Take in the statistics of later images (another shard), as if fed after these."""


SHARD_IMAGES = 256  # images per shard of the data pass: whole batches, the same on every machine


def shard_ranges(count: int, batch_size: int) -> list[range]:
    """The data set cut into shards of whole batches. The cut does not depend on how many
    workers there are, so every build sums its statistics in the same order."""
    size = max(batch_size, SHARD_IMAGES // batch_size * batch_size)
    return [range(start, min(count, start + size)) for start in range(0, count, size)]


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
    )


@dataclass
class PassOptions:
    """How the data pass runs: batches, loader workers, precision."""

    device: torch.device
    batch_size: int
    loader_workers: int = 0
    mixed_precision: bool = False  # bf16 autocast for the forward pass (CUDA only)


class _Forward:
    """The model's forward on a batch, split in halves (and remembered) when the device runs out
    of memory, instead of dying: the results are the same, only slower."""

    def __init__(self, model: nn.Module, options: PassOptions, outputs: dict[str, torch.Tensor]) -> None:
        self.model, self.options, self.outputs = model, options, outputs
        self.rows: int | None = None  # the most images one forward has fitted, once one did not

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts, start = [], 0
        while start < len(images):
            part = images[start : start + (self.rows or len(images))]
            parts.append(self._one(part))  # may lower self.rows, and then split this part itself
            start += len(part)
        if len(parts) == 1:
            return parts[0]
        logits = torch.cat([p[0] for p in parts])
        return logits, {name: torch.cat([p[1][name] for p in parts]) for name in parts[0][1]}

    def _one(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        device = self.options.device
        try:
            self.outputs.clear()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.options.mixed_precision):
                logits = self.model(images)
            return logits.float(), {name: value.float() for name, value in self.outputs.items()}
        except Exception as error:
            if not is_out_of_memory(error) or len(images) < 2:
                raise
        self.outputs.clear()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        self.rows = len(images) // 2
        log.warning("out of memory on %s with %d images at once: retrying %d at a time", device, len(images), self.rows)
        return self(images)


def data_pass(
    model: nn.Module,
    dataset: ImageSet,
    layer_names: Sequence[str],
    options: PassOptions,
    consumers: Sequence[Consumer],
    indices: Sequence[int] | None = None,
    logits_layer: str | None = None,
    inputs_of: Sequence[str] = (),
) -> int:
    """Run the model over the data set (or the images at `indices`) once, feeding every
    consumer; return the images seen.

    `logits_layer` names a layer whose output is the model's output and that cannot be hooked
    (the classifier of a TorchScript model): its activations are the logits.
    """
    subset = dataset if indices is None else Subset(dataset, list(indices))
    loader = DataLoader(
        subset, batch_size=options.batch_size, shuffle=False, collate_fn=collate_readable,
        num_workers=options.loader_workers, pin_memory=options.device.type == "cuda",
    )
    seen = 0
    hooked = [name for name in layer_names if name != logits_layer]
    with torch.inference_mode(), recording(model, hooked, inputs_of) as outputs:
        forward = _Forward(model, options, outputs)
        for item in loader:
            if item is None:
                continue
            images, labels, batch_indices = (t.to(options.device, non_blocking=True) for t in item)
            logits, activations = forward(images)
            if logits_layer is not None:
                activations[logits_layer] = logits
            batch = Batch(images, labels, batch_indices, logits, activations)
            for consumer in consumers:
                consumer.update(batch)
            seen += len(labels)
    return seen
