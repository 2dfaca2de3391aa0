"""What the faithfulness scorecard adds to the sample's cold build (bar: at most 25%).

    .venv/bin/python bench/faithfulness.py [--rounds N]

Cold builds of examples/digits.yaml as the README times them (each in a fresh folder, so with an
empty cache: the plan of the default budget, every result, the site and the PDF), with every
analysis and with every analysis but faithfulness, alternated for N rounds so that both see the
same load on a shared machine; the fastest of each is kept. The headline is the difference of wall
times ÷ the build without the section. The section's own stage (`analysis: faithfulness` in
dossier.json) ÷ the build without it is printed beside it: on a busy machine it is the steadier
figure. Last line: `added: …%`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
CONFIG = HERE.parent / "examples" / "digits.yaml"
SECTION = "faithfulness"
STAGE = f"analysis: {SECTION}"


def cold_build(only: list[str] | None) -> tuple[float, dict[str, float]]:
    """Wall seconds of one build in a fresh folder (its cache beside it, empty), and its stage times."""
    out = Path(tempfile.mkdtemp(prefix="bench-faithfulness-")) / "digits"
    names = [arg for name in only for arg in ("--only", name)] if only else []
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "dossier", "build", str(CONFIG), "--out", str(out), *names],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"the build failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds, json.loads((out / "dossier.json").read_text())["provenance"]["stage_seconds"]


def main(rounds: int) -> None:
    from dossier.analyses import ALWAYS_RUN, REGISTRY

    others = [name for name in REGISTRY if name != SECTION and name not in ALWAYS_RUN]  # those always run anyway
    with_section, without = [], []
    for round_ in range(rounds):
        with_section.append(cold_build(None))
        without.append(cold_build(others))
        print(f"round {round_ + 1}: all {with_section[-1][0]:.1f} s, all but {SECTION} {without[-1][0]:.1f} s")
    (all_seconds, stages), (base, _) = min(with_section), min(without)
    stage = stages[STAGE]
    print(f"fastest: all {all_seconds:.1f} s, all but {SECTION} {base:.1f} s; the {STAGE!r} stage {stage:.1f} s "
          f"({100 * stage / base:.1f}% of the build without it)")
    print(f"added: {100 * (all_seconds - base) / base:.1f}%")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="builds with and without the section, alternated")
    main(parser.parse_args().rounds)
