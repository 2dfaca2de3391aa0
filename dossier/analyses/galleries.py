"""Feature galleries and dataset exemplars per conv layer (METHODS §3, §4, §1 colour-blind).

For every unit: the image that maximises its mean activation and the one that minimises it (one
batch element per unit, see dossier.featurevis), the dataset images that excite it most and least
(running top-k and bottom-k of the spatial mean, one streaming pass shared with every analysis) and
the receptive-field patches around its strongest responses (top-k of the spatial maximum).
Colour-blind units follow the seed's Algorithm 3 on the max image, confirmed on grayscale copies
of the unit's top exemplars.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from itertools import zip_longest
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from dossier.analyses.base import HOOKS_UNSUPPORTED, NO_CONV_LAYERS, Analysis, BuildContext, register
from dossier.plan import Cost, Probe, Reduction
from dossier.analyses.neuron_types import PAGE as NEURON_TYPES_PAGE
from dossier.capture import Batch, recording
from dossier.featurevis import Transforms, channel, histogram_peaks, optimise
from dossier.report.kit import Column, ExtraPage, SectionView, UnitLabel, ViewKit
from dossier.report.pictures import Sprite, type_share_chart
from dossier.results import NOT_EXPORTED, ByLayer
from dossier.settings import SectionSettings
from dossier.thumbnails import thumbnail, thumbnails


PAGE_UNITS = 64  # unit cards per page: a 512-unit layer gets 8 light pages, not one heavy one
LATE_GAIN_LIMIT = 0.1  # more of the gain than this in the last fifth of the steps: not converged
SEED_SPREAD_LIMIT = 0.25  # a second seed's image reaching this much more or less: not a stable picture
AGREEMENT_LIMIT = 1 / 3  # the halves' top exemplars sharing less than a third of their classes
_SECOND_SEED = 7919  # the offset of the seed the stability check optimises with


class GalleriesSettings(SectionSettings):
    steps: int = Field(48, ge=1, description="Adam steps per optimised image (CPU default; raise on a GPU)")
    parameterisation: Literal["fourier", "pixel", "laplacian"] = Field(
        "fourier", description="fourier (colour-decorrelated for RGB) | pixel | laplacian"
    )
    units: int | None = Field(
        None, ge=1, description="optimise the N units per layer that matter most (selectivity, relevance); null: all"
    )
    units_per_batch: int = Field(64, ge=1, description="units optimised together, one batch element each")
    stability_units: int = Field(8, ge=0, description="units per layer optimised again from another seed (stability)")
    exemplars: int = Field(6, ge=1, description="top and bottom data-set images per unit")
    colour_threshold: float = Field(3.0, ge=0, description="std of the RGB histogram peaks of a colour-blind unit (0–255)")
    pdf_units: int = Field(8, ge=0, description="units per layer in the PDF")


@dataclass(frozen=True)
class UnitCard:
    unit: int
    optimised: bool  # False: no optimised images (the time budget left this unit out)
    dataset_max: float  # largest spatial-mean activation over the data
    reached_max: float | None  # the max image's spatial-mean activation
    reached_min: float | None
    quality: float | None  # reached_max / dataset_max
    top: list[int]  # data-set indices, most exciting first
    top_values: list[float]
    bottom: list[int]
    bottom_values: list[float]
    patch_values: list[float]
    colour_peaks: list[int] | None  # per-channel histogram peak of the max image (0–255)
    colour_blind: bool | None  # None for 1-channel inputs
    grayscale_ratio: float | None  # activation on grayscale top exemplars ÷ on the originals
    late_gain: float | None  # share of the max image's gain in the last fifth of the steps (converged: small)
    seed_spread: float | None  # |reached − reached with another seed| ÷ the larger (units optimised twice)
    exemplar_agreement: float | None  # the top exemplars' classes, half of the data against the other
    unstable: list[str]  # why the pictures should not be trusted ([] when nothing says so)
    max_image: np.ndarray | None = field(metadata=NOT_EXPORTED)
    min_image: np.ndarray | None = field(metadata=NOT_EXPORTED)
    patches: np.ndarray = field(metadata=NOT_EXPORTED)


@dataclass(frozen=True)
class LayerGallery:
    layer: str
    units: list[UnitCard]
    optimised: int  # units with optimised images
    left_out: str  # why the others have none ("" when every unit has them)
    order: list[int]  # the units, those that matter most first
    convergence: list[float]  # the mean max objective over the steps, each unit scaled from 0 to 1


@dataclass(frozen=True)
class GalleriesResult(ByLayer):
    steps: int
    stability_units: int
    parameterisation: str
    decorrelated: bool
    colour_threshold: float
    exemplars: int
    layers: list[LayerGallery]
    pictures: dict[int, np.ndarray] = field(metadata=NOT_EXPORTED)  # data-set index -> thumbnail


class RunningExtremes:
    """Per unit, the k largest and k smallest spatial means and the k largest spatial maxima with
    their argmax positions, kept while streaming: memory is independent of the data size."""

    def __init__(self, layers: list[str], k: int, norms: dict[str, tuple[str, torch.nn.Module]]) -> None:
        self.layers, self.k, self.norms = layers, k, norms
        self.state: dict[str, dict[str, torch.Tensor]] = {}

    def update(self, batch: Batch) -> None:
        indices = batch.indices.cpu()
        for name in self.layers:
            if name not in batch.activations:
                continue
            activation = batch.activations[name]
            if name in self.norms:  # the unit as the next layer sees it: after its BatchNorm
                activation = self.norms[name][1](activation)
            activation = activation.float().cpu()
            means = activation.mean(dim=(2, 3)).T  # units × batch
            peak, where = activation.flatten(2).max(dim=2)
            ids = indices.expand(means.shape[0], -1)
            self._merge(name, "top", means, ids, largest=True)
            self._merge(name, "bottom", means, ids, largest=False)
            self._merge(name, "peak", peak.T, ids, largest=True, extra=where.T)
            for half in (0, 1):  # the top exemplars of each half of the data: their agreement is a stability check
                rows = indices % 2 == half
                if rows.any():
                    self._merge(name, f"top_h{half}", means[:, rows], ids[:, rows], largest=True)

    def _merge(
        self, name: str, key: str, values: torch.Tensor, ids: torch.Tensor, largest: bool, extra: torch.Tensor | None = None
    ) -> None:
        """Keep the k extremes of the stored ones followed by `values` (units × n, with their
        data-set indices `ids` and, for peaks, positions `extra`)."""
        store = self.state.setdefault(name, {})
        if key in store:
            values = torch.cat([store[key], values], dim=1)
            ids = torch.cat([store[f"{key}_ids"], ids], dim=1)
            if extra is not None:
                extra = torch.cat([store[f"{key}_where"], extra], dim=1)
        # A stable sort keeps the earlier image on ties, so the top-k of the whole data set does
        # not depend on how it was split into batches or shards.
        k = min(self.k, values.shape[1])
        chosen = torch.sort(values, dim=1, descending=largest, stable=True).indices[:, :k]
        store[key] = values.gather(1, chosen)
        store[f"{key}_ids"] = ids.gather(1, chosen)
        if extra is not None:
            store[f"{key}_where"] = extra.gather(1, chosen)

    def merge(self, other: "RunningExtremes") -> None:
        """Add the extremes of later images (another shard of the data pass)."""
        for name, theirs in other.state.items():
            for key, largest in (("top", True), ("bottom", False), ("peak", True), ("top_h0", True), ("top_h1", True)):
                if key in theirs:
                    self._merge(name, key, theirs[key], theirs[f"{key}_ids"], largest, theirs.get(f"{key}_where"))


def receptive_patch(pixels: np.ndarray, position: int, feature_shape: tuple[int, int], field_size: int) -> np.ndarray:
    """The input window a feature-map position sees, centred on it, clamped to the image."""
    height, width = pixels.shape[:2]
    rows, cols = feature_shape
    y = (position // cols + 0.5) * height / rows
    x = (position % cols + 0.5) * width / cols
    half = max(4, min(field_size, min(height, width))) / 2
    top = int(np.clip(round(y - half), 0, max(0, height - 2 * half)))
    left = int(np.clip(round(x - half), 0, max(0, width - 2 * half)))
    size = int(2 * half)
    return pixels[top : top + size, left : left + size]


@register
class Galleries(Analysis):
    name = "galleries"
    title = "Feature galleries"
    order = 20
    result_type = GalleriesResult
    settings_type = GalleriesSettings
    page = NEURON_TYPES_PAGE  # colour-blind units by depth sit beside the other neuron types
    unit_anchor_rank = 0
    unit_pictures = True
    after = ("neuron_types", "relevance")  # which units matter most, when not every unit is optimised
    reductions = (
        Reduction("units", (256, 128, 64, 32, 16, 8, 4, 2, 1), "optimised images only for the units per layer that matter most "
                  "(class selectivity, then relevance); every unit keeps its exemplars", rank=1),
        Reduction("steps", (32, 24, 16), "fewer Adam steps per optimised image: less converged pictures", rank=2),
    )

    def applies(self, ctx: BuildContext) -> str | None:
        if not ctx.hookable:
            return HOOKS_UNSUPPORTED
        return None if ctx.conv_layers else NO_CONV_LAYERS

    def consumer(self, ctx: BuildContext) -> RunningExtremes:
        convs = [layer.name for layer in ctx.conv_layers]
        return RunningExtremes(convs, self.settings(ctx.config).exemplars, ctx.conv_norms)

    def finish(self, ctx: BuildContext, consumer: RunningExtremes) -> GalleriesResult:
        settings = self.settings(ctx.config)
        channels = ctx.config.model.input_size[0]
        jobs = [
            (
                info, consumer.state[info.name], consumer.norms[info.name][0] if info.name in consumer.norms else None,
                importance(ctx, info.name, consumer.state[info.name]),
                ctx.results["neuron_types"].dead_units(info.name) if "neuron_types" in ctx.results else set(),
            )
            for info in ctx.recorded_layers
            if info.name in consumer.state
        ]
        gray_ratios = _grayscale_ratios(ctx, {info.name: (state, norm) for info, state, norm, _, _ in jobs}) if channels == 3 else {}
        patches = _patches_by_layer(ctx, {info.name: (info, state) for info, state, _, _, _ in jobs})
        jobs = [(*job, gray_ratios.get(job[0].name), patches[job[0].name]) for job in jobs]
        layers = ctx.map(_layer_gallery, jobs, desc="feature galleries")
        # One thumbnail per data-set image shown anywhere: bounded by the data, not by the units.
        shown = sorted({i for layer in layers for card in layer.units for i in card.top + card.bottom})
        kept, images = thumbnails(ctx.dataset, shown, upscale=False)
        return GalleriesResult(
            steps=settings.steps,
            stability_units=settings.stability_units,
            parameterisation=settings.parameterisation,
            decorrelated=channels == 3,
            colour_threshold=settings.colour_threshold,
            exemplars=settings.exemplars,
            layers=layers,
            pictures=dict(zip(kept, images)),
        )

    def cost(self, ctx: BuildContext, probe: Probe, settings: GalleriesSettings) -> Cost:
        seconds, optimised, units = 0.0, 0, 0
        for info in ctx.conv_layers:
            count = info.units or 0
            chosen = count if settings.units is None else min(count, settings.units)
            for start in range(0, chosen, settings.units_per_batch):
                batch = min(settings.units_per_batch, chosen - start)
                seconds += 2 * probe.optimisation(info.name, batch, settings.steps, settings.parameterisation)  # max, min
            if min(chosen, settings.stability_units):  # the max images again, from another seed
                seconds += probe.optimisation(info.name, min(chosen, settings.stability_units), settings.steps, settings.parameterisation)
            seconds += probe.forward_per_image() * 2 * chosen  # what the optimised images reach
            optimised, units = optimised + chosen, units + count
        # the exemplars of every layer, each read once for the patches and once, in colour and
        # gray, for the grayscale ratios (one pass for all layers)
        exemplars = min(units * settings.exemplars, len(ctx.dataset))
        seconds += exemplars * (2 * probe.image_seconds() + 2 * probe.forward_per_image())
        work = f"{optimised:,} of {units:,} units × 2 images × {settings.steps} steps"
        return Cost(work, seconds, shrink="analyses.galleries.units, analyses.galleries.steps")

    def unit_labels(self, result: GalleriesResult, kit: ViewKit) -> list[UnitLabel]:
        labels = []
        for layer in result.layers:
            for card in layer.units:
                if card.colour_blind:
                    labels.append(UnitLabel(layer.layer, card.unit, "colour-blind", "colour-blind", self.name, "colour blind grayscale"))
                if card.unstable:
                    labels.append(UnitLabel(layer.layer, card.unit, "unstable pictures", "unstable", self.name, "; ".join(card.unstable)))
        return labels

    def view(self, result: GalleriesResult, kit: ViewKit) -> SectionView:
        return _view(result, kit, self.settings(kit.config).pdf_units)

    def columns(self, view: SectionView, kit: ViewKit) -> list[Column]:
        shares = {name: f"{100 * v.colour_blind:.1f}%" for name, v in view.layers.items() if v.colour_blind is not None}
        return [Column("colour-blind", shares)]


def _layer_gallery(ctx: BuildContext, job: tuple) -> LayerGallery:
    """One layer: optimised images for its most important units (all, unless the budget says
    otherwise), and for every unit what they reach, exemplars, patches and colour."""
    info, state, norm_name, order, dead, gray_ratio, patches = job
    settings = ctx.config.analyses.galleries
    norm = dict(ctx.model.module.named_modules())[norm_name] if norm_name else None
    units = info.output_shape[0]
    chosen = order[: settings.units] if settings.units is not None else order
    late = ctx.deadline is not None and time.time() > ctx.deadline
    if late:
        chosen = []
    twice = set(chosen[: settings.stability_units])
    images = _optimised(ctx, info.name, sorted(chosen), norm, twice) if chosen else {}
    cards = [_card(ctx, state, u, images.get(u), gray_ratio, u in dead, patches[u]) for u in range(units)]
    convergence = mean_curve([images[u].curve for u in sorted(images)])
    why = ""
    if late:
        why = "the time budget ran out before this layer"
    elif len(chosen) < units:
        why = f"the time budget allowed the {len(chosen)} units that matter most (class selectivity, then relevance)"
    return LayerGallery(info.name, cards, len(chosen), why, list(order), convergence)


@dataclass(frozen=True)
class _Optimised:
    """A unit's max and min images, what they reach, how the max converged and, for the units
    optimised twice, how far a second seed's max image lands from the first."""

    max_image: torch.Tensor
    min_image: torch.Tensor
    reached_max: float
    reached_min: float
    curve: np.ndarray  # the max objective at each step
    seed_spread: float | None


def _optimised(ctx: BuildContext, layer: str, units: list[int], norm, twice: set[int]) -> dict[int, _Optimised]:
    """Per unit: its optimised images; the units in `twice` get their max image again from another seed."""
    settings, config = ctx.config.analyses.galleries, ctx.config
    common = dict(
        layers=[layer], input_size=config.model.input_size, mean=config.model.channel_mean,
        std=config.model.channel_std, steps=settings.steps, parameterisation=settings.parameterisation,
        transforms=Transforms(), device=ctx.device, mixed_precision=ctx.options.mixed_precision,
    )

    def maximise(batch: torch.Tensor, seed: int, trace: list | None = None) -> torch.Tensor:
        return optimise(ctx.model.module, channel(layer, batch, 1.0, norm), batch=len(batch), seed=seed, trace=trace, **common)

    found = {}
    for start in range(0, len(units), settings.units_per_batch):
        batch = torch.tensor(units[start : start + settings.units_per_batch], device=ctx.device)
        seed, trace = config.seed + int(batch[0]), []
        maxima = maximise(batch, seed, trace)
        minima = optimise(ctx.model.module, channel(layer, batch, -1.0, norm), batch=len(batch), seed=seed + 1, **common)
        reached_max, reached_min = _reached(ctx, layer, maxima, batch, norm), _reached(ctx, layer, minima, batch, norm)
        curves = torch.stack(trace, dim=1).numpy()  # units × steps
        again = [k for k, unit in enumerate(batch.tolist()) if unit in twice]
        spread = {}
        if again:
            other = maximise(batch[again], seed + _SECOND_SEED)
            for k, value in zip(again, _reached(ctx, layer, other, batch[again], norm).tolist()):
                first = float(reached_max[k])
                spread[k] = abs(first - value) / max(abs(first), abs(value), 1e-12)
        for k, unit in enumerate(batch.tolist()):
            found[unit] = _Optimised(
                maxima[k], minima[k], float(reached_max[k]), float(reached_min[k]), curves[k], spread.get(k)
            )
    return found


def late_gain(curve: np.ndarray) -> float | None:
    """The share of an optimisation's gain made in its last fifth of steps: near 0, it converged.
    Means over tenths of the steps smooth out the random transforms' noise."""
    steps = len(curve)
    if steps < 10:
        return None
    tenth = steps // 10
    start, before_end, end = curve[:tenth].mean(), curve[-3 * tenth : -2 * tenth].mean(), curve[-tenth:].mean()
    gain = end - start
    return float((end - before_end) / gain) if gain > 0 else None


def mean_curve(curves: list[np.ndarray], points: int = 24) -> list[float]:
    """The layer's convergence: each unit's curve scaled from its start (0) to its end (1), averaged."""
    scaled = []
    for curve in curves:
        span = curve[-max(1, len(curve) // 10):].mean() - curve[0]
        if span > 0:
            scaled.append((curve - curve[0]) / span)
    if not scaled:
        return []
    mean = np.mean(scaled, axis=0)
    positions = np.linspace(0, len(mean) - 1, min(points, len(mean))).round().astype(int)
    return [round(float(mean[p]), 4) for p in positions]


def _card(
    ctx: BuildContext, state: dict[str, torch.Tensor], u: int, optimised: _Optimised | None, gray_ratio,
    dead: bool, patches: np.ndarray,
) -> UnitCard:
    """A unit's card. A dead unit (it never fires on the data) gets no colour or stability label:
    its optimised image is noise the objective could not move."""
    settings = ctx.config.analyses.galleries
    dataset_max = float(state["top"][u, 0])
    max_pixels = _to_uint8(optimised.max_image) if optimised else None
    peaks = histogram_peaks(max_pixels) if max_pixels is not None and max_pixels.shape[2] == 3 else None
    converged = late_gain(optimised.curve) if optimised else None
    halves = "top_h0_ids" in state and "top_h1_ids" in state
    agreement = exemplar_agreement(ctx.dataset.labels, state["top_h0_ids"][u], state["top_h1_ids"][u]) if halves else None
    return UnitCard(
        unit=u,
        optimised=optimised is not None,
        dataset_max=dataset_max,
        reached_max=optimised.reached_max if optimised else None,
        reached_min=optimised.reached_min if optimised else None,
        quality=optimised.reached_max / dataset_max if optimised and dataset_max > 0 else None,
        late_gain=converged,
        seed_spread=optimised.seed_spread if optimised else None,
        exemplar_agreement=agreement,
        unstable=[] if dead else _unstable(converged, optimised.seed_spread if optimised else None, agreement),
        top=state["top_ids"][u].tolist(),
        top_values=state["top"][u].tolist(),
        bottom=state["bottom_ids"][u].tolist(),
        bottom_values=state["bottom"][u].tolist(),
        patch_values=state["peak"][u].tolist(),
        colour_peaks=peaks,
        colour_blind=bool(np.std(peaks) <= settings.colour_threshold) if peaks and not dead else None,
        grayscale_ratio=float(gray_ratio[u]) if gray_ratio is not None else None,
        max_image=thumbnail(max_pixels, upscale=False) if optimised else None,
        min_image=thumbnail(_to_uint8(optimised.min_image), upscale=False) if optimised else None,
        patches=patches,
    )


def exemplar_agreement(labels: np.ndarray, first: torch.Tensor, second: torch.Tensor) -> float | None:
    """How much the classes of a unit's top exemplars agree between the two halves of the data
    (histogram intersection, 0 to 1): a unit's exemplars mean something when both halves show it
    the same kind of image."""
    if len(first) == 0 or len(second) == 0:
        return None
    classes = int(labels.max()) + 1
    a = np.bincount(labels[first.numpy()], minlength=classes) / len(first)
    b = np.bincount(labels[second.numpy()], minlength=classes) / len(second)
    return float(np.minimum(a, b).sum())


def _unstable(late: float | None, spread: float | None, agreement: float | None) -> list[str]:
    """Why a unit's pictures should not be trusted, if they should not."""
    reasons = []
    if late is not None and late > LATE_GAIN_LIMIT:
        reasons.append(f"still improving: {late:.0%} of its gain in the last fifth of the steps")
    if spread is not None and spread > SEED_SPREAD_LIMIT:
        reasons.append(f"another seed's max image reaches {spread:.0%} more or less")
    if agreement is not None and agreement < AGREEMENT_LIMIT:
        reasons.append(f"its top exemplars' classes agree {agreement:.0%} between the two halves of the data")
    return reasons


def _reached(ctx: BuildContext, layer: str, images: torch.Tensor, units: torch.Tensor, norm) -> torch.Tensor:
    """The spatial-mean activation image k reaches on unit units[k]."""
    mean = torch.tensor(ctx.config.model.channel_mean, device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(ctx.config.model.channel_std, device=images.device).view(1, -1, 1, 1)
    with torch.no_grad(), recording(ctx.model.module, [layer]) as outputs:
        ctx.model.module((images - mean) / std)
        activation = (norm(outputs[layer]) if norm is not None else outputs[layer]).mean(dim=(2, 3))
    return activation[torch.arange(len(images)), units].cpu()


def _grayscale_ratios(ctx: BuildContext, layers: dict[str, tuple[dict[str, torch.Tensor], str | None]]) -> dict[str, np.ndarray]:
    """Per layer, each unit's mean activation on grayscale copies of its top exemplars ÷ on the
    originals. One pass over the exemplars of every layer (each image read and run once, all
    layers recorded), not one per layer."""
    modules = dict(ctx.model.module.named_modules())
    norms = {name: modules[norm] for name, (_, norm) in layers.items() if norm}
    wanted = sorted({i for state, _ in layers.values() for i in state["top_ids"].flatten().tolist()})
    position = {index: n for n, index in enumerate(wanted)}
    means: dict[str, dict[str, list[torch.Tensor]]] = {"colour": {name: [] for name in layers}, "gray": {name: [] for name in layers}}
    for start in range(0, len(wanted), ctx.options.batch_size):
        colour, gray = [], []
        for index in wanted[start : start + ctx.options.batch_size]:
            pixels = ctx.dataset.image(index)
            if pixels is None:
                pixels = np.zeros(tuple(ctx.config.model.input_size[1:]) + (3,), dtype=np.uint8)
            luminance = np.round(pixels @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
            colour.append(ctx.dataset.normalise(pixels))
            gray.append(ctx.dataset.normalise(np.repeat(luminance[..., None], 3, axis=2)))
        for key, images in (("colour", colour), ("gray", gray)):
            with torch.no_grad(), recording(ctx.model.module, list(layers)) as outputs:
                ctx.model.module(torch.stack(images).to(ctx.device))
                for name in layers:
                    activation = norms[name](outputs[name]) if name in norms else outputs[name]
                    means[key][name].append(torch.relu(activation).float().mean(dim=(2, 3)).cpu())
    ratios = {}
    for name, (state, _) in layers.items():
        rows = torch.tensor([[position[i] for i in ids] for ids in state["top_ids"].tolist()])
        units = torch.arange(len(rows))[:, None]
        on_colour = torch.cat(means["colour"][name])[rows, units].mean(dim=1)
        on_gray = torch.cat(means["gray"][name])[rows, units].mean(dim=1)
        ratios[name] = (on_gray / on_colour.clamp(min=1e-12)).numpy()
    return ratios


def _patches_by_layer(ctx: BuildContext, layers: dict[str, tuple[Any, dict[str, torch.Tensor]]]) -> dict[str, list[np.ndarray]]:
    """Per layer, every unit's exemplar patches. Units and layers share exemplars, so each image
    is read once for all of them (a GoogLeNet has 7,280 units × 6 patches, often over a few
    thousand images)."""
    wanted: dict[int, list[tuple[str, int, int, int]]] = {}
    for name, (_, state) in layers.items():
        for unit, (indices, places) in enumerate(zip(state["peak_ids"].tolist(), state["peak_where"].tolist())):
            for rank, (index, where) in enumerate(zip(indices, places)):
                wanted.setdefault(index, []).append((name, unit, rank, where))
    cut = {name: [{} for _ in range(len(state["peak_ids"]))] for name, (_, state) in layers.items()}
    for index in sorted(wanted):
        pixels = ctx.dataset.image(index)
        if pixels is None:
            continue
        for name, unit, rank, where in wanted[index]:
            info = layers[name][0]
            field_size = info.receptive_field or min(ctx.config.model.input_size[1:])
            patch = receptive_patch(pixels, where, info.output_shape[1:], field_size)
            cut[name][unit][rank] = thumbnail(patch, upscale=False)
    channels = ctx.config.model.input_size[0]
    return {name: [_stacked([p[rank] for rank in sorted(p)], channels) for p in units] for name, units in cut.items()}


def _stacked(pictures: list[np.ndarray], channels: int) -> np.ndarray:
    if not pictures:
        return np.zeros((0, 1, 1, channels), dtype=np.uint8)
    side = max(p.shape[0] for p in pictures)
    return np.stack([np.pad(p, ((0, side - p.shape[0]), (0, side - p.shape[1]), (0, 0))) for p in pictures])


def _view(result: GalleriesResult, kit: ViewKit, count: int) -> SectionView:
    """Every layer's unit cards, in pages of PAGE_UNITS, and the PDF's chosen units."""
    layers, pages = {}, []
    for layer in result.layers:
        slug = kit.slug(layer.layer)
        chosen = pdf_units(kit.rankings.get("neuron_types", {}).get(layer.layer, []),
                           kit.rankings.get("relevance", {}).get(layer.layer, []), count)
        chunks = [layer.units[start : start + PAGE_UNITS] for start in range(0, len(layer.units), PAGE_UNITS)]
        pictured = set(layer.order[: kit.unit_pictures] if kit.unit_pictures is not None else layer.order)
        gallery_pages = [
            GalleryPage(
                kit.layer_file(layer.layer) if k == 0 else f"layer-{slug}-units-{k + 1}.html",
                chunk[0].unit, chunk[-1].unit,
                [_card_view(card, result, kit, f"gallery-{slug}-{k + 1}", card.unit in pictured) for card in chunk],
            )
            for k, chunk in enumerate(chunks)
        ]
        printed = [
            _card_view(card, result, kit, f"gallery-{slug}-print", True) for card in layer.units if card.unit in chosen
        ]
        view = GalleryView(
            gallery_pages, 0, printed, result, layer, _pdf_rule(count), _colour_blind_share(layer),
            len(pictured) if len(pictured) < len(layer.units) else None,
        )
        layers[layer.layer] = view
        pages += [
            ExtraPage(page.filename, f"{layer.layer} · units {page.first}–{page.last}", layer.layer, replace(view, current=k))
            for k, page in enumerate(gallery_pages) if k > 0
        ]
    return SectionView(layers=layers, overview=_colour_overview(result, kit), pages=pages)


@dataclass(frozen=True)
class CardView:
    card: UnitCard
    pictured: bool  # False: the site's size budget left this unit's pictures out
    max_image: Sprite | None  # None: not optimised, or not pictured
    min_image: Sprite | None
    top: list[Sprite]  # the top exemplars
    bottom: list[Sprite]
    patches: list[Sprite]


@dataclass(frozen=True)
class GalleryPage:
    filename: str
    first: int  # units shown, first to last
    last: int
    cards: list[CardView]


@dataclass(frozen=True)
class GalleryView:
    pages: list[GalleryPage]  # the first is on the layer page, the others are pages of their own
    current: int  # the page this view shows
    printed: list[CardView]  # the units the PDF shows
    run: GalleriesResult  # steps, parameterisation of the whole run
    layer: LayerGallery
    pdf_rule: str
    colour_blind: float | None  # share of the layer's units
    pictured: int | None  # units shown with pictures, when the site's size budget left others out

    def unit_page(self, unit: int) -> str:
        return next(page.filename for page in self.pages if page.first <= unit <= page.last)


@dataclass(frozen=True)
class ColourOverview:
    result: GalleriesResult
    chart: str | None


def pdf_units(selective: list[int], relevant: list[int], count: int) -> set[int]:
    """The units a layer shows in the PDF: the most class-selective, then the most relevant."""
    chosen = selective[: (count + 1) // 2]
    for unit in relevant:
        if len(chosen) >= count:
            break
        if unit not in chosen:
            chosen.append(unit)
    return set(chosen)


def importance(ctx: BuildContext, layer: str, state: dict[str, torch.Tensor]) -> list[int]:
    """A layer's units, those that matter most first: the most class-selective and the most
    relevant in turn, then the rest by their largest activation on the data."""
    results = ctx.results
    selective = results["neuron_types"].most_selective(layer) if "neuron_types" in results else []
    ranking = results["relevance"].ranking_for(layer) if "relevance" in results else None
    relevant = ranking.ranking if ranking else []
    by_activation = torch.argsort(state["top"][:, 0], descending=True, stable=True).tolist()
    order: list[int] = []
    for pair in zip_longest(selective, relevant):
        order += [unit for unit in pair if unit is not None and unit not in order]
    return order + [unit for unit in by_activation if unit not in order]


def _pdf_rule(count: int) -> str:
    return f"the {(count + 1) // 2} most class-selective units, then the most relevant (relevance ranking), {count} in all"


def _card_view(card: UnitCard, result: GalleriesResult, kit: ViewKit, group: str, pictured: bool) -> CardView:
    """A unit's pictures, packed into the sheet of the page that shows them."""
    if not pictured:
        return CardView(card, False, None, None, [], [], [])
    sprite = kit.pictures.sprite
    return CardView(
        card=card,
        pictured=True,
        max_image=sprite(card.max_image, group) if card.optimised else None,
        min_image=sprite(card.min_image, group) if card.optimised else None,
        top=[sprite(result.pictures[i], group, key=i) for i in card.top if i in result.pictures],
        bottom=[sprite(result.pictures[i], group, key=i) for i in card.bottom if i in result.pictures],
        patches=[sprite(patch, group) for patch in card.patches],
    )


def _colour_blind_share(layer: LayerGallery) -> float | None:
    """Share of the optimised units that are colour-blind (it is read from their max images)."""
    judged = [card for card in layer.units if card.colour_blind is not None]
    return sum(card.colour_blind for card in judged) / len(judged) if judged else None


def _colour_overview(result: GalleriesResult, kit: ViewKit) -> ColourOverview:
    shares = [_colour_blind_share(layer) for layer in result.layers]
    chart = None
    if any(share is not None for share in shares):
        figure = type_share_chart([layer.layer for layer in result.layers], {"colour-blind": shares})
        chart = kit.pictures.chart(figure, "colour-blind-by-depth")
    return ColourOverview(result, chart)


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return np.round(image.permute(1, 2, 0).cpu().numpy() * 255).clip(0, 255).astype(np.uint8)
