"""Neuron types per conv layer (METHODS §1; seed 001 Algorithm 4; seed 004 §4.1.1, §4.2).

One row per unit: dead, border-aware from the weights (pairwise Kolmogorov–Smirnov spreads of
kernel columns and rows) with a confirmation from activations (each border of the feature map
against its interior), class selectivity, and colour-blind (filled by the feature galleries).

Units are judged on ReLU(BN(conv)) when a BatchNorm takes the conv's output, else on ReLU(conv):
the conv → BN → ReLU block of most CNNs. The recorded conv output itself is pre-activation.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from scipy.stats import ks_2samp
from torch import nn

from dossier.analyses.base import NO_CONV_LAYERS, Analysis, BuildContext, register
from dossier.capture import Batch
from dossier.layers import LayerInfo, is_conv2d
from dossier.report.kit import CheckResult, Column, CrossPage, SectionView, UnitLabel, ViewKit, judged
from dossier.report.pictures import type_share_chart
from dossier.results import ByLayer
from dossier.settings import SectionSettings, StrictModel
from dossier.plan import Cost, Probe
from dossier.weights import conv_layer_weights, conv_weight

SIDES = ("top", "bottom", "left", "right")
PAGE = CrossPage("neuron-types.html", "Neuron types by depth")


class NeuronTypesChecks(StrictModel):
    max_dead_share: float = Field(0.5, ge=0, le=1, description="a layer with more dead units than this share fails")


class NeuronTypesSettings(SectionSettings):
    border_threshold: float = Field(0.5, gt=0, le=1, description="KS spread that makes a unit border-aware (seed: 0.5)")
    border_rule: Literal["either", "both"] = Field(
        "either", description="either: a column or a row spread; both: the seed's literal rule"
    )
    border_activation_ratio: float = Field(
        1.5, gt=0, description="border ÷ interior mean activation confirming a border unit"
    )
    dead_epsilon: float = Field(1e-6, ge=0, description="a unit whose activation never exceeds this is dead")
    selectivity_threshold: float = Field(0.5, ge=0, le=1, description="class selectivity index of a class-selective unit")


@dataclass(frozen=True)
class UnitType:
    unit: int
    dead: bool | None  # None: no activations recorded
    column_spread: float | None  # None: kernel smaller than 3×3
    row_spread: float | None
    border_weights: bool
    border_activation_ratio: float | None  # strongest border side ÷ interior, mean activation
    border_side: str | None
    border_activations: bool | None
    selectivity: float | None
    top_class: int | None


@dataclass(frozen=True)
class LayerTypes:
    layer: str
    units: int
    activation: str  # what the activation tests looked at, e.g. "ReLU(bn1(conv1))"
    dead: int
    border_weights: int
    border_activations: int | None
    border_agreement: float | None  # share of units where both border tests agree
    selective: int | None
    mean_selectivity: float | None
    rows: list[UnitType]


@dataclass(frozen=True)
class NeuronTypesResult(ByLayer):
    threshold: float
    rule: str
    activation_ratio: float
    selectivity_threshold: float
    layers: list[LayerTypes]

    def most_selective(self, layer: str) -> list[int]:
        """The layer's units by class selectivity, highest first (dead units have none)."""
        entry = self.for_layer(layer)
        rows = [r for r in entry.rows if r.selectivity is not None] if entry else []
        return [r.unit for r in sorted(rows, key=lambda r: -r.selectivity)]


def ks_spreads(weight: np.ndarray) -> tuple[float, float] | None:
    """(column spread, row spread) of one unit's weights (C_in × kh × kw), seed Algorithm 4.

    Values of each kernel column (row) are pooled over input channels; every pair of columns
    (rows) is compared with the two-sample KS statistic; spread = max − min over the pairs.
    """
    _, height, width = weight.shape
    if height < 3 or width < 3:
        return None
    columns = [weight[:, :, j].ravel() for j in range(width)]
    rows = [weight[:, i, :].ravel() for i in range(height)]
    return _spread(columns), _spread(rows)


def _spread(samples: list[np.ndarray]) -> float:
    statistics = [ks_2samp(a, b).statistic for a, b in combinations(samples, 2)]
    return float(max(statistics) - min(statistics))


def is_border_aware(spreads: tuple[float, float] | None, threshold: float, rule: str) -> bool:
    """`either`: a column or a row spread reaches the threshold; `both`: the seed's literal rule.

    A unit that differs only in its left column has a large column spread but a small row spread
    (every row pools one value of that column), so under `both` it is never flagged.
    """
    if spreads is None:
        return False
    reached = [spread >= threshold for spread in spreads]
    return any(reached) if rule == "either" else all(reached)


def selectivity_index(class_means: np.ndarray) -> tuple[float, int]:
    """(μ_max − μ_rest) / (μ_max + μ_rest) of non-negative class-mean activations (Morcos 2018)."""
    top = int(np.argmax(class_means))
    rest = float(np.delete(class_means, top).mean()) if len(class_means) > 1 else 0.0
    total = class_means[top] + rest
    return (float((class_means[top] - rest) / total) if total > 0 else 0.0), top


class _UnitStatistics:
    """Running per-unit statistics of ReLU(BN(conv)) activations; memory independent of N."""

    def __init__(self, layers: list[str], norms: dict[str, tuple[str, nn.Module]], classes: int) -> None:
        self.layers = layers
        self.norms = norms
        self.classes = classes
        self.maximum: dict[str, torch.Tensor] = {}
        self.class_sums: dict[str, torch.Tensor] = {}
        self.square_sum: dict[str, torch.Tensor] = {}
        self.side_sums: dict[str, torch.Tensor] = {}  # 4 × units
        self.interior_sum: dict[str, torch.Tensor] = {}
        self.class_counts = torch.zeros(classes, dtype=torch.float64)
        self.count = 0
        self.border_pixels: dict[str, tuple[int, int]] = {}

    def activation(self, name: str, x: torch.Tensor) -> torch.Tensor:
        norm = self.norms.get(name)
        return torch.relu(norm[1](x) if norm is not None else x).double()

    def update(self, batch: Batch) -> None:
        labels = batch.labels.cpu()
        self.class_counts += torch.bincount(labels, minlength=self.classes).double()
        self.count += len(labels)
        for name in self.layers:
            if name not in batch.activations:
                continue
            a = self.activation(name, batch.activations[name]).cpu()
            means = a.mean(dim=(2, 3))
            peak = a.amax(dim=(0, 2, 3))
            self.maximum[name] = torch.maximum(self.maximum[name], peak) if name in self.maximum else peak
            sums = torch.zeros(self.classes, a.shape[1], dtype=torch.float64).index_add_(0, labels, means)
            self._add(self.class_sums, name, sums)
            self._add(self.square_sum, name, (means**2).sum(dim=0))
            if a.shape[2] >= 3 and a.shape[3] >= 3:
                sides = torch.stack(
                    [a[:, :, 0, :].mean(2), a[:, :, -1, :].mean(2), a[:, :, :, 0].mean(2), a[:, :, :, -1].mean(2)]
                ).sum(dim=1)
                self._add(self.side_sums, name, sides)
                self._add(self.interior_sum, name, a[:, :, 1:-1, 1:-1].mean(dim=(2, 3)).sum(dim=0))

    def merge(self, other: "_UnitStatistics") -> None:
        """Add the statistics of later images (another shard of the data pass)."""
        self.class_counts += other.class_counts
        self.count += other.count
        for name, peak in other.maximum.items():
            self.maximum[name] = torch.maximum(self.maximum[name], peak) if name in self.maximum else peak
        for mine, theirs in (
            (self.class_sums, other.class_sums), (self.square_sum, other.square_sum),
            (self.side_sums, other.side_sums), (self.interior_sum, other.interior_sum),
        ):
            for name, value in theirs.items():
                self._add(mine, name, value)

    @staticmethod
    def _add(store: dict[str, torch.Tensor], name: str, value: torch.Tensor) -> None:
        store[name] = store[name] + value if name in store else value


@register
class NeuronTypes(Analysis):
    name = "neuron_types"
    title = "Neuron types"
    order = 10
    result_type = NeuronTypesResult
    settings_type = NeuronTypesSettings
    check_settings = NeuronTypesChecks
    page = PAGE
    unit_anchor_rank = 1

    def applies(self, ctx: BuildContext) -> str | None:
        modules = dict(ctx.model.module.named_modules())
        return None if any(is_conv2d(modules[layer.name]) for layer in ctx.layers) else NO_CONV_LAYERS

    def consumer(self, ctx: BuildContext) -> _UnitStatistics | None:
        convs = [layer.name for layer in ctx.conv_layers]
        if not convs or not ctx.hookable:
            return None
        return _UnitStatistics(convs, ctx.conv_norms, len(ctx.dataset.class_names))

    def cost(self, ctx: BuildContext, probe: Probe, settings: NeuronTypesSettings) -> Cost | None:
        weights = [w for _, w in conv_layer_weights(ctx.model.module, [layer.name for layer in ctx.layers])]
        spatial = [w for w in weights if w.shape[2] >= 3 and w.shape[3] >= 3]
        if not spatial:
            return None
        widest = max(spatial, key=lambda w: w[0].size)
        units = widest[:8]
        per_unit = probe.seconds(("ks", widest.shape), lambda: [ks_spreads(unit) for unit in units]) / len(units)
        # a KS test sorts its samples: about linear in a unit's weights
        seconds = sum(len(w) * per_unit * w[0].size / widest[0].size for w in spatial)
        return Cost(f"{sum(len(w) for w in spatial):,} units × 6 Kolmogorov–Smirnov spreads", seconds)

    def finish(self, ctx: BuildContext, consumer: _UnitStatistics | None) -> NeuronTypesResult:
        settings = self.settings(ctx.config)
        modules = dict(ctx.model.module.named_modules())
        convs = [layer for layer in ctx.layers if is_conv2d(modules[layer.name])]
        spreads = ctx.map(_unit_spreads, [conv_weight(modules[layer.name]) for layer in convs], cpu=True, desc="KS tests")
        layers = [self._layer(layer, weight_spreads, consumer, settings) for layer, weight_spreads in zip(convs, spreads)]
        return NeuronTypesResult(
            threshold=settings.border_threshold,
            rule=settings.border_rule,
            activation_ratio=settings.border_activation_ratio,
            selectivity_threshold=settings.selectivity_threshold,
            layers=layers,
        )

    def _layer(self, info: LayerInfo, spreads: list, stats: _UnitStatistics | None, settings) -> LayerTypes:
        units = len(spreads)
        measured = stats is not None and info.name in stats.maximum
        activation = "not recorded"
        if stats is not None and measured:
            norm = stats.norms.get(info.name)
            activation = f"ReLU({norm[0]}({info.name}))" if norm else f"ReLU({info.name})"
        rows = [self._unit(u, info.name, spreads[u], stats if measured else None, settings) for u in range(units)]
        return _summarise(info.name, units, activation, rows, measured, settings)

    def _unit(self, u: int, name: str, spreads, stats: _UnitStatistics | None, settings) -> UnitType:
        border_w = is_border_aware(spreads, settings.border_threshold, settings.border_rule)
        column, row = spreads if spreads else (None, None)
        if stats is None:
            return UnitType(u, None, column, row, border_w, None, None, None, None, None)
        n = max(stats.count, 1)
        class_means = (stats.class_sums[name][:, u] / stats.class_counts.clamp(min=1)).numpy()
        mean = float(stats.class_sums[name][:, u].sum() / n)
        variance = float(stats.square_sum[name][u] / n - mean**2)
        dead = float(stats.maximum[name][u]) <= settings.dead_epsilon or variance <= settings.dead_epsilon**2
        ratio, side, border_a = None, None, None
        if name in stats.side_sums:
            sides = stats.side_sums[name][:, u] / n
            interior = float(stats.interior_sum[name][u] / n)
            best = int(torch.argmax(sides))
            side = SIDES[best]
            if interior > 0:
                ratio = float(sides[best] / interior)
                border_a = ratio >= settings.border_activation_ratio and not dead
            else:  # silent inside: any border activity makes it a border unit, the ratio is unbounded
                border_a = bool(sides[best] > 0) and not dead
        selectivity, top = selectivity_index(class_means) if not dead else (None, None)
        return UnitType(u, dead, column, row, border_w, ratio, side, border_a, selectivity, top)

    def checks(self, result: NeuronTypesResult, thresholds: NeuronTypesChecks, ctx: BuildContext) -> list[CheckResult]:
        measured = [layer for layer in result.layers if layer.border_activations is not None and layer.units]
        if not measured:
            return []
        worst = max(measured, key=lambda layer: layer.dead / layer.units)
        share, limit = worst.dead / worst.units, thresholds.max_dead_share
        file = next((f"layer-{info.slug}.html" for info in ctx.layers if info.name == worst.layer), "neuron-types.html")
        return [CheckResult(
            "dead units", judged(share > limit, share > limit / 2), f"{share:.0%}", f"≤ {limit:.0%} in every layer",
            f"highest: {worst.layer} ({worst.dead} of {worst.units})", f"{file}#neuron-types",
        )]

    def unit_labels(self, result: NeuronTypesResult, kit: ViewKit) -> list[UnitLabel]:
        labels = []
        for layer in result.layers:
            for row in layer.rows:
                def label(text: str, kind: str, terms: str = "") -> None:
                    labels.append(UnitLabel(layer.layer, row.unit, text, kind, self.name, terms))

                if row.dead:
                    label("dead", "dead")
                if row.border_weights:
                    label("border-aware", "border-aware", "border weights")
                if row.border_activations:
                    label(f"border activity {row.border_side}", "border activity", "border activations")
                if row.selectivity is not None and row.selectivity >= result.selectivity_threshold:
                    name = kit.class_name(row.top_class)
                    label(f"selective for {name}", "class-selective", f"class {name}")
        return labels

    def unit_rankings(self, result: NeuronTypesResult) -> dict[str, list[int]]:
        """Most class-selective first."""
        return {layer.layer: result.most_selective(layer.layer) for layer in result.layers}

    def view(self, result: NeuronTypesResult, kit: ViewKit) -> SectionView:
        layers = {entry.layer: TypesView(entry, result) for entry in result.layers}
        chart = _types_chart(result, kit) if result.layers else None
        return SectionView(layers=layers, overview=TypesOverview(result, chart))

    def columns(self, view: SectionView, kit: ViewKit) -> list[Column]:
        dead = {
            name: f"{100 * v.types.dead / v.types.units:.1f}%"
            for name, v in view.layers.items()
            if v.types.border_activations is not None
        }
        border = {name: f"{100 * v.types.border_weights / v.types.units:.1f}%" for name, v in view.layers.items()}
        return [Column("dead", dead), Column("border-aware", border)]


@dataclass(frozen=True)
class TypesView:
    types: LayerTypes
    run: NeuronTypesResult  # thresholds and rule of the whole run


@dataclass(frozen=True)
class TypesOverview:
    result: NeuronTypesResult
    chart: str | None


def _types_chart(result: NeuronTypesResult, kit: ViewKit) -> str:
    layers = result.layers
    shares = {
        "dead": [l.dead / l.units if l.border_activations is not None else None for l in layers],
        "border-aware (weights)": [l.border_weights / l.units for l in layers],
        "border-aware (activations)": [
            l.border_activations / l.units if l.border_activations is not None else None for l in layers
        ],
        f"class-selective (SI ≥ {result.selectivity_threshold})": [
            l.selective / l.units if l.selective is not None else None for l in layers
        ],
    }
    return kit.pictures.chart(type_share_chart([l.layer for l in layers], shares), "neuron-types-by-depth")


def _unit_spreads(ctx: BuildContext, weight: np.ndarray) -> list[tuple[float, float] | None]:
    return [ks_spreads(unit) for unit in weight]


def _summarise(name: str, units: int, activation: str, rows: list[UnitType], measured: bool, settings) -> LayerTypes:
    border_a = [r.border_activations for r in rows]
    agreement = None
    if measured and any(b is not None for b in border_a):
        agreement = float(np.mean([bool(r.border_activations) == r.border_weights for r in rows]))
    selectivities = [r.selectivity for r in rows if r.selectivity is not None]
    return LayerTypes(
        layer=name,
        units=units,
        activation=activation,
        dead=sum(bool(r.dead) for r in rows),
        border_weights=sum(r.border_weights for r in rows),
        border_activations=sum(bool(b) for b in border_a) if measured else None,
        border_agreement=agreement,
        selective=sum(s >= settings.selectivity_threshold for s in selectivities) if measured else None,
        mean_selectivity=float(np.mean(selectivities)) if selectivities else None,
        rows=rows,
    )
