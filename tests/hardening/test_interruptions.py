"""Kills, concurrent builds and a full disk never cost the user the last good dossier."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dossier.manifest import verify
from dossier.output import output_lock
from tests.conftest import TINY_CONFIG, write_config

QUICK = TINY_CONFIG + "analyses:\n  galleries: {steps: 2}\n  deepdream: {steps: 2, octaves: 2}\n"


def _files(folder: Path) -> dict[Path, bytes]:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.") and p.is_dir())


@pytest.fixture
def built(project: Path, cli) -> tuple[Path, Path]:
    config = write_config(project, QUICK)
    out = project / "out"
    assert cli("build", config, "--out", out, "--no-pdf").exit_code == 0
    return config, out


def test_a_second_build_to_the_same_output_refuses(built, cli) -> None:
    config, out = built
    before = _files(out)
    with output_lock(out):
        result = cli("build", config, "--out", out, "--no-pdf")
    assert result.exit_code == 2
    assert f"another dossier build (process {os.getpid()}) is writing '{out}'" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert _files(out) == before


def test_a_full_disk_is_one_line_and_keeps_the_previous_output(built, cli, monkeypatch) -> None:
    config, out = built
    before = _files(out)
    import dossier.build

    def full(root: Path, *_args) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(root / "manifest.json"))

    monkeypatch.setattr(dossier.build, "write_manifest", full)
    result = cli("build", config, "--out", out, "--no-pdf")
    assert result.exit_code == 2
    assert result.output.startswith("Error: --out: no space left on the device while writing")
    assert "the previous output is intact" in result.output and "Traceback" not in result.output
    assert _files(out) == before and _leftovers(out) == []


def test_a_killed_build_leaves_the_previous_output_and_a_rebuild_completes(built) -> None:
    """Kill builds (SIGKILL and Ctrl-C) at random moments: each time the output is the last
    good one or a complete new one, and the next build resumes from a consistent cache."""
    config, out = built
    project = config.parent
    rng = random.Random(0)
    command = [sys.executable, "-m", "dossier", "build", str(config), "--out", str(out), "--no-pdf"]
    for attempt in range(4):
        # A changed title: cached results are reused, so kills land in rendering and replacing too.
        write_config(project, QUICK.replace("Tiny test model", f"Tiny test model {attempt}"))
        process = subprocess.Popen(command, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(2.0, 12.0))
        process.send_signal(signal.SIGKILL if attempt % 2 == 0 else signal.SIGINT)
        process.wait(timeout=120)
        assert verify(out)[1] == [], f"attempt {attempt}: the output is neither the old nor a new complete one"
    result = subprocess.run(command, cwd=project, capture_output=True, timeout=600)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert verify(out)[1] == [] and "Tiny test model 3" in (out / "index.html").read_text()
    assert _leftovers(out) == []
