"""What changed between two dossiers' results: accuracy overall, per class and per image, and each
layer's numbers (A, B and B − A). Computed from the cached results of both builds and the
predictions of the joint pass; nothing here runs a model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from dossier.analyses.model_card import ModelCardResult
from dossier.data import ImageSet
from dossier.layers import LayerInfo
from dossier.results import NOT_EXPORTED
from dossier.thumbnails import thumbnails

FIXED, BROKEN, CHANGED = "fixed by B", "broken by B", "changed, wrong in both"


@dataclass(frozen=True)
class Change:
    a: float | None
    b: float | None
    difference: float | None  # b − a; None when either is missing


def change(a: float | None, b: float | None) -> Change:
    return Change(a, b, None if a is None or b is None else b - a)


@dataclass(frozen=True)
class ChangedPrediction:
    index: int  # data-set index
    name: str
    label: int
    predicted_a: int
    predicted_b: int
    kind: str  # FIXED, BROKEN or CHANGED
    thumbnail: np.ndarray = field(metadata=NOT_EXPORTED)


@dataclass(frozen=True)
class ClassChange:
    label: int
    images: int
    accuracy: Change
    fixed: list[int]  # data-set indices B gets right and A got wrong
    broken: list[int]  # A got right and B gets wrong
    changed: list[int]  # wrong in both, with different answers


@dataclass(frozen=True)
class AccuracyChanges:
    images: int
    top1: Change
    top5: Change
    agreement: float  # share of images both models give the same answer
    classes: list[ClassChange]
    confusion_a: list[list[int]]  # rows: true class, columns: predicted class
    confusion_b: list[list[int]]
    confusion_change: list[list[int]]  # B − A
    predictions: list[ChangedPrediction]  # every image whose prediction changed

    def count(self, kind: str) -> int:
        return sum(p.kind == kind for p in self.predictions)


def accuracy_changes(
    card_a: ModelCardResult, card_b: ModelCardResult, dataset: ImageSet,
    indices: np.ndarray, labels: np.ndarray, predicted_a: np.ndarray, predicted_b: np.ndarray,
) -> AccuracyChanges:
    """The model cards side by side, and every image whose prediction changed."""
    moved = np.flatnonzero(predicted_a != predicted_b)
    kept, pictures = thumbnails(dataset, [int(indices[row]) for row in moved])
    picture = dict(zip(kept, pictures))
    predictions = [
        ChangedPrediction(
            index=int(indices[row]), name=dataset.names[int(indices[row])], label=int(labels[row]),
            predicted_a=int(predicted_a[row]), predicted_b=int(predicted_b[row]),
            kind=_kind(labels[row], predicted_a[row], predicted_b[row]), thumbnail=picture[int(indices[row])],
        )
        for row in moved
        if int(indices[row]) in picture
    ]
    classes = [
        ClassChange(
            label=c,
            images=int(card_a.per_class_images[c]),
            accuracy=change(card_a.per_class_accuracy[c], card_b.per_class_accuracy[c]),
            fixed=[p.index for p in predictions if p.label == c and p.kind == FIXED],
            broken=[p.index for p in predictions if p.label == c and p.kind == BROKEN],
            changed=[p.index for p in predictions if p.label == c and p.kind == CHANGED],
        )
        for c in range(len(card_a.per_class_accuracy))
    ]
    confusion_a, confusion_b = np.array(card_a.confusion), np.array(card_b.confusion)
    return AccuracyChanges(
        images=card_a.images,
        top1=change(card_a.top1, card_b.top1),
        top5=change(card_a.top5, card_b.top5),
        agreement=float((predicted_a == predicted_b).mean()) if len(labels) else 1.0,
        classes=classes,
        confusion_a=confusion_a.tolist(),
        confusion_b=confusion_b.tolist(),
        confusion_change=(confusion_b - confusion_a).tolist(),
        predictions=predictions,
    )


def _kind(label: int, a: int, b: int) -> str:
    if b == label:
        return FIXED
    return BROKEN if a == label else CHANGED


def _entry(results: dict[str, Any], analysis: str, layer: str) -> Any:
    result = results.get(analysis)
    return result.for_layer(layer) if result is not None else None


def _read(analysis: str, value: Callable[[Any], float | None]) -> Callable[[dict[str, Any], str], float | None]:
    def reader(results: dict[str, Any], layer: str) -> float | None:
        entry = _entry(results, analysis, layer)
        return None if entry is None else value(entry)

    return reader


def _colour_blind(gallery: Any) -> float | None:
    flags = [card.colour_blind for card in gallery.units]
    return None if not flags or flags[0] is None else sum(map(bool, flags)) / len(flags)


# Per-layer numbers compared: key -> (label, how to read it from a dossier's results). Shares are
# of the layer's units; a reader returns None where the analysis did not run or skipped the layer.
METRICS: dict[str, tuple[str, Callable[[dict[str, Any], str], float | None]]] = {
    "purity": ("purity", _read("purity", lambda e: e.purity)),
    "nmi": ("NMI", _read("purity", lambda e: e.nmi)),
    "ari": ("ARI", _read("purity", lambda e: e.ari)),
    "linear_probe": ("linear probe", _read("probes", lambda e: e.accuracy["logistic regression"])),
    "dead": ("dead", _read("neuron_types", lambda e: e.dead / e.units if e.border_activations is not None else None)),
    "border": ("border-aware", _read("neuron_types", lambda e: e.border_weights / e.units)),
    "selective": ("class-selective", _read("neuron_types", lambda e: e.selective / e.units if e.selective is not None else None)),
    "colour_blind": ("colour-blind", _read("galleries", _colour_blind)),
    "kernel_clusters": ("kernel clusters", _read("kernel_clusters", lambda e: None if e.skipped else e.clusters)),
    "ring_score": ("ring score", _read("tda_rings", lambda e: None if e.skipped else e.ring_score)),
}
SHARES = ("dead", "border", "selective", "colour_blind")  # shown as percentages


@dataclass(frozen=True)
class LayerChange:
    layer: str
    depth_a: int | None  # position among A's recorded layers (1 = first); None: not in A
    depth_b: int | None
    type_a: str | None
    type_b: str | None
    shape_a: list[int] | None
    shape_b: list[int] | None
    metrics: dict[str, Change]  # METRICS key -> A, B, B − A


def layer_changes(
    layers_a: list[LayerInfo], layers_b: list[LayerInfo], results_a: dict[str, Any], results_b: dict[str, Any]
) -> list[LayerChange]:
    """Layers matched by name, in A's network order with B's own layers after the layer they
    follow in B."""
    by_name_a = {layer.name: (depth, layer) for depth, layer in enumerate(layers_a, start=1)}
    by_name_b = {layer.name: (depth, layer) for depth, layer in enumerate(layers_b, start=1)}
    changes = []
    for name in merged_order([layer.name for layer in layers_a], [layer.name for layer in layers_b]):
        depth_a, info_a = by_name_a.get(name, (None, None))
        depth_b, info_b = by_name_b.get(name, (None, None))
        metrics = {
            key: change(read(results_a, name) if info_a else None, read(results_b, name) if info_b else None)
            for key, (_, read) in METRICS.items()
        }
        changes.append(
            LayerChange(
                layer=name, depth_a=depth_a, depth_b=depth_b,
                type_a=info_a.type if info_a else None, type_b=info_b.type if info_b else None,
                shape_a=list(info_a.output_shape) if info_a and info_a.output_shape else None,
                shape_b=list(info_b.output_shape) if info_b and info_b.output_shape else None,
                metrics=metrics,
            )
        )
    return changes


def merged_order(names_a: list[str], names_b: list[str]) -> list[str]:
    """A's names in order, each of B's own names placed after the name it follows in B."""
    merged = list(names_a)
    for position, name in enumerate(names_b):
        if name in merged:
            continue
        before = next((b for b in reversed(names_b[:position]) if b in merged), None)
        merged.insert(merged.index(before) + 1 if before is not None else 0, name)
    return merged
