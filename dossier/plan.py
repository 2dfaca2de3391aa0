"""What a build will cost before it starts (`dossier plan`), and the time budget that caps it.

Every stage is estimated from real steps timed on the build's device: one batch of the data pass
through every consumer, one optimisation step per layer, one relevance batch, one probe fit, and
so on. Each analysis turns those timings into the cost of its work at the configured settings
(`Analysis.cost`), so a reduced setting is re-estimated without timing anything again. Under a
budget the planner reduces settings in a documented order (each analysis declares its
`reductions`, ranked) until the estimate fits, and says what it reduced.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dossier.errors import ConfigError

if TYPE_CHECKING:
    from dossier.analyses.base import Analysis, BuildContext
    from dossier.config import Config

log = logging.getLogger(__name__)

CPU_BUDGET = 20 * 60.0  # seconds: `budget: auto` on a CPU; a GPU build has none unless asked
BUDGET_MARGIN = 0.85  # plan to this share of the budget: estimates are within ±35%, not exact
_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m(?:in)?)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$")


@dataclass(frozen=True)
class Cost:
    """What one stage will take."""

    work: str  # what it does, in its own units: "4,800 units × 2 images × 48 steps"
    seconds: float
    peak_mib: float = 0.0  # memory it needs beyond the model's, at its peak
    shrink: str = ""  # the config keys that make it cheaper


@dataclass(frozen=True)
class Reduction:
    """A cheaper value of a setting, tried in order of `rank` (then of the analyses)."""

    key: str
    values: tuple[Any, ...]  # the values tried, each cheaper than the last
    why: str  # what the reader loses, as the pages say it
    rank: int  # 1: optimised images for fewer units; 2: fewer optimisation steps; 3: smaller samples


@dataclass(frozen=True)
class Applied:
    """A reduction the budget made: the pages and the PDF say each one."""

    analysis: str
    key: str
    before: Any
    after: Any
    why: str

    @property
    def setting(self) -> str:
        return f"analyses.{self.analysis}.{self.key}"


@dataclass(frozen=True)
class Stage:
    key: str  # an analysis' name, or "data pass", "render site", "render PDF"
    title: str
    cost: Cost


@dataclass
class Plan:
    device: str
    stages: list[Stage]
    budget: float | None  # seconds the computing and rendering may take, from now
    reductions: list[Applied] = field(default_factory=list)
    planning_seconds: float = 0.0
    started: float = 0.0  # wall-clock time the computing started, after the plan

    @property
    def total(self) -> float:
        return sum(stage.cost.seconds for stage in self.stages)

    def after(self, key: str) -> float:
        """Estimated seconds of the stages after the one named."""
        keys = [stage.key for stage in self.stages]
        return sum(stage.cost.seconds for stage in self.stages[keys.index(key) + 1 :]) if key in keys else 0.0

    def seconds_of(self, key: str) -> float:
        return next((stage.cost.seconds for stage in self.stages if stage.key == key), 0.0)

    def table(self) -> str:
        """The plan as `dossier plan` prints it."""
        rows = [("stage", "work", "estimated time", "peak memory")]
        rows += [
            (s.title, s.cost.work, duration(s.cost.seconds), f"{s.cost.peak_mib:,.0f} MiB") for s in self.stages
        ]
        widths = [max(len(row[c]) for row in rows) for c in range(4)]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
        heaviest = sorted(self.stages, key=lambda s: -s.cost.seconds)[:3]
        lines.append("")
        lines.append("dominated by: " + "; ".join(
            f"{s.title} ({100 * s.cost.seconds / max(self.total, 1e-9):.0f}%"
            + (f", shrink with {s.cost.shrink})" if s.cost.shrink else ")")
            for s in heaviest
        ))
        if self.reductions:
            lines.append(f"to fit the budget of {duration(self.budget)}:")
            lines += [f"  {r.setting}: {r.before} → {r.after} ({r.why})" for r in self.reductions]
        elif self.budget is not None:
            lines.append(f"fits the budget of {duration(self.budget)} without reductions")
        lines.append(f"estimated total: {duration(self.total)} on {self.device}")
        return "\n".join(lines)


def parse_budget(value: str | float | None, device: torch.device) -> float | None:
    """Seconds, from "20m", "1h30m", "90s", "45" (minutes) or auto; None for no budget."""
    if value is None or value == "none":
        return None
    if value == "auto":
        return CPU_BUDGET if device.type == "cpu" else None
    if isinstance(value, (int, float)):
        return float(value) * 60
    match = _DURATION.match(str(value))
    if not str(value).strip() or not match or not any(match.groups()):
        if re.fullmatch(r"\s*\d+(\.\d+)?\s*", str(value)):
            return float(value) * 60
        raise ConfigError(f"budget: '{value}' is not a duration (use e.g. 20m, 1h30m, 90s, auto or none)")
    hours, minutes, seconds = (float(part) if part else 0.0 for part in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ConfigError(f"budget: '{value}' must be longer than zero")
    return total


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "none"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


_STEADY_SECONDS = 1.0  # a step this long is timed once: the machine's noise is small against it


class Probe:
    """Times real steps once each and remembers them: the measurements a plan is made of."""

    def __init__(self, ctx: BuildContext) -> None:
        self.ctx = ctx
        self._seconds: dict[Any, float] = {}

    def seconds(self, key: Any, step: Callable[[], Any], warm_up: bool = True, repeats: int = 1) -> float:
        """Wall time of one run of step (after one untimed run, which pays one-off costs such as
        allocations and compilation when warm_up is set); the fastest of up to `repeats` short
        runs, as the others carry the machine's noise."""
        if key not in self._seconds:
            if warm_up:
                step()
            fastest = float("inf")
            for _ in range(repeats):
                self._sync()
                start = time.perf_counter()
                step()
                self._sync()
                fastest = min(fastest, time.perf_counter() - start)
                if fastest > _STEADY_SECONDS:
                    break
            self._seconds[key] = fastest
        return self._seconds[key]

    def optimisation(self, layer: str, batch: int, steps: int, parameterisation: str) -> float:
        """Feature visualisation of `batch` images at a layer for `steps` steps (forward cut at
        the layer, backward, Adam), from real runs at the anchor layers."""
        setup, fixed, per_image = self.across_layers(layer, lambda anchor: self._step_model(anchor, parameterisation))
        return setup + steps * (fixed + per_image * batch)

    def anchors(self) -> list[str]:
        """The layers where per-layer work is timed: the first, the middle and the deepest
        convolution by the arithmetic a forward pass does up to them."""
        work = self.work_up_to()
        convs = [layer.name for layer in self.ctx.conv_layers if layer.name in work] or list(work)
        ranked = sorted(convs, key=work.get)
        return list(dict.fromkeys([ranked[0], ranked[len(ranked) // 2], ranked[-1]]))

    def across_layers(self, layer: str, timed: Callable[[str], tuple[float, ...]]) -> tuple[float, ...]:
        """Timings taken at the anchor layers (`timed(anchor)`), interpolated at any layer on the
        multiply-adds up to it: a step's cost grows with the forward pass cut at the layer."""
        work = self.work_up_to()
        anchors = self.anchors()
        at = [work[anchor] for anchor in anchors]
        values = [timed(anchor) for anchor in anchors]
        where = work.get(layer, at[-1])
        return tuple(max(0.0, float(np.interp(where, at, [v[k] for v in values]))) for k in range(len(values[0])))

    def _step_model(self, layer: str, parameterisation: str) -> tuple[float, float, float]:
        """(set-up, fixed part of a step, each image's part of a step) at one layer, from real runs
        at 1 and 16 images, 1 and 5 steps."""
        from dossier.featurevis import Transforms, optimise, whole_layer

        config = self.ctx.config.model
        largest, steps = 16, 5

        def timed(images: int, count: int) -> float:
            def run() -> None:
                optimise(
                    self.ctx.model.module, whole_layer(layer), [layer], images, config.input_size,
                    config.channel_mean, config.channel_std, count, 0, parameterisation, Transforms(), device=self.ctx.device,
                )

            key = ("optimisation", layer, images, count, parameterisation)
            return self.seconds(key, run, warm_up=(images, count) == (largest, 1), repeats=2)

        many_once, many, one = timed(largest, 1), timed(largest, steps), timed(1, steps)
        step_many = max(0.0, (many - many_once) / (steps - 1))
        setup = max(0.0, many_once - step_many)
        step_one = max(0.0, (one - setup) / steps)
        per_image = max(0.0, (step_many - step_one) / (largest - 1))
        return setup, max(0.0, step_one - per_image), per_image

    def work_up_to(self) -> dict[str, float]:
        """Per recorded layer, the multiply-adds of a forward pass that stops after it."""

        def measure() -> dict[str, float]:
            from dossier.capture import hooks

            modules = dict(self.ctx.model.module.named_modules())
            done: dict[str, float] = {}
            total = [0.0]

            def count(name: str):
                def hook(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
                    weight = getattr(module, "weight", None)
                    if isinstance(weight, torch.Tensor) and isinstance(output, torch.Tensor):
                        # each output value is a dot product over the weights of one unit
                        total[0] += output[0].numel() * weight[0].numel()
                    done.setdefault(name, total[0])

                return hook

            probe = torch.zeros(1, *self.ctx.config.model.input_size, device=self.ctx.device)
            with torch.no_grad(), hooks(self.ctx.model.module, {name: count(name) for name in modules if name}):
                self.ctx.model.module(probe)
            return {layer.name: done[layer.name] for layer in self.ctx.recorded_layers if layer.name in done}

        return self.remember("work up to", measure)

    def forward_per_image(self) -> float:
        """The model's forward pass with every recorded layer hooked, per image."""
        from dossier.capture import recording

        batch = min(self.ctx.options.batch_size, 16)
        images = torch.randn(batch, *self.ctx.config.model.input_size, device=self.ctx.device)
        layers = [layer.name for layer in self.ctx.recorded_layers]

        def forward() -> None:
            with torch.no_grad(), recording(self.ctx.model.module, layers):
                self.ctx.model.module(images)

        return self.seconds(("forward", batch), forward) / batch

    def image_seconds(self) -> float:
        """Reading and resizing one data-set image (exemplars and patches read them again)."""
        dataset = self.ctx.dataset
        count = min(8, len(dataset))
        return self.seconds("image", lambda: [dataset.image(i) for i in range(count)]) / max(1, count)

    def cpu_seconds(self, key: Any, step: Callable[[], Any]) -> float:
        """Like seconds(), with one BLAS thread: how per-layer CPU tasks run in a build."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            return self.seconds(key, step)

    def remember(self, key: Any, measure: Callable[[], Any]) -> Any:
        """The result of a measurement made once (for those that time themselves)."""
        if key not in self._seconds:
            self._seconds[key] = measure()
        return self._seconds[key]

    def _sync(self) -> None:
        if self.ctx.device.type == "cuda":
            torch.cuda.synchronize(self.ctx.device)


Estimator = Callable[["BuildContext", list["Analysis"], Probe, "Config"], list[Stage]]


def _cost(analysis: Analysis, ctx: BuildContext, probe: Probe, config: Config) -> Cost | None:
    """The analysis's estimate, or None when estimating fails: the analysis itself will then
    fail in its own place in the build and be reported there, not end the build here."""
    try:
        return analysis.cost(ctx, probe, analysis.settings(config))
    except Exception as exc:  # a section's estimate must not take the other sections down
        log.warning("%s: no estimate (%s: %s)", analysis.name, type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
        return None


def plan_build(
    ctx: BuildContext, analyses: list[Analysis], budget: float | None, data_pass: Estimator, render: Estimator
) -> tuple[Plan, Config]:
    """Estimate every stage; under a budget, reduce settings until the estimate fits. Returns
    the plan and the config to build with (the reduced one)."""
    started = time.perf_counter()
    probe = Probe(ctx)

    def estimate(config: Config) -> list[Stage]:
        stages = data_pass(ctx, analyses, probe, config)
        for analysis in analyses:
            cost = _cost(analysis, ctx, probe, config)
            if cost is not None:
                stages.append(Stage(analysis.name, analysis.title, cost))
        return stages + render(ctx, analyses, probe, config)

    config, reductions = ctx.config, []
    if budget is not None:
        # the planning itself spends the budget too: on a big model its timed steps take minutes
        config, reductions = _fit(analyses, config, estimate, lambda: (budget - (time.perf_counter() - started)) * BUDGET_MARGIN)
    plan = Plan(str(ctx.device), estimate(config), budget, reductions)
    plan.planning_seconds = time.perf_counter() - started
    return plan, config


def _fit(
    analyses: list[Analysis], config: Config, estimate: Callable[[Config], list[Stage]], target: Callable[[], float]
) -> tuple[Config, list[Applied]]:
    """Apply reductions in rank order until the estimate is under target() (or none are left);
    within a rank, the costliest stage first."""
    applied: list[Applied] = []
    seconds = {stage.key: stage.cost.seconds for stage in estimate(config)}
    ladder = sorted(
        ((reduction.rank, -seconds.get(analysis.name, 0.0), analysis.order, analysis, reduction)
         for analysis in analyses for reduction in analysis.reductions),
        key=lambda item: item[:3],
    )

    def total(config: Config) -> float:
        return sum(stage.cost.seconds for stage in estimate(config))

    for *_, analysis, reduction in ladder:
        for value in reduction.values:
            if total(config) <= target():
                return config, _merged(applied)
            current = getattr(analysis.settings(config), reduction.key)
            if current is not None and not _cheaper(value, current):
                continue
            config = with_setting(config, analysis.name, reduction.key, value)
            applied.append(Applied(analysis.name, reduction.key, current, value, reduction.why))
    if total(config) > target():
        log.warning("the budget cannot be met even with every reduction; the build will run over it")
    return config, _merged(applied)


def _cheaper(value: Any, current: Any) -> bool:
    return value < current if isinstance(value, (int, float)) and isinstance(current, (int, float)) else value != current


def _merged(applied: list[Applied]) -> list[Applied]:
    """One line per setting: from its configured value to its final one."""
    merged: dict[tuple[str, str], Applied] = {}
    for step in applied:
        key = (step.analysis, step.key)
        first = merged.get(key, step)
        merged[key] = Applied(step.analysis, step.key, first.before, step.after, step.why)
    return list(merged.values())


def with_setting(config: Config, analysis: str, key: str, value: Any) -> Config:
    """The config with one analysis setting changed (configs are frozen)."""
    settings = getattr(config.analyses, analysis).model_copy(update={key: value})
    analyses = config.analyses.model_copy(update={analysis: settings})
    changed = config.model_copy(update={"analyses": analyses})
    changed._path = config.path
    return changed


def ceil_div(a: int, b: int) -> int:
    return -(-a // b) if b else 0


def footprint(value: Any, seen: set[int] | None = None) -> int:
    """Bytes of the arrays and tensors a statistic holds (what grows with the data)."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(footprint(v, seen) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(footprint(v, seen) for v in value)
    if hasattr(value, "__dict__") and not isinstance(value, torch.nn.Module):
        return footprint(vars(value), seen)
    return 0


def random_codes(images: int, features: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Code vectors and labels of the shape an analysis will see, to time it before the data pass."""
    rng = np.random.default_rng(seed)
    labels = np.arange(images) % max(1, classes)
    centres = rng.normal(size=(max(1, classes), features)).astype(np.float32)
    return centres[labels] + rng.normal(size=(images, features)).astype(np.float32), labels


SIDE_BY_SIDE_GAIN = 0.5  # each extra worker adds about half a worker: measured with bench/plan.py on 2 cores


def side_by_side(seconds: list[float], workers: int) -> float:
    """How long independent tasks take on `workers` at once: at least the longest task. Per-layer
    CPU tasks side by side share the GIL and the memory bus, so two of them take about 1.5 times
    as long as one (measured on GoogLeNet and the sample: TDA rings, clusters, k-means)."""
    effective = 1 + SIDE_BY_SIDE_GAIN * (max(1, workers) - 1)
    return max(max(seconds, default=0.0), sum(seconds) / effective)


