"""`dossier compare A.yaml B.yaml`: both dossiers' results (from their caches when they were built
before), one joint pass, then the comparison's site, PDF and comparison.json, swapped into place
atomically as a build's output is."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from dossier import __version__
from dossier.build import cache_dir_for, compute_results, default_out_dir, load_context, selected_analyses
from dossier.compare.comparison import Comparison, Side, compare_models
from dossier.compare.report import build_comparison_report, write_comparison_pdf, write_comparison_site
from dossier.config import Config
from dossier.data import load_dataset
from dossier.distributed import LocalExecutor
from dossier.errors import DossierError
from dossier.manifest import file_sha256, write_manifest
from dossier.output import output_lock, staged
from dossier.plan import parse_budget
from dossier.provenance import Stopwatch, package_versions
from dossier.report.render import write_export
from dossier.results import to_export

log = logging.getLogger(__name__)

OUTPUT_MARKER = "comparison.json"  # a folder holding it is a comparison output we may replace


@dataclass(frozen=True)
class CompareOutcome:
    out_dir: Path
    index: Path
    pdf: Path | None
    export: Path
    seconds: float


def default_compare_dir(config_a: Path, config_b: Path) -> Path:
    return Path("build") / f"compare-{config_a.stem}-{config_b.stem}"


def compare(
    config_a: Config,
    config_b: Config,
    out_dir: Path,
    *,
    device: str | None = None,
    pdf: bool = True,
    budget: str | None = None,
    threshold: float = 0.5,
    heatmap_images: int = 24,
) -> CompareOutcome:
    """Compare model B with model A on A's data and write the comparison into out_dir. `budget`
    (e.g. "20m", "none") overrides both configs'."""
    out_dir = out_dir.resolve()
    check_compatible(config_a, config_b)
    with output_lock(out_dir, OUTPUT_MARKER, "comparison"):
        watch = Stopwatch()
        a = _side("A", config_a, device, budget, watch)
        b = _side("B", config_b, device, budget, watch)
        log.info("comparing B with A: one pass through both models")
        comparison = compare_models(a, b, threshold, heatmap_images, watch)
        stamp = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
        with staged(out_dir) as staging:
            with watch.stage("render site"):
                report = build_comparison_report(comparison, a, b, stamp, staging)
                report.pdf_name = "comparison.pdf" if pdf else None
                write_comparison_site(report, staging)
            if pdf:
                with watch.stage("render PDF"):
                    write_comparison_pdf(report, staging)
            write_export(export_document(comparison, stamp, watch), staging, OUTPUT_MARKER)
            inputs = manifest_inputs(config_a, config_b, comparison)
            write_manifest(staging, inputs, {"dossier": __version__, **package_versions()})
    return CompareOutcome(
        out_dir=out_dir,
        index=out_dir / "index.html",
        pdf=out_dir / "comparison.pdf" if pdf else None,
        export=out_dir / OUTPUT_MARKER,
        seconds=sum(watch.seconds.values()),
    )


def check_compatible(config_a: Config, config_b: Config) -> None:
    """Both models must see the same images the same size, with the same classes: A's data is
    used for both, and B's cached results must describe the same data. The error names both
    config files."""
    a, b = config_a.path.name, config_b.path.name
    if a == b and config_a.path != config_b.path:
        a, b = str(config_a.path), str(config_b.path)
    size_a, size_b = list(config_a.model.input_size), list(config_b.model.input_size)
    if size_a != size_b:
        raise DossierError(f"compare {a} {b}: the models take different input sizes ({a}: {size_a}, {b}: {size_b})")
    data_a, data_b = load_dataset(config_a), load_dataset(config_b)
    if data_a.class_names != data_b.class_names:
        raise DossierError(f"compare {a} {b}: the class lists differ ({_first_difference(data_a.class_names, data_b.class_names, a, b)})")
    if data_a.fingerprint != data_b.fingerprint:
        raise DossierError(
            f"compare {a} {b}: the two configs analyse different data ({a}: {data_a.source}, {len(data_a)} images; "
            f"{b}: {data_b.source}, {len(data_b)} images); give {b} the same data section as {a}"
        )


def _first_difference(names_a: list[str], names_b: list[str], a: str, b: str) -> str:
    """Where two class lists part, short enough for one line even for ImageNet's thousand."""
    counts = f"{a}: {len(names_a)} classes, {b}: {len(names_b)}"
    for position, (one, other) in enumerate(zip(names_a, names_b)):
        if one != other:
            return f"{counts}; class {position} is {one!r} in {a}, {other!r} in {b}"
    return counts


def _side(label: str, config: Config, device: str | None, budget: str | None, watch: Stopwatch) -> Side:
    """A model's context and every result of its dossier, from the cache of its default build
    folder (so a dossier built before costs nothing here). Under the config's budget, as its
    build had: a build whose settings the budget reduced cached its results under those."""
    log.info("model %s: %s", label, config.path.name)
    cache_dir = cache_dir_for(default_out_dir(config.path))
    own = Stopwatch()
    ctx = load_context(config, cache_dir, device or config.device, own, LocalExecutor())
    names = selected_analyses()
    seconds = parse_budget(budget if budget is not None else config.budget, ctx.device)
    computed = compute_results(ctx, names, cache_dir, own, strict=False, budget=seconds)
    for stage, seconds in own.seconds.items():
        watch.seconds[f"{label}: {stage}"] = seconds
    return Side(ctx, computed.results, computed.failures, computed.not_applicable, computed.cached, computed.plan)


def manifest_inputs(config_a: Config, config_b: Config, comparison: Comparison) -> dict[str, str | None]:
    """What the comparison was made from, for manifest.json (`dossier verify` checks its files)."""
    return {
        "a_config_sha256": file_sha256(config_a.path), "a_weights_sha256": comparison.a.weights_sha256,
        "b_config_sha256": file_sha256(config_b.path), "b_weights_sha256": comparison.b.weights_sha256,
        "data_sha256": comparison.data_sha256,
    }


def export_document(comparison: Comparison, generated_at: str, watch: Stopwatch) -> dict:
    """comparison.json: every number the comparison shows."""
    return {
        "dossier_version": __version__,
        "generated_at": generated_at,
        "stage_seconds": dict(watch.seconds),
        **to_export(comparison),
    }
