"""The comparison of two models, as a typed result: everything comparison.json holds and the
pages show. Built from both dossiers' results and one joint pass over the data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dossier.analyses import BuildContext, finding
from dossier.compare.changes import BROKEN, FIXED, AccuracyChanges, LayerChange, accuracy_changes, layer_changes
from dossier.compare.heatmaps import HeatmapChanges, chosen_rows, compare_heatmaps
from dossier.compare.matching import UnitPair, Unpartnered, correlation, linear_cka, match_units
from dossier.compare.stream import Streamed, layer_pairs, stream, unit_layers
from dossier.plan import Applied, Plan
from dossier.provenance import Stopwatch


SAME_REPRESENTATION = 0.9995  # a linear CKA that prints as 1.000


@dataclass(frozen=True)
class Side:
    """One of the two models: its build context and its dossier's results."""

    ctx: BuildContext
    results: dict[str, Any]
    failures: dict[str, str]
    not_applicable: dict[str, str]
    cached: list[str]
    plan: Plan | None  # the time budget's plan, when its results were (re)computed under one


@dataclass(frozen=True)
class ModelSummary:
    config_file: str
    config_text: str
    title: str
    model_source: str
    weights_source: str
    weights_sha256: str | None
    trained: bool
    layers: list[str]
    cached_analyses: list[str]  # read from the result cache rather than computed
    failures: dict[str, str]
    not_applicable: dict[str, str]
    reductions: list[Applied]  # what its time budget reduced: its numbers are those of the reduced settings
    finding: str | None  # its dossier's finding paragraph


@dataclass(frozen=True)
class LayerMatching:
    layer: str
    units_a: int
    units_b: int
    partnered: int  # A units whose assigned B unit correlates at or above the threshold
    same_index: int  # of those, units that kept their index
    mean_correlation: float | None  # over every assigned pair
    cka: float | None
    pairs: list[UnitPair]  # most changed (1 − correlation) first
    lost: list[Unpartnered]  # A's units without a good partner
    new: list[Unpartnered]  # B's


@dataclass(frozen=True)
class LayerSimilarity:
    layers_a: list[str]
    layers_b: list[str]
    cka: list[list[float | None]]  # A layer × B layer; None where not computed or a layer is constant
    complete: bool  # False: too many units for every pair, only same-name layers were compared


@dataclass(frozen=True)
class Comparison:
    a: ModelSummary
    b: ModelSummary
    data_source: str
    data_sha256: str
    class_names: list[str]
    threshold: float  # unit correlation that counts as a partner
    accuracy: AccuracyChanges
    layers: list[LayerChange]  # matched by name, in A's order with B's own layers where they sit in B
    only_in_a: list[str]
    only_in_b: list[str]
    matching: list[LayerMatching]
    similarity: LayerSimilarity
    heatmaps: HeatmapChanges
    finding: str


def compare_models(a: Side, b: Side, threshold: float, heatmap_images: int, watch: Stopwatch) -> Comparison:
    """Every number of the comparison; the models run once over the data together, then once
    more for the explained images."""
    units_a, units_b = unit_layers(a.ctx), unit_layers(b.ctx)
    pairs = layer_pairs(units_a, units_b)
    with watch.stage("joint pass"):
        streamed = stream(a.ctx, b.ctx, pairs)
    with watch.stage("unit matching"):
        matching = [
            _match_layer(streamed, name, units_a[name], units_b[name], threshold)
            for name in units_a
            if name in units_b and streamed.moments.seen("a", name) and streamed.moments.seen("b", name)
        ]
        similarity = _similarity(streamed, list(units_a), list(units_b), set(pairs))
    with watch.stage("heatmaps"):
        rows = chosen_rows(streamed.labels, streamed.predicted_a, streamed.predicted_b, heatmap_images)
        heatmaps = compare_heatmaps(
            a.ctx, b.ctx, streamed.indices[rows], streamed.labels[rows], streamed.predicted_a[rows], streamed.predicted_b[rows]
        )
    accuracy = accuracy_changes(
        a.results["model_card"], b.results["model_card"], a.ctx.dataset,
        streamed.indices, streamed.labels, streamed.predicted_a, streamed.predicted_b,
    )
    names_a, names_b = [layer.name for layer in a.ctx.layers], [layer.name for layer in b.ctx.layers]
    return Comparison(
        a=_summary(a),
        b=_summary(b),
        data_source=a.ctx.dataset.source,
        data_sha256=a.ctx.dataset.fingerprint,
        class_names=list(a.ctx.dataset.class_names),
        threshold=threshold,
        accuracy=accuracy,
        layers=layer_changes(a.ctx.layers, b.ctx.layers, a.results, b.results),
        only_in_a=[name for name in names_a if name not in names_b],
        only_in_b=[name for name in names_b if name not in names_a],
        matching=matching,
        similarity=similarity,
        heatmaps=heatmaps,
        finding=comparison_finding(accuracy, matching, heatmaps, a.ctx.dataset.class_names, threshold),
    )


def _match_layer(streamed: Streamed, name: str, units_a: int, units_b: int, threshold: float) -> LayerMatching:
    matched = match_units(correlation(streamed.moments, name, name), threshold)
    return LayerMatching(
        layer=name, units_a=units_a, units_b=units_b, partnered=len(matched.pairs), same_index=matched.same_index,
        mean_correlation=matched.mean_correlation, cka=linear_cka(streamed.moments, name, name),
        pairs=matched.pairs, lost=matched.lost, new=matched.new,
    )


def _similarity(streamed: Streamed, names_a: list[str], names_b: list[str], pairs: set[tuple[str, str]]) -> LayerSimilarity:
    moments = streamed.moments

    def cka(a: str, b: str) -> float | None:
        if (a, b) not in pairs or not moments.seen("a", a) or not moments.seen("b", b):
            return None
        return linear_cka(moments, a, b)

    return LayerSimilarity(
        names_a, names_b, [[cka(a, b) for b in names_b] for a in names_a], complete=len(pairs) == len(names_a) * len(names_b)
    )


def _summary(side: Side) -> ModelSummary:
    config, model = side.ctx.config, side.ctx.model
    spec = config.model
    return ModelSummary(
        config_file=config.path.name,
        config_text=config.path.read_text(encoding="utf-8"),
        title=config.display_title,
        model_source=f"{spec.source}: {getattr(spec, spec.source)}",
        weights_source=model.weights_source,
        weights_sha256=model.weights_sha256,
        trained=model.trained,
        layers=[layer.name for layer in side.ctx.layers],
        cached_analyses=side.cached,
        failures=side.failures,
        not_applicable=side.not_applicable,
        reductions=list(side.plan.reductions) if side.plan is not None else [],
        finding=finding(side.results),
    )


def comparison_finding(
    accuracy: AccuracyChanges, matching: list[LayerMatching], heatmaps: HeatmapChanges, class_names: list[str], threshold: float
) -> str:
    """The index's paragraph, written from the numbers: accuracy, the class that moved most, how
    many units kept a partner, the least similar layer, how far the explanations moved."""
    top1 = accuracy.top1
    sentences = [
        f"B gets {top1.b:.1%} of the {accuracy.images} images right, A {top1.a:.1%} ({100 * top1.difference:+.1f} points); "
        f"{accuracy.count(FIXED)} image(s) fixed by B, {accuracy.count(BROKEN)} broken, "
        f"{1 - accuracy.agreement:.1%} of the predictions changed."
    ]
    moved = [c for c in accuracy.classes if c.accuracy.difference]
    if moved:
        most = max(moved, key=lambda c: abs(c.accuracy.difference))
        sentences.append(
            f"Class {class_names[most.label]} moved most: {most.accuracy.a:.1%} → {most.accuracy.b:.1%}."
        )
    if matching:
        units = sum(m.units_a for m in matching)
        partnered = sum(m.partnered for m in matching)
        sentences.append(
            f"{partnered} of A's {units} units in same-name layers have a partner in B correlating at least {threshold:g}."
        )
        scored = [m for m in matching if m.cka is not None]
        least = min(scored, key=lambda m: m.cka) if scored else None
        if least is not None and least.cka < SAME_REPRESENTATION:
            sentences.append(f"The least similar layer is {least.layer} (linear CKA {least.cka:.3f}).")
        elif least is not None:
            sentences.append("Every same-name layer has linear CKA 1.000: the same representation.")
    if heatmaps.mean_rank_correlation is not None:
        sentences.append(
            f"Explanations of {len(heatmaps.images)} images keep a mean rank correlation of {heatmaps.mean_rank_correlation:.3f}."
        )
    return " ".join(sentences)

