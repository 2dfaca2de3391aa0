"""`dossier build` in two phases: compute every result, then render; output replaced atomically."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import resource
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from dossier import __version__, results as results_io
from dossier.analyses import ALWAYS_RUN, REGISTRY, BuildContext, finding, ordered
from dossier.analyses.base import Analysis
from dossier.capture import PassOptions, data_pass, shard_ranges
from dossier.config import Config
from dossier.data import load_dataset
from dossier.distributed import ContextSpec, Executor, LocalExecutor, executor_for, register_context
from dossier.errors import DataError, DossierError
from dossier.layers import discover_layers
from dossier.model_source import load_model, resolve_device
from dossier.provenance import Provenance, Stopwatch, environment, package_versions
from dossier.report.kit import ViewKit
from dossier.report.pages import build_report
from dossier.report.render import write_export, write_pdf, write_site

log = logging.getLogger(__name__)

OUTPUT_MARKER = "dossier.json"  # a folder holding it is a dossier output we may replace
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


@dataclass(frozen=True)
class ComputedResults:
    results: dict[str, Any]
    failures: dict[str, str]  # analysis -> what went wrong
    not_applicable: dict[str, str]  # analysis -> why it does not apply to this model
    cached: list[str]


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
) -> BuildOutcome:
    """Run every selected analysis and write the site, the PDF and dossier.json into out_dir."""
    out_dir = out_dir.resolve()
    _check_replaceable(out_dir)
    watch = Stopwatch()
    cache_dir = cache_dir_for(out_dir)
    executor = executor_for(scheduler or config.scheduler)
    try:
        ctx = load_context(config, cache_dir, device or config.device, watch, executor)
        names = [cls.name for cls in ordered([*ALWAYS_RUN, *(only if only is not None else REGISTRY)])]
        computed = compute_results(ctx, names, cache_dir, watch, strict)
    finally:
        executor.close()
    log.info("[5/5] rendering the site%s", " and the PDF" if pdf else "")
    provenance = _provenance(config, ctx, watch, computed.cached)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=_ensure_parent(out_dir)))
    try:
        with watch.stage("render site"):
            report = build_report(
                title=config.display_title,
                author=config.author,
                provenance=provenance,
                class_names=ctx.dataset.class_names,
                layers=ctx.layers,
                results=computed.results,
                failures=computed.failures,
                not_applicable=computed.not_applicable,
                kit=ViewKit(staging, config, ctx.dataset.class_names, ctx.layers),
            )
            report.pdf_name = "dossier.pdf" if pdf else None
            write_site(report, staging)
        if pdf:
            with watch.stage("render PDF"):
                write_pdf(report, staging)
        provenance = dataclasses.replace(provenance, stage_seconds=dict(watch.seconds))
        write_export(export_document(config, provenance, ctx.layers, computed), staging)
        _replace(out_dir, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BuildOutcome(
        out_dir=out_dir,
        index=out_dir / "index.html",
        pdf=out_dir / "dossier.pdf" if pdf else None,
        export=out_dir / "dossier.json",
        seconds=sum(watch.seconds.values()),
    )


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
        dataset = load_dataset(config)
        log.info("[3/5] %d images of %d classes (%s)", len(dataset), len(dataset.class_names), dataset.source)
        if len(dataset.class_names) != outputs:
            raise DataError(
                f"data: {len(dataset.class_names)} classes but the model outputs {outputs} scores; "
                "the class folders, sorted by name, must match the model's outputs"
            )
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
    ctx: BuildContext, names: list[str], cache_dir: Path, watch: Stopwatch, strict: bool
) -> ComputedResults:
    """Results of the named analyses: from the cache when their inputs are unchanged, else one
    shared data pass feeds every analysis that needs computing."""
    results: dict[str, Any] = {}
    failures: dict[str, str] = {}
    not_applicable: dict[str, str] = {}
    pending: list[tuple[Analysis, Path]] = []
    for name in compute_order(names):
        analysis = REGISTRY[name]()
        reason = analysis.applies(ctx)
        if reason is not None:
            not_applicable[name] = reason
            continue
        path = cache_dir / "results" / f"{name}-{_result_key(ctx, analysis)}"
        cached = results_io.load(analysis.result_type, path)
        if cached is not None:
            results[name] = cached
        else:
            pending.append((analysis, path))
    cached_names = list(results)
    if not pending:
        log.info("[4/5] every analysis is cached: re-rendering only")
        return ComputedResults(results, failures, not_applicable, cached_names)
    consumers = shared_data_pass(ctx, [analysis for analysis, _ in pending], watch)
    ctx.results = results
    for analysis, path in pending:
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
    return ComputedResults(results, failures, not_applicable, cached_names)


def compute_order(names: list[str]) -> list[str]:
    """Report order, except that an analysis comes after the ones it uses (`after`)."""
    remaining = [cls.name for cls in ordered(names)]
    done: list[str] = []
    while remaining:
        ready = next(n for n in remaining if all(d in done or d not in remaining for d in REGISTRY[n].after))
        remaining.remove(ready)
        done.append(ready)
    return done


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
        parts = ctx.map(_shard, [(feeding, shard) for shard in shards], desc="data pass")
    merged = parts[0].consumers
    for part in parts[1:]:
        for name, consumer in part.consumers.items():
            merged[name].merge(consumer)
    for part in parts:
        ctx.dataset.skipped.update(part.skipped)
    if sum(part.seen for part in parts) == 0:
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
    return {
        "dossier_version": __version__,
        "title": config.display_title,
        "config": config.model_dump(mode="json"),
        "provenance": results_io.to_export(provenance),
        "layers": [
            {**dataclasses.asdict(layer), "depth": depth} for depth, layer in enumerate(layers, start=1)
        ],
        "analyses": {name: results_io.to_export(result) for name, result in computed.results.items()},
        "failures": computed.failures,
        "not_applicable": computed.not_applicable,
        "finding": finding(computed.results),
    }


def _check_replaceable(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise DossierError(f"--out: '{out_dir}' exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / OUTPUT_MARKER).is_file():
        raise DossierError(
            f"--out: '{out_dir}' is a non-empty folder that is not a dossier output; refusing to replace it"
        )


def _ensure_parent(out_dir: Path) -> Path:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return out_dir.parent


def _replace(out_dir: Path, staging: Path) -> None:
    """Swap the finished build into place; the old output survives until the new one is there."""
    staging.chmod(0o755)
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    retired = out_dir.with_name(f".{out_dir.name}.old-{staging.name.rsplit('.', 1)[-1]}")
    out_dir.rename(retired)
    try:
        staging.rename(out_dir)
    except OSError:
        retired.rename(out_dir)
        raise
    shutil.rmtree(retired, ignore_errors=True)
