"""`dossier build` in two phases: compute every result, then render; output replaced atomically."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import logging
import os
import resource
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dossier import __version__, results as results_io
from dossier.analyses import ALWAYS_RUN, REGISTRY, BuildContext, finding, ordered, warnings
from dossier.analyses.base import Analysis
from dossier.capture import PassOptions, data_pass, shard_ranges
from dossier.config import Config
from dossier.data import load_dataset
from dossier.distributed import ContextSpec, Executor, LocalExecutor, executor_for, register_context
from dossier.errors import DataError, DossierError
from dossier.layers import discover_layers
from dossier.manifest import file_sha256, write_manifest
from dossier.model_source import load_model, resolve_device
from dossier.output import output_lock, staged
from dossier.plan import Cost, Plan, Probe, Stage, duration, footprint, parse_budget, plan_build
from dossier.provenance import Provenance, Stopwatch, environment, package_versions
from dossier.report.kit import CheckResult, ViewKit
from dossier.report.pages import Report, build_report
from dossier.report.render import export_text, write_export, write_pdf, write_site

log = logging.getLogger(__name__)

CPU_BATCH = 64  # images per forward pass on a CPU when batch_size is auto
_MEMORY_SHARE = 0.4  # of the GPU's free memory a data-pass batch may take (activations are kept)
_PROBE_IMAGES = 4  # images of the forward that measures a batch's memory


@dataclass(frozen=True)
class BuildOutcome:
    out_dir: Path
    index: Path
    pdf: Path | None
    export: Path
    seconds: float
    checks: list[CheckResult]


@dataclass(frozen=True)
class ComputedResults:
    results: dict[str, Any]
    failures: dict[str, str]  # analysis -> what went wrong
    not_applicable: dict[str, str]  # analysis -> why it does not apply to this model
    cached: list[str]
    plan: Plan | None = None  # the estimate the build was made with, and what the budget reduced
    checks: list[CheckResult] = dataclasses.field(default_factory=list)


def run_checks(ctx: BuildContext, results: dict[str, Any]) -> list[CheckResult]:
    """Every section's release checks, in report order, against the config's thresholds."""
    return [check for cls in ordered(results) for check in cls().checks(results[cls.name], ctx.config.checks, ctx)]


def selected_analyses(only: list[str] | None = None) -> list[str]:
    """The analyses a build runs, in report order: the named ones (every one when None) and those
    that always run."""
    return [cls.name for cls in ordered([*ALWAYS_RUN, *(only if only is not None else REGISTRY)])]


def default_out_dir(config_path: Path) -> Path:
    return Path("build") / config_path.stem


def cache_dir_for(out_dir: Path) -> Path:
    """Results and the trained sample model live beside the output, outside what is published."""
    return out_dir.resolve().parent / ".dossier-cache"


def build(
    config: Config,
    out_dir: Path,
    *,
    device: str | None = None,
    pdf: bool = True,
    only: list[str] | None = None,
    strict: bool = False,
    scheduler: str | None = None,
    budget: str | None = None,
) -> BuildOutcome:
    """Run every selected analysis and write the site, the PDF and dossier.json into out_dir.
    `budget` (e.g. "20m", "none") overrides the config's."""
    started = time.perf_counter()
    out_dir = out_dir.resolve()
    with output_lock(out_dir):
        return _locked_build(config, out_dir, device, pdf, only, strict, scheduler, budget, started)


def _locked_build(
    config: Config, out_dir: Path, device: str | None, pdf: bool, only: list[str] | None,
    strict: bool, scheduler: str | None, budget: str | None, started: float,
) -> BuildOutcome:
    watch = Stopwatch()
    cache_dir = cache_dir_for(out_dir)
    executor = executor_for(scheduler or config.scheduler)
    try:
        ctx = load_context(config, cache_dir, device or config.device, watch, executor)
        seconds = parse_budget(budget if budget is not None else config.budget, ctx.device)
        names = selected_analyses(only)
        computed = compute_results(ctx, names, cache_dir, watch, strict, seconds, pdf)
        computed = dataclasses.replace(computed, checks=run_checks(ctx, computed.results))
    finally:
        executor.close()
    log.info("[5/5] rendering the site%s", " and the PDF" if pdf else "")
    config = ctx.config  # with the budget's reductions, if any
    provenance = _provenance(config, ctx, watch, computed.cached)
    with staged(out_dir) as staging:
        # dossier.json is published with the site: its size counts against output.site_mb
        export_bytes = len(export_text(export_document(config, provenance, ctx.layers, computed)).encode())
        with watch.stage("render site"):
            report = render_site(config, ctx, computed, provenance, staging, pdf, watch, export_bytes)
        if pdf:
            with watch.stage("render PDF"):
                render_pdf(report, staging, config.output.pdf_mb)
        provenance = dataclasses.replace(provenance, stage_seconds=dict(watch.seconds))
        write_export(export_document(config, provenance, ctx.layers, computed), staging)
        inputs = {
            "weights_sha256": provenance.weights_sha256, "data_sha256": provenance.data_sha256,
            "config_sha256": file_sha256(config.path),
            # the files a section's settings name (concept images), keyed like the config
            **{f"analyses.{name}.{key}": sha for name in computed.results for key, sha in REGISTRY[name]().inputs(ctx).items()},
        }
        write_manifest(staging, inputs, {"dossier": __version__, **provenance.packages})
    return BuildOutcome(
        out_dir=out_dir,
        index=out_dir / "index.html",
        pdf=out_dir / "dossier.pdf" if pdf else None,
        export=out_dir / "dossier.json",
        seconds=time.perf_counter() - started,
        checks=computed.checks,
    )


def plan(
    config: Config, cache_dir: Path, *, device: str | None = None, budget: str | None = None,
    only: list[str] | None = None, pdf: bool = True, startup: float = 0.0,
) -> Plan:
    """`dossier plan`: what a cold build of the config would take, stage by stage, timed on the
    device; with a budget, what would be reduced to fit it. `startup`: the seconds the command
    took to start (its imports), which a build takes too."""
    watch = Stopwatch()
    ctx = load_context(config, cache_dir, device or config.device, watch)
    names = selected_analyses(only)
    analyses = [analysis for name in compute_order(names) if (analysis := REGISTRY[name]()).applies(ctx) is None]
    seconds = parse_budget(budget if budget is not None else config.budget, ctx.device)
    result = make_plan(ctx, analyses, None if seconds is None else seconds - watch.total, pdf)
    loading = Stage("load", "start, load model, layers and data", Cost("as measured now", startup + watch.total))
    result.stages.insert(0, loading)
    if seconds is not None:  # a budgeted build times these steps again before it starts
        result.stages.insert(1, Stage("plan", "plan (the budget's estimate)", Cost("as measured now", result.planning_seconds)))
    return result


def render_site(
    config: Config, ctx: BuildContext, computed: ComputedResults, provenance: Provenance, staging: Path, pdf: bool,
    watch: Stopwatch, reserved: int = 0,
) -> Report:
    """Views, pictures and pages. When the site (with `reserved` bytes of files written after it)
    outgrows output.site_mb, the sections whose pictures grow with the units show them for fewer
    units per layer (the most important), and the pages say so."""
    limit = config.output.site_mb * 2**20
    unit_pictures: int | None = None
    shrinking = {cls.name for cls in REGISTRY.values() if cls.unit_pictures}
    units = [layer.units or 0 for layer in ctx.conv_layers]
    reuse = None  # once the site is over its size, only the shrinking sections are drawn again
    while True:
        kit = ViewKit(staging, config, ctx.dataset.class_names, ctx.layers, unit_pictures)
        report = build_report(
            title=config.display_title, author=config.author, provenance=provenance,
            class_names=ctx.dataset.class_names, layers=ctx.layers, results=computed.results,
            failures=computed.failures, not_applicable=computed.not_applicable, kit=kit, plan=computed.plan,
            watch=watch, checks=computed.checks, reuse=reuse,
        )
        report.pdf_name = "dossier.pdf" if pdf else None
        with watch.stage("render: pages"):
            write_site(report, staging)
        size = _size(staging) + reserved
        shrinkable = sum(kit.pictures.bytes.get(name, 0) for name in shrinking)
        shown = unit_pictures or max(units, default=0)
        if size <= limit or not shrinkable or shown <= 1:
            if size > limit:
                log.warning("the site is %.0f MB, over output.site_mb = %g", size / 2**20, config.output.site_mb)
            report.size_mb = size / 2**20
            return report
        # pictures shrink with the units pictured over all layers; keep a tenth of the budget in hand
        fits = max(0.0, 0.9 * limit - (size - shrinkable)) / shrinkable
        unit_pictures = _units_per_layer(units, shown, fits)
        log.info("the site is %.0f MB, over %g MB: pictures for %d units per layer", size / 2**20, config.output.site_mb, unit_pictures)
        reuse = {section.name: section for section in report.sections if section.name not in shrinking}
        for name in shrinking:
            for relative in kit.pictures.files.get(name, []):
                (staging / relative).unlink(missing_ok=True)


def _units_per_layer(units: list[int], shown: int, share: float) -> int:
    """The most units per layer whose pictures are at most `share` of those of `shown` per layer
    (a cap of k pictures min(units, k) units in each layer: small layers keep all theirs)."""
    def pictured(cap: int) -> int:
        return sum(min(count, cap) for count in units)

    target = share * pictured(shown)
    return max((cap for cap in range(1, shown) if pictured(cap) <= target), default=1)


def render_pdf(report: Report, staging: Path, limit_mb: float) -> None:
    """The PDF; laid out again with fewer pictures per layer when it outgrows output.pdf_mb."""
    for per_layer in (None, 4, 2, 1):
        report.print_units = per_layer
        size = write_pdf(report, staging).stat().st_size
        if size <= limit_mb * 2**20:
            return
        log.info("the PDF is %.0f MB, over %g MB: laid out again with fewer pictures per layer", size / 2**20, limit_mb)
    log.warning("the PDF stays over output.pdf_mb = %g", limit_mb)


def _size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def load_context(
    config: Config,
    cache_dir: Path,
    device: str,
    watch: Stopwatch | None = None,
    executor: Executor | None = None,
) -> BuildContext:
    """Model, layers and data of a build, checked against each other. Workers of a distributed
    build call this too, from the spec the driver sends them."""
    stage = watch.stage if watch else (lambda _name: contextlib.nullcontext())
    torch_device = resolve_device(device)
    torch.manual_seed(config.seed)
    with stage("load model"):
        log.info("[1/5] loading the model (%s)", config.model.source)
        model = load_model(config, cache_dir)
        model.module.to(torch_device)
    with stage("discover layers"):
        layers, outputs = discover_layers(
            model.module, config.layers, config.model.input_size, torch_device, model.scripted
        )
        log.info("[2/5] %d layers recorded on %s", len(layers), torch_device)
    with stage("load data"):
        dataset = load_dataset(config, outputs)  # its classes mapped to the outputs, or a DataError
        log.info("[3/5] %d images of %d classes (%s)", len(dataset), len(dataset.class_names), dataset.source)
    options = pass_options(config, model.module, torch_device)
    spec = ContextSpec(config, cache_dir, str(torch_device), uuid.uuid4().hex)
    ctx = BuildContext(config, model, layers, dataset, torch_device, options, executor or LocalExecutor(), spec)
    register_context(spec, ctx)
    return ctx


def pass_options(config: Config, model: torch.nn.Module, device: torch.device) -> PassOptions:
    """Batch size (from the GPU's free memory when auto), loader workers and precision."""
    cuda = device.type == "cuda"
    batch = config.batch_size if config.batch_size != "auto" else (_gpu_batch(model, config, device) if cuda else CPU_BATCH)
    workers = config.loader_workers if config.loader_workers != "auto" else (min(8, os.cpu_count() or 1) if cuda else 0)
    precision = config.mixed_precision == "on" or (config.mixed_precision == "auto" and cuda)
    return PassOptions(device, batch, workers, precision)


def _gpu_batch(model: torch.nn.Module, config: Config, device: torch.device) -> int:
    """As many images as fit in a share of the free memory, measured on a small forward pass."""
    free, _ = torch.cuda.mem_get_info(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    with torch.inference_mode():
        model(torch.zeros(_PROBE_IMAGES, *config.model.input_size, device=device))
    per_image = max(1, (torch.cuda.max_memory_allocated(device) - before) / _PROBE_IMAGES)
    batch = int(max(1, min(1024, free * _MEMORY_SHARE / per_image)))
    log.info("batch size %d from %.1f GiB free on %s", batch, free / 2**30, device)
    return batch


def compute_results(
    ctx: BuildContext,
    names: list[str],
    cache_dir: Path,
    watch: Stopwatch,
    strict: bool,
    budget: float | None = None,
    pdf: bool = True,
) -> ComputedResults:
    """Results of the named analyses: from the cache when their inputs are unchanged, else one
    shared data pass feeds every analysis that needs computing. Under a budget (seconds, from the
    start of the build) the pending work is planned first and reduced until it fits."""
    failures: dict[str, str] = {}
    not_applicable: dict[str, str] = {}
    applicable: list[Analysis] = []
    for name in compute_order(names):
        analysis = REGISTRY[name]()
        reason = analysis.applies(ctx)
        if reason is None:
            applicable.append(analysis)
        else:
            not_applicable[name] = reason
    results, pending = _from_cache(ctx, applicable, cache_dir)
    plan = None
    if pending and budget is not None:
        with watch.stage("plan"):
            plan = make_plan(ctx, [analysis for analysis, _ in pending], budget - watch.total, pdf)
        for line in plan.table().splitlines():
            log.info("plan: %s", line)
        if plan.reductions:
            results, pending = _from_cache(ctx, applicable, cache_dir)
    cached_names = list(results)
    if not pending:
        log.info("[4/5] every analysis is cached: re-rendering only")
        return ComputedResults(results, failures, not_applicable, cached_names, plan)
    consumers = shared_data_pass(ctx, [analysis for analysis, _ in pending], watch)
    ctx.results = results
    for analysis, path in pending:
        if plan is not None:
            ctx.deadline = _deadline(plan, analysis.name)
        with watch.stage(f"analysis: {analysis.name}"):
            try:
                result = analysis.finish(ctx, consumers.get(analysis.name))
            except DossierError:
                raise
            except Exception as exc:  # a failing analysis becomes a card in the report
                if strict or analysis.name in ALWAYS_RUN:
                    raise
                log.warning("analysis %s failed: %s: %s", analysis.name, type(exc).__name__, exc)
                failures[analysis.name] = f"{type(exc).__name__}: {exc}"
                continue
        results_io.save(result, path)
        results[analysis.name] = result
    return ComputedResults(results, failures, not_applicable, cached_names, plan)


def _from_cache(ctx: BuildContext, analyses: list[Analysis], cache_dir: Path) -> tuple[dict[str, Any], list[tuple[Analysis, Path]]]:
    """The results already in the cache, and the analyses still to compute with where they go."""
    results: dict[str, Any] = {}
    pending: list[tuple[Analysis, Path]] = []
    for analysis in analyses:
        path = cache_dir / "results" / f"{analysis.name}-{_result_key(ctx, analysis)}"
        cached = results_io.load(analysis.result_type, path)
        if cached is not None:
            results[analysis.name] = cached
        else:
            pending.append((analysis, path))
    return results, pending


def make_plan(ctx: BuildContext, analyses: list[Analysis], budget: float | None, pdf: bool) -> Plan:
    """Time a few real steps of every stage and estimate the build; under a budget, reduce its
    settings until it fits (ctx then builds with the reduced settings)."""
    plan, config = plan_build(ctx, analyses, budget, data_pass_estimate, functools.partial(render_estimate, pdf=pdf))
    if config is not ctx.config:
        ctx.reconfigure(config)
    plan.started = time.time()
    return plan


def _deadline(plan: Plan, name: str) -> float | None:
    """When an analysis must be done for the stages after it to fit in the budget; and the ETA."""
    now = time.time()
    remaining = plan.seconds_of(name) + plan.after(name)
    log.info(
        "%s: estimated %s; build ETA %s", name, duration(plan.seconds_of(name)),
        datetime.fromtimestamp(now + remaining).strftime("%H:%M:%S"),
    )
    if plan.budget is None:
        return None
    return plan.started + plan.budget - plan.planning_seconds - plan.after(name)


def compute_order(names: list[str]) -> list[str]:
    """Report order, except that an analysis comes after the ones it uses (`after`)."""
    remaining = [cls.name for cls in ordered(names)]
    done: list[str] = []
    while remaining:
        ready = next(n for n in remaining if all(d in done or d not in remaining for d in REGISTRY[n].after))
        remaining.remove(ready)
        done.append(ready)
    return done


# What the site and the PDF are made of, counted on built dossiers (the sample: 5 convolutions,
# 85 PDF pages; GoogLeNet: 57, 459): charts and PDF pages grow with the convolution layers.
_PAGE_SECONDS = 0.05  # rendering one HTML page from its views
_SITE_PIXELS_PER_UNIT = 10  # small pictures a gallery card shows, in thumbnails
_CHARTS, _CHARTS_PER_CONV = 12, 6  # kernel clusters and representatives, rings, Mapper graph, relevance curve, …
_PDF_PAGES, _PDF_PAGES_PER_CONV = 50, 7.2
_PDF_PICTURES = 3.0  # a dossier's page (pictures, charts) ÷ the timed page of tables (sample 2.7, GoogLeNet 3.3)


def data_pass_estimate(ctx: BuildContext, analyses: list[Analysis], probe: Probe, config: Config) -> list[Stage]:
    """Two real batches through every consumer: the time of one batch, and how the statistics'
    memory grows with the data."""
    feeding = tuple(a.name for a in analyses if a.consumer(ctx) is not None)
    if not feeding:
        return []
    batch, images = ctx.options.batch_size, len(ctx.dataset)

    def measure() -> tuple[float, int, int]:
        consumers = [REGISTRY[name]().consumer(ctx) for name in feeding]
        layers = [layer.name for layer in ctx.recorded_layers]
        inputs_of = [ctx.classifier] if ctx.classifier else []

        def feed(rows: range) -> None:
            data_pass(ctx.model.module, ctx.dataset, layers, ctx.options, consumers, indices=rows,
                      logits_layer=_logits_layer(ctx), inputs_of=inputs_of)

        feed(range(0, min(images, batch)))
        first = footprint(consumers)
        started = time.perf_counter()
        feed(range(min(images, batch), min(images, 2 * batch)) if images > batch else range(0, min(images, batch)))
        return time.perf_counter() - started, first, footprint(consumers)

    seconds, first, second = probe.remember(("data pass", feeding), measure)
    batches = -(-images // batch)
    mib = (first + (second - first) * (batches - 1)) / 2**20
    work = f"{images:,} images in {batches} batches of {batch}, {len(ctx.recorded_layers)} layers, {len(feeding)} statistics"
    return [Stage("data pass", "data pass", Cost(work, seconds * batches, mib, "data.limit"))]


def render_estimate(
    ctx: BuildContext, analyses: list[Analysis], probe: Probe, config: Config, pdf: bool = True
) -> list[Stage]:
    """The site and the PDF, from timed pieces: one chart, one megapixel of pictures, one page."""
    import matplotlib.pyplot as plt
    from PIL import Image

    from dossier.report.pictures import SHEET_QUALITY

    convs, units = ctx.conv_layers, sum(layer.units or 0 for layer in ctx.conv_layers)
    side = min(96, max(config.model.input_size[1:]))

    def chart() -> None:
        figure, axes = plt.subplots(figsize=(8, 3.2))
        axes.plot(range(20), range(20), marker="o")
        figure.savefig(io.BytesIO(), dpi=200, bbox_inches="tight")
        plt.close(figure)

    def megapixel() -> None:
        noise = np.random.default_rng(0).integers(0, 255, (1000, 1000, 3), dtype=np.uint8)
        Image.fromarray(noise).save(io.BytesIO(), format="webp", quality=SHEET_QUALITY, method=4)

    charts = _CHARTS + _CHARTS_PER_CONV * len(convs)
    megapixels = units * _SITE_PIXELS_PER_UNIT * side * side / 1e6
    pages = 6 + len(ctx.layers) + units // 64
    site = charts * probe.seconds("chart", chart) + megapixels * probe.seconds("megapixel", megapixel) + pages * _PAGE_SECONDS
    stages = [Stage("render site", "render site", Cost(f"{pages:,} pages, {charts} charts, {megapixels:.0f} Mpx of pictures", site))]
    if pdf:
        pdf_pages = round(_PDF_PAGES + _PDF_PAGES_PER_CONV * len(convs))
        seconds = pdf_pages * _PDF_PICTURES * probe.remember("pdf page", _pdf_page_seconds)
        stages.append(Stage("render PDF", "render PDF", Cost(f"about {pdf_pages} pages", seconds)))
    return stages


def _pdf_page_seconds() -> float:
    """WeasyPrint's time per page, on a few pages of tables like a dossier's."""
    import weasyprint

    rows = "".join(f"<tr><td>{n}</td><td>{n * 0.5:.3f}</td><td>layer {n}</td></tr>" for n in range(40))
    html = "<html><body>" + "".join(f"<h2>Part {k}</h2><table>{rows}</table><p style='break-after: page'></p>" for k in range(3))
    fastest = float("inf")
    for _ in range(3):  # the first lays out with fonts not yet loaded: the fastest of three is a page's cost
        started = time.perf_counter()
        weasyprint.HTML(string=html + "</body></html>").write_pdf()
        fastest = min(fastest, time.perf_counter() - started)
    return fastest / 3


@dataclass
class ShardResult:
    consumers: dict[str, Any]
    seen: int
    skipped: dict[str, str]  # images that could not be read


def shared_data_pass(ctx: BuildContext, analyses: list[Analysis], watch: Stopwatch) -> dict[str, Any]:
    """One pass over the data feeding every analysis that needs one, shard by shard (here or on
    the cluster), each shard's statistics merged into the whole in data-set order."""
    feeding = tuple(a.name for a in analyses if a.consumer(ctx) is not None)
    if not feeding:
        return {}
    with watch.stage("data pass"):
        log.info("[4/5] one pass over the data for: %s", ", ".join(feeding))
        shards = shard_ranges(len(ctx.dataset), ctx.options.batch_size)
        merged: dict[str, Any] = {}
        seen = 0
        # each shard is folded in as it arrives: the memory stays that of one shard's statistics
        for part in ctx.imap(_shard, [(feeding, shard) for shard in shards], desc="data pass"):
            for name, consumer in part.consumers.items():
                if name in merged:
                    merged[name].merge(consumer)
                else:
                    merged[name] = consumer
            ctx.dataset.skipped.update(part.skipped)
            seen += part.seen
    if seen == 0:
        raise DataError(f"data: none of the {len(ctx.dataset)} images could be read")
    return merged


def _shard(ctx: BuildContext, job: tuple[tuple[str, ...], range]) -> ShardResult:
    names, shard = job
    consumers = {name: REGISTRY[name]().consumer(ctx) for name in names}
    seen = data_pass(
        ctx.model.module,
        ctx.dataset,
        [layer.name for layer in ctx.recorded_layers],
        ctx.options,
        list(consumers.values()),
        indices=shard,
        logits_layer=_logits_layer(ctx),
        inputs_of=[ctx.classifier] if ctx.classifier else [],
    )
    return ShardResult(consumers, seen, dict(ctx.dataset.skipped))


def _logits_layer(ctx: BuildContext) -> str | None:
    if not ctx.model.scripted:
        return None
    recorded = ctx.recorded_layers
    return recorded[-1].name if recorded else None


def _result_key(ctx: BuildContext, analysis: Analysis) -> str:
    config = ctx.config
    return results_io.cache_key(
        analysis=analysis.name,
        settings={name: REGISTRY[name]().settings(config).model_dump(mode="json") for name in (analysis.name, *analysis.after)},
        model=config.model.model_dump(mode="json"),
        weights=ctx.model.fingerprint,
        data=ctx.dataset.fingerprint,
        classes=ctx.dataset.classes.fingerprint,
        inputs=analysis.inputs(ctx),
        layers=[layer.name for layer in ctx.layers],
        seed=config.seed,
        device=ctx.device.type,
        mixed_precision=ctx.options.mixed_precision,
        version=__version__,
    )


def _provenance(config: Config, ctx: BuildContext, watch: Stopwatch, cached: list[str]) -> Provenance:
    python, platform_name = environment()
    spec, device = config.model, ctx.device
    return Provenance(
        dossier_version=__version__,
        generated_at=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        config_file=config.path.name,
        config_text=config.path.read_text(encoding="utf-8"),
        model_source=f"{spec.source}: {getattr(spec, spec.source)}",
        weights_source=ctx.model.weights_source,
        weights_sha256=ctx.model.weights_sha256,
        trained=ctx.model.trained,
        data_source=ctx.dataset.source,
        data_sha256=ctx.dataset.fingerprint,
        images=len(ctx.dataset),
        classes=len(ctx.dataset.class_names),
        device=str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        batch_size=ctx.options.batch_size,
        mixed_precision=ctx.options.mixed_precision,
        peak_memory_mib=_peak_memory_mib(device),
        executor=type(ctx.executor).__name__,
        seed=config.seed,
        python=python,
        platform=platform_name,
        packages=package_versions(),
        stage_seconds=dict(watch.seconds),
        cached_analyses=cached,
    )


def _peak_memory_mib(device: torch.device) -> float:
    """The device's peak: GPU memory on CUDA, else this process's peak resident memory."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10, 1)  # Linux reports KiB


def export_document(config: Config, provenance: Provenance, layers, computed: ComputedResults) -> dict[str, Any]:
    """dossier.json: every number the report shows."""
    plan = computed.plan
    return {
        "dossier_version": __version__,
        "title": config.display_title,
        "config": config.model_dump(mode="json"),
        "plan": results_io.to_export(plan) if plan else None,
        "provenance": results_io.to_export(provenance),
        "layers": [
            {**dataclasses.asdict(layer), "depth": depth} for depth, layer in enumerate(layers, start=1)
        ],
        "analyses": {name: results_io.to_export(result) for name, result in computed.results.items()},
        "failures": computed.failures,
        "not_applicable": computed.not_applicable,
        "checks": [results_io.to_export(check) for check in computed.checks],
        "finding": finding(computed.results),
        "warnings": warnings(computed.results),
    }
