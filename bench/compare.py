"""Comparing two already-built dossiers costs only the matching and the rendering.

    .venv/bin/python bench/compare.py

In an empty working folder (empty result cache; the sample's shipped weights): the cold builds of
the sample at epoch 18 and at epoch 30, each through the command line as a user runs them, then
`dossier compare` of the two, which finds every result of both dossiers in the cache. Prints each
wall time and, last, the compare time ÷ the time of a cold build of one dossier (the mean of the
two).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOSSIER = Path(sys.executable).parent / "dossier"
EARLY, FINAL = ROOT / "examples" / "digits-early.yaml", ROOT / "examples" / "digits.yaml"


def timed(arguments: list[str], folder: Path) -> float:
    start = time.perf_counter()
    subprocess.run([str(DOSSIER), *arguments], cwd=folder, check=True, capture_output=True, env=_environment(folder))
    return time.perf_counter() - start


def _environment(folder: Path) -> dict[str, str]:
    # numba's compiled code is cached with the results, so the first build pays for it as on a new machine.
    return {**os.environ, "NUMBA_CACHE_DIR": str(folder / "build" / ".dossier-cache" / "numba")}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="dossier-bench-compare-") as scratch:
        folder = Path(scratch)
        early = timed(["build", str(EARLY)], folder)
        final = timed(["build", str(FINAL)], folder)
        compare = timed(["compare", str(EARLY), str(FINAL)], folder)
        export = json.loads((folder / "build" / f"compare-{EARLY.stem}-{FINAL.stem}" / "comparison.json").read_text())
    cached = [len(export[side]["cached_analyses"]) for side in ("a", "b")]
    print(f"cold build of {EARLY.name}: {early:.1f} s")
    print(f"cold build of {FINAL.name}: {final:.1f} s")
    print(f"compare with both dossiers' results cached: {compare:.1f} s ({cached[0]} and {cached[1]} analyses read from the cache)")
    print("  " + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in export["stage_seconds"].items()))
    print(f"compare (cached) / cold build of one dossier: {compare / ((early + final) / 2):.2f}x")


if __name__ == "__main__":
    main()
