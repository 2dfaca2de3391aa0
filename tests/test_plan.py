"""`dossier plan` and the time budget: durations, the estimate's table, reductions in their
documented order, said on every page, and the galleries' deadline."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from pypdf import PdfReader

from dossier.analyses import REGISTRY
from dossier.build import build, load_context, plan
from dossier.config import load_config
from dossier.errors import ConfigError
from dossier.plan import BUDGET_MARGIN, CPU_BUDGET, duration, parse_budget, with_setting
from tests.conftest import TINY_CONFIG, write_config

FAST = TINY_CONFIG + """\
analyses:
  galleries: {steps: 4}
  deepdream: {steps: 2, octaves: 1}
  probes: {folds: 2, trees: 5}
"""
CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("20m", 1200), ("1h30m", 5400), ("90s", 90), ("1.5h", 5400), ("45", 2700), ("2m30s", 150), (12, 720)],
)
def test_budgets_are_durations(text, seconds) -> None:
    assert parse_budget(text, CPU) == seconds


def test_auto_budget_is_twenty_minutes_on_a_cpu_and_none_on_a_gpu() -> None:
    assert parse_budget("auto", CPU) == CPU_BUDGET == 1200
    assert parse_budget("auto", torch.device("cuda")) is None
    assert parse_budget(None, CPU) is None and parse_budget("none", CPU) is None


@pytest.mark.parametrize("text", ["twenty minutes", "20x", "-5m", "0s"])
def test_a_bad_budget_is_a_one_line_error(text) -> None:
    with pytest.raises(ConfigError, match="budget"):
        parse_budget(text, CPU)


def test_settings_change_on_a_copy(tiny_config: Path) -> None:
    config = load_config(tiny_config)
    changed = with_setting(config, "galleries", "units", 4)
    assert changed.analyses.galleries.units == 4 and config.analyses.galleries.units is None
    assert changed.path == config.path


def test_the_plan_estimates_every_stage(project: Path) -> None:
    config = load_config(write_config(project, FAST))
    estimate = plan(config, project / ".cache", device="cpu", budget="none")
    titles = [stage.title for stage in estimate.stages]
    ctx = load_context(config, project / ".cache", "cpu")
    expected = {cls.title for cls in REGISTRY.values() if cls().applies(ctx) is None and cls.name != "model_card"}
    assert expected <= set(titles)
    assert {"data pass", "render site", "render PDF"} <= set(titles)
    assert all(stage.cost.seconds >= 0 for stage in estimate.stages)
    table = estimate.table().splitlines()
    assert table[0].split()[:2] == ["stage", "work"]
    assert table[-1].startswith("estimated total: ") and table[-1].endswith("on cpu")
    assert any(line.startswith("dominated by: ") for line in table)


def test_a_tight_budget_reduces_in_order_and_every_page_says_so(project: Path) -> None:
    # long optimisations, so that what a budget can reduce outweighs the timing noise of the rest
    config = load_config(write_config(project, FAST.replace("galleries: {steps: 4}", "galleries: {steps: 2000}")))
    full = plan(config, project / ".cache", device="cpu", budget="none")
    # a budget just over what the stages that cannot be reduced take: something must give
    fixed = sum(s.cost.seconds for s in full.stages if s.key not in {"galleries", "deepdream"})
    budget = f"{max(1.0, (fixed + 0.05 * (full.total - fixed)) / BUDGET_MARGIN):.1f}s"
    out = project / "out"
    build(config, out, device="cpu", budget=budget)
    export = json.loads((out / "dossier.json").read_text())
    reductions = export["plan"]["reductions"]
    assert reductions, export["plan"]
    assert (reductions[0]["analysis"], reductions[0]["key"]) == ("galleries", "units")  # rank 1 comes first
    units = reductions[0]["after"]
    galleries = export["analyses"]["galleries"]
    for layer in galleries["layers"]:
        # the plan's units, unless the run fell behind its estimate and the deadline stopped it
        late = layer["left_out"] == "the time budget ran out before this layer"
        assert layer["optimised"] == (0 if late else min(units, len(layer["units"]))), layer["left_out"]
        assert sum(card["optimised"] for card in layer["units"]) == layer["optimised"]
        assert all(card["top"] for card in layer["units"])  # every unit keeps its exemplars
    assert export["config"]["analyses"]["galleries"]["units"] == units
    for page in ("index.html", "layer-conv1.html", "model.html"):
        html = (out / page).read_text()
        assert "Reduced to fit the time budget" in html and "analyses.galleries.units" in html
        assert "--budget none" in html
    cover = PdfReader(out / "dossier.pdf").pages[0].extract_text()
    assert "Reduced to fit the time budget" in " ".join(cover.split())


def test_a_deadline_that_has_passed_optimises_no_more_units(project: Path) -> None:
    from dossier.analyses.galleries import _layer_gallery, _patches_by_layer, importance

    config = load_config(write_config(project, FAST))
    ctx = load_context(config, project / ".cache", "cpu")
    consumer = REGISTRY["galleries"]().consumer(ctx)
    from dossier.capture import data_pass

    data_pass(ctx.model.module, ctx.dataset, ["conv1", "conv2"], ctx.options, [consumer])
    info = ctx.conv_layers[0]
    ctx.deadline = time.time() - 1
    state = consumer.state[info.name]
    patches = _patches_by_layer(ctx, {info.name: (info, state)})[info.name]
    job = (info, state, None, importance(ctx, info.name, state), set(), None, patches)
    layer = _layer_gallery(ctx, job)
    assert layer.optimised == 0 and not any(card.optimised for card in layer.units)
    assert layer.left_out == "the time budget ran out before this layer"
    assert all(card.top and card.max_image is None for card in layer.units)


def test_durations_read_well() -> None:
    assert [duration(s) for s in (12, 600, 9000, None)] == ["12 s", "10.0 min", "2.5 h", "none"]


def test_plan_command_prints_the_table(tiny_config: Path, cli) -> None:
    result = cli("plan", tiny_config, "--budget", "none", "--no-pdf")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("estimated total: ")
    assert "render PDF" not in result.output and "render site" in result.output


def test_per_layer_timings_are_interpolated_between_three_anchor_layers() -> None:
    """Timed at the first, middle and deepest convolution; any other layer in between, on the
    multiply-adds a forward pass does up to it."""
    from types import SimpleNamespace

    from dossier.plan import Probe

    probe = Probe(SimpleNamespace(conv_layers=[SimpleNamespace(name=name) for name in "abcde"]))
    probe.remember("work up to", lambda: {"a": 0.0, "b": 10.0, "c": 20.0, "d": 30.0, "e": 40.0})
    timed = {"a": (1.0, 0.0), "c": (3.0, 2.0), "e": (5.0, 2.0)}
    assert probe.anchors() == ["a", "c", "e"]
    assert probe.across_layers("b", timed.__getitem__) == (2.0, 1.0)
    assert probe.across_layers("d", timed.__getitem__) == (4.0, 2.0)
    assert probe.across_layers("unhooked", timed.__getitem__) == (5.0, 2.0)  # as the deepest
