"""`dossier build` in two phases: compute every result, then render; output replaced atomically."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from dossier import __version__, results as results_io
from dossier.analyses import ALWAYS_RUN, REGISTRY, BuildContext, finding, ordered
from dossier.capture import data_pass
from dossier.config import Config
from dossier.data import load_dataset
from dossier.errors import DataError, DossierError
from dossier.layers import discover_layers
from dossier.model_source import resolve_device, load_model
from dossier.provenance import Provenance, Stopwatch, environment, package_versions
from dossier.report.kit import ViewKit
from dossier.report.pages import build_report
from dossier.report.render import write_export, write_pdf, write_site

log = logging.getLogger(__name__)

OUTPUT_MARKER = "dossier.json"  # a folder holding it is a dossier output we may replace


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
) -> BuildOutcome:
    """Run every selected analysis and write the site, the PDF and dossier.json into out_dir."""
    out_dir = out_dir.resolve()
    _check_replaceable(out_dir)
    watch = Stopwatch()
    cache_dir = cache_dir_for(out_dir)
    torch_device = resolve_device(device or config.device)
    torch.manual_seed(config.seed)

    with watch.stage("load model"):
        log.info("[1/5] loading the model (%s)", config.model.source)
        model = load_model(config, cache_dir)
        model.module.to(torch_device)
    with watch.stage("discover layers"):
        layers, outputs = discover_layers(
            model.module, config.layers, config.model.input_size, torch_device, model.scripted
        )
        log.info("[2/5] %d layers recorded on %s", len(layers), torch_device)
    with watch.stage("load data"):
        dataset = load_dataset(config)
        log.info("[3/5] %d images of %d classes (%s)", len(dataset), len(dataset.class_names), dataset.source)
        if len(dataset.class_names) != outputs:
            raise DataError(
                f"data: {len(dataset.class_names)} classes but the model outputs {outputs} scores; "
                "the class folders, sorted by name, must match the model's outputs"
            )
    ctx = BuildContext(config, model, layers, dataset, torch_device)
    names = [cls.name for cls in ordered([*ALWAYS_RUN, *(only if only is not None else REGISTRY)])]
    computed = compute_results(ctx, names, cache_dir, watch, strict)

    log.info("[5/5] rendering the site%s", " and the PDF" if pdf else "")
    provenance = _provenance(config, ctx, watch, computed.cached, torch_device)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=_ensure_parent(out_dir)))
    try:
        with watch.stage("render site"):
            report = build_report(
                title=config.display_title,
                author=config.author,
                provenance=provenance,
                class_names=dataset.class_names,
                layers=layers,
                results=computed.results,
                failures=computed.failures,
                not_applicable=computed.not_applicable,
                kit=ViewKit(staging, config, dataset.class_names, layers),
            )
            report.pdf_name = "dossier.pdf" if pdf else None
            write_site(report, staging)
        if pdf:
            with watch.stage("render PDF"):
                write_pdf(report, staging)
        provenance = dataclasses.replace(provenance, stage_seconds=dict(watch.seconds))
        write_export(export_document(config, provenance, layers, computed), staging)
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


def compute_results(
    ctx: BuildContext, names: list[str], cache_dir: Path, watch: Stopwatch, strict: bool
) -> ComputedResults:
    """Results of the named analyses: from the cache when their inputs are unchanged, else one
    shared data pass feeds every analysis that needs computing."""
    results: dict[str, Any] = {}
    failures: dict[str, str] = {}
    not_applicable: dict[str, str] = {}
    pending = []
    for name in names:
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
    consumers = {analysis.name: analysis.consumer(ctx) for analysis, _ in pending}
    feeding = {name: consumer for name, consumer in consumers.items() if consumer is not None}
    if feeding:
        with watch.stage("data pass"):
            log.info("[4/5] one pass over the data for: %s", ", ".join(feeding))
            seen = data_pass(
                ctx.model.module,
                ctx.dataset,
                [layer.name for layer in ctx.recorded_layers],
                ctx.device,
                ctx.config.batch_size,
                list(feeding.values()),
                logits_layer=_logits_layer(ctx),
                inputs_of=[ctx.classifier] if ctx.classifier else [],
            )
        if seen == 0:
            raise DataError(f"data: none of the {len(ctx.dataset)} images could be read")
    for analysis, path in pending:
        with watch.stage(f"analysis: {analysis.name}"):
            try:
                result = analysis.finish(ctx, consumers[analysis.name])
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


def _logits_layer(ctx: BuildContext) -> str | None:
    if not ctx.model.scripted:
        return None
    recorded = ctx.recorded_layers
    return recorded[-1].name if recorded else None


def _result_key(ctx: BuildContext, analysis) -> str:
    config = ctx.config
    return results_io.cache_key(
        analysis=analysis.name,
        settings=analysis.settings(config).model_dump(mode="json"),
        model=config.model.model_dump(mode="json"),
        weights=ctx.model.fingerprint,
        data=ctx.dataset.fingerprint,
        layers=[layer.name for layer in ctx.layers],
        seed=config.seed,
        device=ctx.device.type,
        version=__version__,
    )


def _provenance(config: Config, ctx: BuildContext, watch: Stopwatch, cached: list[str], device: torch.device) -> Provenance:
    python, platform_name = environment()
    spec = config.model
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
        seed=config.seed,
        python=python,
        platform=platform_name,
        packages=package_versions(),
        stage_seconds=dict(watch.seconds),
        cached_analyses=cached,
    )


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
