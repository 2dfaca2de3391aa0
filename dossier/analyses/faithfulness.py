"""Heatmap faithfulness and the model-randomisation sanity check (METHODS §9).

Faithfulness (Samek et al. 2017 "pixel flipping"; Petsiuk et al. 2018 deletion/insertion): each
explained image is cut into a grid of patches, ordered by the heatmap's relevance summed over each
patch. Deletion replaces the patches, most relevant first, by the data mean (each channel's mean over
the data set, measured in the data pass); insertion starts from that mean image and reveals them in
the same order. The explained output's probability (softmax)
after every step makes the curve; the area under it (steps scaled to [0, 1], so the area lies in
[0, 1]) is the score: a faithful heatmap makes the deletion area small and the insertion area large,
compared with random patch orders of the same image.

Sanity check (Adebayo et al. 2018, cascading randomisation): copies of the model whose layers are
re-initialised from the output down, cumulatively; a method whose maps on the randomised model keep
their rank correlation with the original maps does not depend on what the model learnt, and is
flagged insensitive to the model.

Methods: LRP with the relevance section's composite, Grad-CAM on the last conv layer and gradient ×
input as a reference, each on the relevance section's explained images and output.
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from pydantic import Field
from scipy import stats
from torch import nn
from zennit.attribution import Gradient

from dossier.analyses.base import HOOKS_UNSUPPORTED, Analysis, BuildContext, register
from dossier.analyses.relevance import Relevance, deep_taylor_composite, grad_cam, relevance_graph, relevance_pass
from dossier.capture import Batch, ForwardHook, hooks
from dossier.plan import Cost, Probe, Reduction
from dossier.report.kit import CheckResult, SectionView, ViewKit, judged
from dossier.settings import SectionSettings, StrictModel

SCORE = "the softmax probability of the explained output"
BASELINE = "the data mean: each channel at its mean over the data set"
RANDOM = "random order"
REFERENCE = "gradient × input"  # shown for comparison: the checks do not hold it to their thresholds
CONFIDENCE = 0.95  # of the t-intervals over images

# An attribution method: (model, images N×C×H×W, explained outputs N) -> maps N×H×W.
Attribution = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


class FaithfulnessChecks(StrictModel):
    min_deletion_gain: float = Field(
        0.0, ge=-1, le=1,
        description="a heatmap (LRP, Grad-CAM) whose deletion gain over random order (random's area − its own) lies "
        "below this by its whole 95% interval fails; one whose interval reaches below it warns",
    )


class FaithfulnessSettings(SectionSettings):
    images: int = Field(8, ge=1, description="the first N of the relevance section's explained images measured")
    patches: int = Field(8, ge=2, description="patches per image side, deleted or inserted one per step")
    random_orders: int = Field(3, ge=1, description="random patch orders (seeded) averaged into the baseline curve")
    stages: int = Field(4, ge=1, description="randomisation stages, from the classifier alone to every layer (1: every layer)")
    threshold: float = Field(
        0.5, ge=-1, le=1,
        description="flag a method whose maps keep a rank correlation above this once every layer is re-initialised",
    )


@dataclass(frozen=True)
class Estimate:
    """A mean over images with its 95% t-interval (None with fewer than two images)."""

    mean: float
    low: float | None
    high: float | None


@dataclass(frozen=True)
class MethodCurves:
    method: str
    deletion: list[float]  # mean curve over images: the probability after 0, 1, …, patches² steps
    insertion: list[float]
    deletion_areas: list[float]  # per image
    insertion_areas: list[float]
    deletion_area: Estimate
    insertion_area: Estimate
    deletion_gain: Estimate | None  # random's deletion area − this one's, paired by image; None for random
    insertion_gain: Estimate | None  # this insertion area − random's


@dataclass(frozen=True)
class SanityCheck:
    method: str
    correlations: list[float]  # per stage: mean over images of the rank correlation with the original maps
    per_image: list[list[float]]  # stage × image
    insensitive: bool  # the last stage's correlation is above the threshold


@dataclass(frozen=True)
class FaithfulnessResult:
    score: str
    baseline: str
    fill: list[float]  # the value per channel (normalised input) a deleted or not yet inserted patch takes
    patches: int  # per side (at most the image's side)
    random_orders: int
    threshold: float
    gradcam_layer: str | None
    indices: list[int]  # data-set indices of the measured images
    names: list[str]
    targets: list[int]  # the explained output of each image
    curves: list[MethodCurves]  # each method, then the random order
    stages: list[str]  # what each randomisation stage re-initialised, cumulatively from the output
    sanity: list[SanityCheck]

    @property
    def random(self) -> MethodCurves | None:
        return next((c for c in self.curves if c.method == RANDOM), None)

    @property
    def methods(self) -> list[MethodCurves]:
        return [c for c in self.curves if c.method != RANDOM]

    @property
    def insensitive(self) -> list[SanityCheck]:
        return [check for check in self.sanity if check.insensitive]


# Attribution methods ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LRPMaps:
    """The relevance section's composite (deep Taylor: z⁺, z^B at the input): input relevance summed
    over channels."""

    convs: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        traced = _traceable(model, images[:1])
        size = tuple(images.shape[1:])
        composite = deep_taylor_composite(traced, list(self.convs), size, self.mean, self.std, images.device)
        with composite.context(traced) as modified:
            _, relevance, _ = relevance_pass(modified, images, targets, [])
        return relevance.sum(dim=1)


@dataclass(frozen=True)
class GradCAMMaps:
    layer: str

    def __call__(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(grad_cam(model, self.layer, images, targets))


@dataclass(frozen=True)
class GradientTimesInput:
    """∂ logit / ∂ input × input (zennit's plain Gradient attributor), summed over channels: the
    simplest attribution, the reference every heatmap should beat."""

    def __call__(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = images.clone()  # the attributor makes its input require gradients

        def chosen(logits: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.one_hot(targets, logits.shape[1]).to(logits)

        with Gradient(model=model) as attributor:
            _, gradient = attributor(x, chosen)
        return (gradient * images).sum(dim=1).detach()


def _traceable(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """relevance_graph's copy where torch.fx can trace the model, else the model (as the relevance
    section does: its additions and gates then keep autograd's rule)."""
    try:
        return relevance_graph(model, example)[0]
    except Exception:  # torch.fx cannot trace every model (data-dependent control flow)
        return model


def standard_methods(convs: list[str], gradcam_layer: str | None, mean: tuple[float, ...], std: tuple[float, ...]) -> dict[str, Attribution]:
    """LRP, Grad-CAM (where there is a conv layer) and gradient × input, in the order shown."""
    methods: dict[str, Attribution] = {"LRP": LRPMaps(tuple(convs), tuple(mean), tuple(std))}
    if gradcam_layer is not None:
        methods["Grad-CAM"] = GradCAMMaps(gradcam_layer)
    methods[REFERENCE] = GradientTimesInput()
    return methods


def attribute(method: Attribution, model: nn.Module, images: torch.Tensor, targets: torch.Tensor, batch: int) -> torch.Tensor:
    """The method's maps (N×H×W, float, on the CPU), batch images at a time."""
    parts = [method(model, images[s : s + batch], targets[s : s + batch]) for s in range(0, len(images), batch)]
    return torch.cat(parts).detach().float().cpu()


# Deletion and insertion -------------------------------------------------------------------------


def patch_grid(height: int, width: int, per_side: int) -> torch.Tensor:
    """H×W: the patch each pixel belongs to, row-major, on a per_side × per_side grid (patches
    differ by at most a pixel where the side does not divide)."""
    rows = torch.from_numpy(np.searchsorted(np.linspace(0, height, per_side + 1)[1:-1], np.arange(height), side="right"))
    cols = torch.from_numpy(np.searchsorted(np.linspace(0, width, per_side + 1)[1:-1], np.arange(width), side="right"))
    return rows[:, None] * per_side + cols[None, :]


def patch_order(heatmap: torch.Tensor, grid: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
    """Patches by relevance summed over each, most relevant first; ties (a blank map) in random order,
    so that a map without information is scored like a random order, not like a raster scan."""
    count = int(grid.max()) + 1
    scores = torch.zeros(count, dtype=torch.float64).index_add_(0, grid.flatten(), heatmap.flatten().double()).numpy()
    return np.lexsort((rng.permutation(count), -scores))


def perturbation_curves(
    model: nn.Module, image: torch.Tensor, target: int, orders: np.ndarray, grid: torch.Tensor, fill: torch.Tensor,
    batch: int,
) -> np.ndarray:
    """orders × 2 × (patches + 1): the target's probability as each order's patches are deleted
    (replaced by fill, a value per channel) and inserted (into the image filled with it), one patch
    per step.

    Every step of every order is one image of a batched forward pass, `batch` at a time."""
    device = image.device
    count = orders.shape[1]
    rank = np.empty_like(orders)
    np.put_along_axis(rank, orders, np.arange(count)[None].repeat(len(orders), 0), axis=1)
    rank = torch.from_numpy(rank).to(device)
    pixels = grid.flatten().to(device)
    fill = fill.to(device=device, dtype=image.dtype).view(1, -1, 1, 1)
    order, direction, step = (torch.from_numpy(a.ravel()).to(device) for a in np.meshgrid(
        np.arange(len(orders)), np.arange(2), np.arange(count + 1), indexing="ij"))
    scores = []
    with torch.no_grad():
        for s in range(0, len(step), batch):
            o, d, k = order[s : s + batch], direction[s : s + batch], step[s : s + batch]
            done = (rank[o][:, pixels] < k[:, None]).view(-1, 1, *grid.shape)  # patches already taken
            filled = torch.where(d.view(-1, 1, 1, 1) == 0, done, ~done)  # deletion fills the patches done
            x = torch.where(filled, fill, image[None])
            scores.append(torch.softmax(model(x).float(), dim=1)[:, target])
    return torch.cat(scores).cpu().numpy().reshape(len(orders), 2, count + 1)


def image_curves(
    model: nn.Module, image: torch.Tensor, target: int, maps: dict[str, torch.Tensor], per_side: int, random_orders: int,
    fill: torch.Tensor, rng: np.random.Generator, batch: int,
) -> np.ndarray:
    """One image: (methods + 1) × (deletion, insertion) × steps, each method's curves in the order of
    maps, then the mean of random_orders random orders."""
    grid = patch_grid(*image.shape[1:], per_side)
    orders = [patch_order(heatmap, grid, rng) for heatmap in maps.values()]
    orders += [rng.permutation(per_side * per_side) for _ in range(random_orders)]
    curves = perturbation_curves(model, image, target, np.stack(orders), grid, fill, batch)
    return np.concatenate([curves[: len(maps)], curves[len(maps) :].mean(axis=0, keepdims=True)])


def area(curve: np.ndarray) -> float:
    """Trapezoidal area under a curve whose steps span [0, 1]."""
    curve = np.asarray(curve, dtype=np.float64)
    return float((curve[1:] + curve[:-1]).sum() / (2 * (len(curve) - 1)))


def bounds(value: Estimate) -> tuple[float, float]:
    """The 95% interval, or the mean twice when a single image gives none."""
    return (value.mean if value.low is None else value.low, value.mean if value.high is None else value.high)


def estimate(values: list[float] | np.ndarray) -> Estimate:
    """Mean and its 95% t-interval over images (no interval from fewer than two)."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return Estimate(mean, None, None)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return Estimate(mean, mean - half, mean + half)


# Cascading randomisation ------------------------------------------------------------------------


def randomisation_stages(model: nn.Module, example: torch.Tensor, stages: int) -> list[tuple[str, list[str]]]:
    """(label, modules to re-initialise) per stage, cumulatively from the output down.

    The model's weight layers (conv and linear) in the order the forward pass calls them are cut
    at `stages` points spread from the last one alone to all of them (one stage: all of them); each
    cut also takes every other module with its own parameters (BatchNorm) that runs after its first
    layer."""
    called: list[str] = []
    resettable = {
        name: module for name, module in model.named_modules()
        if hasattr(module, "reset_parameters") and any(True for _ in module.parameters(recurse=False))
    }

    def note(name: str) -> ForwardHook:
        def hook(_module: nn.Module, _inputs: tuple, _output: object) -> None:
            if name not in called:  # a module called twice keeps its first place
                called.append(name)

        return hook

    with torch.no_grad(), hooks(model, {name: note(name) for name in resettable}):
        model(example)
    weights = [name for name in called if isinstance(resettable[name], (nn.Linear, nn.modules.conv._ConvNd))]
    if not weights:
        return []
    # from every layer down to the last alone, so that a single stage is the one that decides the flag
    cuts = sorted({int(c) for c in np.round(np.linspace(len(weights), 1, min(stages, len(weights))))})
    result = []
    for cut in cuts:
        first = weights[len(weights) - cut]
        label = weights[-1] if cut == 1 else ("every layer" if cut == len(weights) else f"{first} and above")
        result.append((label, called[called.index(first) :]))
    return result


def randomised(model: nn.Module, names: list[str], seed: int) -> nn.Module:
    """A copy of model whose named modules are re-initialised (reset_parameters). Each module's
    draw is seeded by the seed and its name, so that a later stage re-draws the layers an earlier
    one re-initialised identically: the stages differ only by the layers they add."""
    copied = copy.deepcopy(model)
    modules = dict(copied.named_modules())
    devices = [p.device for p in copied.parameters() if p.device.type == "cuda"][:1]
    with torch.random.fork_rng(devices=devices):  # the build's own random state is left alone
        for name in names:
            torch.manual_seed(zlib.crc32(f"{seed}:{name}".encode()))
            modules[name].reset_parameters()
    return copied


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman correlation of two maps' absolute values (Adebayo et al.'s measure: a sign flip is
    no change of what the map points at); 0 when either is constant, as it ranks nothing."""
    x, y = a.abs().flatten().numpy(), b.abs().flatten().numpy()
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(np.corrcoef(stats.rankdata(x), stats.rankdata(y))[0, 1])


def sanity_check(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, methods: dict[str, Attribution],
    originals: dict[str, torch.Tensor], names: list[str], seed: int, batch: int,
) -> dict[str, list[float]]:
    """Per method, per image: the rank correlation of its maps on the model with `names`
    re-initialised with its original maps."""
    changed = randomised(model, names, seed)
    return {
        name: [rank_correlation(a, b) for a, b in zip(originals[name], attribute(method, changed, images, targets, batch))]
        for name, method in methods.items()
    }


# The section ------------------------------------------------------------------------------------


class DataMean:
    """Each input channel's mean over the data set as the model sees it (normalised): the value a
    deleted patch takes. Summed in float64 in the data pass, shard after shard in order."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.pixels = 0

    def update(self, batch: Batch) -> None:
        sums = batch.images.double().sum(dim=(0, 2, 3)).cpu()
        self.total = sums if self.total is None else self.total + sums
        self.pixels += batch.images[:, 0].numel()

    def merge(self, other: "DataMean") -> None:
        if other.total is not None:
            self.total = other.total if self.total is None else self.total + other.total
        self.pixels += other.pixels

    def mean(self) -> torch.Tensor:
        return (self.total / self.pixels).float()


@register
class Faithfulness(Analysis):
    name = "faithfulness"
    title = "Heatmap faithfulness"
    order = 55
    result_type = FaithfulnessResult
    settings_type = FaithfulnessSettings
    check_settings = FaithfulnessChecks
    page = Relevance.page
    after = ("relevance",)
    reductions = (
        Reduction("patches", (6, 4), "coarser faithfulness patches: fewer deletion and insertion steps", rank=2),
        Reduction("random_orders", (2, 1), "fewer random orders in the faithfulness baseline", rank=3),
        Reduction("images", (4, 2), "faithfulness measured on fewer images: wider intervals", rank=3),
        Reduction("stages", (2, 1), "fewer randomisation stages in the sanity check", rank=3),
    )

    def applies(self, ctx: BuildContext) -> str | None:
        return None if ctx.hookable else HOOKS_UNSUPPORTED

    def consumer(self, ctx: BuildContext) -> DataMean:
        return DataMean()

    def finish(self, ctx: BuildContext, consumer: DataMean) -> FaithfulnessResult:
        if "relevance" not in ctx.results:  # left out by --only, or failed: there is nothing to measure
            raise RuntimeError("the relevance section was not computed in this build: faithfulness measures its heatmaps")
        settings: FaithfulnessSettings = self.settings(ctx.config)
        relevance = ctx.results["relevance"]
        explained = relevance.images[: settings.images]
        per_side = min(settings.patches, *ctx.config.model.input_size[1:])
        fill = consumer.mean()
        methods = _methods(ctx, relevance.gradcam_layer)
        targets = [image.predicted for image in explained]
        curves, stages, sanity = [], [], []
        if explained:
            images = torch.stack([ctx.dataset[image.index][0] for image in explained])  # CPU: it may travel to a worker
            originals = _original_maps(ctx, methods, images, targets)
            curves = _scorecard(ctx, [*methods, RANDOM], [image.index for image in explained], images, targets,
                                originals, per_side, fill)
            stages, sanity = _sanity(ctx, methods, images, targets, originals, relevance.gradcam_layer, settings)
        return FaithfulnessResult(
            score=SCORE,
            baseline=BASELINE,
            fill=fill.tolist(),
            patches=per_side,
            random_orders=settings.random_orders,
            threshold=settings.threshold,
            gradcam_layer=relevance.gradcam_layer,
            indices=[image.index for image in explained],
            names=[image.name for image in explained],
            targets=targets,
            curves=curves,
            stages=stages,
            sanity=sanity,
        )

    def cost(self, ctx: BuildContext, probe: Probe, settings: FaithfulnessSettings) -> Cost:
        spec, relevance = ctx.config.model, ctx.config.analyses.relevance
        count = min(settings.images, relevance.per_class * len(ctx.dataset.class_names) + relevance.mistakes)
        batch = max(1, min(count, ctx.options.batch_size))
        images = torch.randn(batch, *spec.input_size, device=ctx.device)
        targets = torch.zeros(batch, dtype=torch.long, device=ctx.device)
        convs = [layer.name for layer in ctx.conv_layers]
        methods = standard_methods(convs, convs[-1] if convs else None, spec.channel_mean, spec.channel_std)

        def explain() -> None:
            for method in methods.values():
                method(ctx.model.module, images, targets)

        explain_image = probe.seconds(("faithfulness attributions", batch), explain) / batch
        steps = min(settings.patches, *spec.input_size[1:]) ** 2 + 1
        orders = len(methods) + settings.random_orders
        forwards = count * orders * 2 * steps  # every step of every curve is one image through the model
        # the original maps, then the maps again at every randomisation stage
        seconds = forwards * probe.forward_per_image() + count * (settings.stages + 1) * explain_image
        work = f"{count} images × {orders} orders × 2 curves × {steps} steps; {settings.stages} randomisation stages"
        return Cost(work, seconds, shrink="analyses.faithfulness.patches, .random_orders, .images, .stages")

    def view(self, result: FaithfulnessResult, kit: ViewKit) -> SectionView:
        charts = (
            kit.pictures.chart(curves_chart(result), "faithfulness-curves") if result.curves else None,
            kit.pictures.chart(sanity_chart(result), "faithfulness-sanity") if result.sanity else None,
        )
        return SectionView(overview=FaithfulnessOverview(result, *charts))

    def finding(self, result: FaithfulnessResult) -> str | None:
        return faithfulness_finding(result)

    def checks(self, result: FaithfulnessResult, thresholds: FaithfulnessChecks, ctx: BuildContext) -> list[CheckResult]:
        made = (deletion_check(result, thresholds.min_deletion_gain), sanity_gate(result))
        return [check for check in made if check is not None]


def _methods(ctx: BuildContext, gradcam_layer: str | None) -> dict[str, Attribution]:
    spec = ctx.config.model
    return standard_methods([layer.name for layer in ctx.conv_layers], gradcam_layer, spec.channel_mean, spec.channel_std)


def _original_maps(ctx: BuildContext, methods: dict[str, Attribution], images: torch.Tensor, targets: list[int]) -> dict[str, torch.Tensor]:
    outputs = torch.tensor(targets, dtype=torch.long, device=ctx.device)
    return {
        name: attribute(method, ctx.model.module, images.to(ctx.device), outputs, ctx.options.batch_size)
        for name, method in methods.items()
    }


def _scorecard(
    ctx: BuildContext, names: list[str], indices: list[int], images: torch.Tensor, targets: list[int],
    originals: dict[str, torch.Tensor], per_side: int, fill: torch.Tensor,
) -> list[MethodCurves]:
    """Every image's deletion and insertion curves (one job per image), summarised per method."""
    jobs = [
        (index, images[n], targets[n], {name: maps[n] for name, maps in originals.items()}, per_side, fill)
        for n, index in enumerate(indices)
    ]
    return summarise(names, ctx.map(_image_curves, jobs, desc="faithfulness"))


def _image_curves(ctx: BuildContext, job: tuple) -> np.ndarray:
    index, image, target, maps, per_side, fill = job
    rng = np.random.default_rng([ctx.config.seed, index])  # the same orders wherever it runs
    orders = ctx.config.analyses.faithfulness.random_orders
    return image_curves(ctx.model.module, image.to(ctx.device), target, maps, per_side, orders, fill, rng, ctx.options.batch_size)


def _sanity(
    ctx: BuildContext, methods: dict[str, Attribution], images: torch.Tensor, targets: list[int],
    originals: dict[str, torch.Tensor], gradcam_layer: str | None, settings: FaithfulnessSettings,
) -> tuple[list[str], list[SanityCheck]]:
    """The randomisation stages (one job each) and each method's check over them."""
    stages = randomisation_stages(ctx.model.module, images[:1].to(ctx.device), settings.stages)
    if not stages:  # no layer with parameters to re-initialise
        return [], []
    outputs = torch.tensor(targets, dtype=torch.long)
    jobs = [(names, images, outputs, originals, gradcam_layer) for _, names in stages]
    per_stage = ctx.map(_stage_correlations, jobs, desc="sanity check")
    checks = [sanity_summary(name, [stage[name] for stage in per_stage], settings.threshold) for name in methods]
    return [label for label, _ in stages], checks


def _stage_correlations(ctx: BuildContext, job: tuple) -> dict[str, list[float]]:
    names, images, targets, originals, gradcam_layer = job
    return sanity_check(ctx.model.module, images.to(ctx.device), targets.to(ctx.device), _methods(ctx, gradcam_layer),
                        originals, names, ctx.config.seed, ctx.options.batch_size)


def summarise(names: list[str], curves: list[np.ndarray]) -> list[MethodCurves]:
    """Per method (and random, last): mean curves, areas per image, their intervals, and the
    paired gain over random."""
    stacked = np.stack(curves)  # image × method × (deletion, insertion) × step
    areas = np.array([[[area(c) for c in pair] for pair in image] for image in stacked])
    random = areas[:, -1]
    summaries = []
    for m, name in enumerate(names):
        own = areas[:, m]
        is_random = m == len(names) - 1
        summaries.append(MethodCurves(
            method=name,
            deletion=stacked[:, m, 0].mean(axis=0).tolist(),
            insertion=stacked[:, m, 1].mean(axis=0).tolist(),
            deletion_areas=own[:, 0].tolist(),
            insertion_areas=own[:, 1].tolist(),
            deletion_area=estimate(own[:, 0]),
            insertion_area=estimate(own[:, 1]),
            deletion_gain=None if is_random else estimate(random[:, 0] - own[:, 0]),
            insertion_gain=None if is_random else estimate(own[:, 1] - random[:, 1]),
        ))
    return summaries


def sanity_summary(method: str, stages: list[list[float]], threshold: float) -> SanityCheck:
    """One method's check from its correlations per stage and image."""
    means = [float(np.mean(values)) for values in stages]
    return SanityCheck(method, means, stages, means[-1] > threshold)


# Checks -----------------------------------------------------------------------------------------


def deletion_check(result: FaithfulnessResult, limit: float) -> CheckResult | None:
    """Each heatmap's paired deletion gain over random held to the minimum, by its 95% interval (as
    the finding's verdict): failing when the interval lies below it, warning when it reaches below
    it (eight images cannot tell the two apart), passing when it lies above; the worst is shown. The
    reference is not held to it: it is shown for comparison, not as an explanation."""
    gated = [c for c in result.methods if c.method != REFERENCE]
    if not gated:
        return None

    def status(curves: MethodCurves) -> str:
        low, high = bounds(curves.deletion_gain)
        return judged(high < limit, low < limit)

    worst = min(gated, key=lambda c: (-CheckResult.STATUSES.index(status(c)), c.deletion_gain.mean))
    gain = worst.deletion_gain
    interval = "" if gain.low is None else f", 95% interval [{_signed(gain.low)}, {_signed(gain.high)}]"
    return CheckResult(
        "heatmap faithfulness", status(worst), f"{worst.method}: {_signed(gain.mean)}",
        f"deletion gain over random ≥ {limit:.2f}".replace("-", "−"),
        f"{worst.method}'s deletion area {worst.deletion_area.mean:.3f} vs random's {result.random.deletion_area.mean:.3f}"
        f"{interval}, over {len(result.indices)} image(s)",
        "relevance.html#faithfulness",
    )


def _signed(value: float) -> str:
    """+0.123 or −0.123 (a minus sign, as the other checks print)."""
    return f"{value:+.3f}".replace("-", "−")


def sanity_gate(result: FaithfulnessResult) -> CheckResult | None:
    """Fails when a heatmap is insensitive to the model (its maps survive the randomisation of every
    layer); warns when only the reference is."""
    if not result.sanity:
        return None
    flagged = [c.method for c in result.insensitive if c.method != REFERENCE]
    reference = [c.method for c in result.insensitive if c.method == REFERENCE]
    highest = max(result.sanity, key=lambda c: c.correlations[-1])
    detail = (
        f"insensitive to the model: {', '.join(flagged or reference)}" if flagged or reference
        else f"rank correlation with the original maps once {result.stages[-1]} is re-initialised"
    )
    return CheckResult(
        "heatmap sanity check", judged(bool(flagged), bool(reference)), f"{highest.method}: {highest.correlations[-1]:.2f}",
        f"≤ {result.threshold:.2f}", detail, "relevance.html#faithfulness-sanity",
    )


# Rendering --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaithfulnessOverview:
    result: FaithfulnessResult
    curves: str | None  # chart paths; None when there is nothing to draw
    sanity: str | None


def verdict(gain: Estimate) -> int:
    """+1 better than random, −1 worse, 0 not told apart: by the 95% interval of the paired gain,
    or by its sign when a single image gives no interval."""
    low, high = bounds(gain)
    return 1 if low > 0 else -1 if high < 0 else 0


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def faithfulness_finding(result: FaithfulnessResult) -> str:
    """The index's sentence: each method's areas against random's, which beat random (by the 95%
    interval of the paired gain) and which lose to it, and the sanity check's flags."""
    random = result.random
    if not result.indices or random is None:
        return "Heatmap faithfulness: no image was explained, so nothing was measured."
    areas = ", ".join(f"{c.method} {c.deletion_area.mean:.2f} / {c.insertion_area.mean:.2f}" for c in result.methods)
    sentence = (f"Heatmap faithfulness on {len(result.indices)} image(s), deletion / insertion areas against random "
                f"order's {random.deletion_area.mean:.2f} / {random.insertion_area.mean:.2f}: {areas}.")
    for sign, words in ((1, "Faster than random"), (-1, "Slower than random")):
        clauses = [
            f"on {kind}: {_listed(names)}" for kind in ("deletion", "insertion")
            if (names := [c.method for c in result.methods if verdict(getattr(c, f"{kind}_gain")) == sign])
        ]
        if clauses:
            sentence += f" {words} " + "; ".join(clauses) + "."
        elif sign == 1:
            sentence += " No method beats random order on either curve."
    if result.insensitive:
        flagged = ", ".join(f"{c.method} ({c.correlations[-1]:.2f})" for c in result.insensitive)
        sentence += (f" The sanity check flags {flagged} as insensitive to the model: the maps keep their rank "
                     "correlation with the original when every layer is re-initialised.")
    elif result.sanity:
        highest = max(c.correlations[-1] for c in result.sanity)
        sentence += f" Re-initialising the model changes every method's maps (rank correlation at most {highest:.2f})."
    return sentence


_COLOURS = {"LRP": "#d62728", "Grad-CAM": "#1f77b4", "gradient × input": "#2ca02c", RANDOM: "grey"}


def curves_chart(result: FaithfulnessResult) -> plt.Figure:
    """Mean deletion and insertion curves per method, random dashed."""
    figure, axes = plt.subplots(1, 2, figsize=(8.4, 3.0), sharey=True)
    for c in result.curves:
        x = np.linspace(0, 1, len(c.deletion))
        style = {"color": _COLOURS.get(c.method), "linestyle": "--" if c.method == RANDOM else "-"}
        axes[0].plot(x, c.deletion, label=f"{c.method} ({c.deletion_area.mean:.2f})", **style)
        axes[1].plot(x, c.insertion, label=f"{c.method} ({c.insertion_area.mean:.2f})", **style)
    for ax, title in zip(axes, ("deletion (lower is better)", "insertion (higher is better)")):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("share of patches deleted" if ax is axes[0] else "share of patches inserted")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="method (area)", title_fontsize=7)
    axes[0].set_ylabel("probability of the explained output")
    figure.tight_layout()
    return figure


def sanity_chart(result: FaithfulnessResult) -> plt.Figure:
    """Mean rank correlation with the original maps at each randomisation stage, per method."""
    figure, axes = plt.subplots(figsize=(8.4, 3.0))  # as wide as the curves: the same type size on the page
    labels = ["original", *result.stages]
    for check in result.sanity:
        axes.plot(range(len(labels)), [1.0, *check.correlations], marker="o", markersize=4, label=check.method,
                  color=_COLOURS.get(check.method))
    axes.axhline(result.threshold, color="grey", linewidth=0.8, linestyle=":", label="flag threshold")
    axes.set_xticks(range(len(labels)), labels, fontsize=7)
    axes.set_xlabel("re-initialised, cumulatively from the output")
    axes.set_ylabel("rank correlation with original")
    axes.set_ylim(min(-0.05, *(min(c.correlations) - 0.05 for c in result.sanity)), 1.05)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    return figure
