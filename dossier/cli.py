"""The `dossier` command line: build, compare, layers, init."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import warnings
from pathlib import Path

import click

from dossier import IMPORTED_AT, __version__
from dossier.analyses import ALWAYS_RUN, REGISTRY
from dossier.config import config_reference, load_config
from dossier.errors import DossierError

STARTUP_SECONDS = time.perf_counter() - IMPORTED_AT  # a build pays these imports too


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s" if not verbose else "%(levelname)s %(name)s: %(message)s",
    )
    # Library chatter (fontTools subsetting, PIL plugins) is not progress a user needs.
    for noisy in ("fontTools", "PIL", "matplotlib", "weasyprint"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dossier")
def main() -> None:
    """Turn a trained convolutional network into an interpretability dossier:
    a static HTML site, a PDF and a JSON export of every number."""


@main.command()
@click.argument("config_file", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Output folder. Default: build/<config file stem>. Replaced atomically when the build succeeds.",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default=None,
    help="Where to run the model; overrides the config's `device`. auto = cuda when a GPU is present.",
)
@click.option("--no-pdf", is_flag=True, help="Skip the PDF (faster); the site and dossier.json are still written.")
@click.option(
    "--only",
    multiple=True,
    type=click.Choice(sorted(set(REGISTRY) - set(ALWAYS_RUN))),
    help="Run only this analysis (repeatable). The model card always runs.",
)
@click.option("--strict", is_flag=True, help="Fail the build when an analysis fails, instead of reporting it.")
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Run the data pass and the per-layer work on Dask: a scheduler address (tcp://host:8786) or "
    "local:N for N local worker processes. Overrides the config's `scheduler`.",
)
@click.option(
    "--budget",
    metavar="DURATION",
    help="Fit the build in this much time (20m, 1h30m, none): dossier plans it and reduces the work in a "
    "documented order, saying so on every page. Overrides the config's `budget` (auto: 20m on a CPU).",
)
@click.option(
    "--check", "gate", is_flag=True,
    help="Exit with code 1 when a release check fails (the output is written either way), so CI can block a release.",
)
@click.option("-v", "--verbose", is_flag=True, help="Show debug logging.")
def build(
    config_file: Path,
    out_dir: Path | None,
    device: str | None,
    no_pdf: bool,
    only: tuple[str, ...],
    strict: bool,
    scheduler: str | None,
    budget: str | None,
    gate: bool,
    verbose: bool,
) -> None:
    """Build the dossier described by CONFIG_FILE (YAML; see `dossier init`)."""
    _configure_logging(verbose)
    from dossier.build import build as run_build, cache_dir_for, default_out_dir

    config = load_config(config_file)
    target = out_dir or default_out_dir(config_file)
    # numba (under UMAP) compiles for ~15 s in every new process unless it may cache the machine
    # code; it reads this variable once, when first imported, later in the build.
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir_for(target) / "numba"))
    outcome = run_build(
        config,
        target,
        device=device,
        pdf=not no_pdf,
        only=list(only) if only else None,
        strict=strict,
        scheduler=scheduler,
        budget=budget,
    )
    click.echo(f"site:  {outcome.index}")
    if outcome.pdf:
        click.echo(f"pdf:   {outcome.pdf}")
    click.echo(f"json:  {outcome.export}")
    click.echo(f"open:  {outcome.index.as_uri()}")
    _report_checks([dataclasses.asdict(check) for check in outcome.checks], gate)


def _report_checks(checks: list[dict], gate: bool) -> None:
    """One line per check that did not pass; with gate, exit code 1 when one failed."""
    failed = [c for c in checks if c["status"] == "fail"]
    for check in checks:
        if check["status"] != "pass":
            click.echo(f"{check['status']}: {check['name']}: {check['value']} (threshold {check['threshold']}) {check['detail']}".rstrip())
    click.echo(f"checks: {len(failed)} failed, {sum(c['status'] == 'warn' for c in checks)} warnings, "
               f"{sum(c['status'] == 'pass' for c in checks)} passed")
    if gate and failed:
        raise SystemExit(1)


@main.command()
@click.argument("out_dir", type=click.Path(path_type=Path))
def check(out_dir: Path) -> None:
    """Read the release checks of a built dossier (OUT_DIR/dossier.json); exit code 1 when one failed."""
    import json

    path = out_dir / "dossier.json"
    try:
        checks = json.loads(path.read_text(encoding="utf-8"))["checks"]
    except (OSError, ValueError, KeyError):
        raise DossierError(f"check: '{path}' is not a dossier.json with checks") from None
    _report_checks(checks, gate=True)


@main.command()
@click.argument("config_file", type=click.Path(path_type=Path))
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None, help="Overrides the config's `device`.")
@click.option("--budget", metavar="DURATION", help="Show what a build with this budget would reduce (20m, 1h30m, none).")
@click.option("--only", multiple=True, type=click.Choice(sorted(set(REGISTRY) - set(ALWAYS_RUN))), help="Plan only this analysis (repeatable).")
@click.option("--no-pdf", is_flag=True, help="Leave the PDF out of the plan.")
def plan(config_file: Path, device: str | None, budget: str | None, only: tuple[str, ...], no_pdf: bool) -> None:
    """Estimate a cold build of CONFIG_FILE stage by stage (time, memory, what dominates), from a few
    real steps timed on the device: one data batch, an optimisation step per layer, a relevance
    batch, a probe fit, and so on."""
    _configure_logging(False)
    from dossier.build import cache_dir_for, default_out_dir, plan as make_plan

    config = load_config(config_file)
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir_for(default_out_dir(config_file)) / "numba"))
    estimate = make_plan(
        config, cache_dir_for(default_out_dir(config_file)), device=device, budget=budget,
        only=list(only) if only else None, pdf=not no_pdf, startup=STARTUP_SECONDS,
    )
    click.echo(estimate.table())


@main.command()
@click.argument("config_a", type=click.Path(path_type=Path))
@click.argument("config_b", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Output folder. Default: build/compare-<A stem>-<B stem>. Replaced atomically when the comparison succeeds.",
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None, help="Overrides both configs' `device`.")
@click.option("--no-pdf", is_flag=True, help="Skip the PDF; the site and comparison.json are still written.")
@click.option(
    "--budget",
    metavar="DURATION",
    help="Overrides both configs' `budget` (20m, none) for results not yet cached, as `dossier build --budget` would.",
)
@click.option(
    "--threshold",
    type=click.FloatRange(-1.0, 1.0),
    default=0.5,
    show_default=True,
    help="Correlation a unit's assigned partner must reach to count as its counterpart.",
)
@click.option(
    "--heatmaps",
    "heatmap_images",
    type=click.IntRange(0),
    default=24,
    show_default=True,
    help="Images explained by both models (those whose prediction changed first).",
)
@click.option("-v", "--verbose", is_flag=True, help="Show debug logging.")
def compare(
    config_a: Path,
    config_b: Path,
    out_dir: Path | None,
    device: str | None,
    no_pdf: bool,
    budget: str | None,
    threshold: float,
    heatmap_images: int,
    verbose: bool,
) -> None:
    """Compare model B (CONFIG_B) with model A (CONFIG_A) on A's data: accuracy, per-layer numbers,
    units matched across the models and heatmaps that moved. Builds each dossier's results, or
    reads them from the cache of its default build folder."""
    _configure_logging(verbose)
    from dossier.build import cache_dir_for
    from dossier.compare.run import compare as run_compare, default_compare_dir

    first, second = load_config(config_a), load_config(config_b)
    target = out_dir or default_compare_dir(config_a, config_b)
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir_for(target) / "numba"))
    outcome = run_compare(
        first, second, target, device=device, pdf=not no_pdf, budget=budget, threshold=threshold,
        heatmap_images=heatmap_images,
    )
    click.echo(f"site:  {outcome.index}")
    if outcome.pdf:
        click.echo(f"pdf:   {outcome.pdf}")
    click.echo(f"json:  {outcome.export}")
    click.echo(f"open:  {outcome.index.as_uri()}")


@main.command()
@click.argument("config_file", type=click.Path(path_type=Path))
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None, help="Overrides the config's `device`.")
def layers(config_file: Path, device: str | None) -> None:
    """Print the layers a build of CONFIG_FILE records: name, type, kernel, output shape, parameters."""
    _configure_logging(False)
    from dossier.build import cache_dir_for, default_out_dir
    from dossier.layers import discover_layers
    from dossier.model_source import load_model, resolve_device

    config = load_config(config_file)
    torch_device = resolve_device(device or config.device)
    model = load_model(config, cache_dir_for(default_out_dir(config_file)))
    model.module.to(torch_device)
    found, outputs = discover_layers(model.module, config.layers, config.model.input_size, torch_device, model.scripted)
    rows = [("#", "name", "type", "kernel", "output", "parameters")]
    rows += [
        (str(i), layer.name, layer.type, layer.kernel_text, layer.shape_text, f"{layer.parameters:,}")
        for i, layer in enumerate(found, start=1)
    ]
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    click.echo(f"{len(found)} layers; the model outputs {outputs} class scores.")


@main.command()
@click.argument("out_dir", type=click.Path(path_type=Path))
def verify(out_dir: Path) -> None:
    """Check a built or published dossier against its manifest.json: names every file that changed,
    went missing or was added. Exit code 1 when anything differs."""
    from dossier.manifest import verify as check

    checked, problems = check(out_dir)
    for line in problems:
        click.echo(line)
    if problems:
        raise SystemExit(1)
    click.echo(f"verified: {checked} files as built")


@main.command()
@click.argument("config_file", type=click.Path(path_type=Path), default="dossier.yaml")
@click.option("--force", is_flag=True, help="Overwrite CONFIG_FILE if it exists.")
def init(config_file: Path, force: bool) -> None:
    """Write a commented starter config to CONFIG_FILE (default: dossier.yaml)."""
    if config_file.exists() and not force:
        raise click.ClickException(f"'{config_file}' exists; use --force to overwrite it")
    config_file.write_text(config_reference(starter=True), encoding="utf-8")
    click.echo(f"wrote {config_file}: edit model and data, then run: dossier build {config_file}")
