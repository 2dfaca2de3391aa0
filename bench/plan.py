"""`dossier plan`'s estimate against the build it estimates, cold, on the sample and on GoogLeNet.

    .venv/bin/python bench/plan.py [--quick]

Each case: `dossier plan CONFIG` (the default budget: auto, 20 minutes on a CPU), then a cold
`dossier build CONFIG` of the same config, timed from the outside; the estimate ÷ the build's
wall time. The GoogLeNet is torchvision's (random weights, 10 classes) at 64 px on 200 synthetic
images (bench/synthetic.py). --quick runs the sample only. Last line: `plan/actual: …x`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
DOSSIER = [sys.executable, "-m", "dossier"]
GOOGLENET = """\
title: GoogLeNet at 64 px (random weights)
model:
  torchvision: googlenet
  kwargs: {num_classes: 10, aux_logits: false, init_weights: true}
  input_size: [3, 64, 64]
  mean: [0.485, 0.456, 0.406]
  std: [0.229, 0.224, 0.225]
data:
  imagefolder: images
"""
_UNITS = {"s": 1, "min": 60, "h": 3600}


def estimate(config: Path) -> float:
    output = subprocess.run([*DOSSIER, "plan", str(config)], capture_output=True, text=True, check=True).stdout
    print(output)
    value, unit = re.search(r"estimated total: ([\d.]+) (s|min|h)", output).groups()
    return float(value) * _UNITS[unit]


def measure(config: Path, out: Path) -> float:
    shutil.rmtree(out.parent / ".dossier-cache" / "results", ignore_errors=True)
    start = time.perf_counter()
    subprocess.run([*DOSSIER, "build", str(config), "--out", str(out)], capture_output=True, text=True, check=True)
    return time.perf_counter() - start


def case(name: str, config: Path, out: Path) -> float:
    planned = estimate(config)
    actual = measure(config, out)
    print(f"{name}: estimated {planned:.0f} s, built in {actual:.0f} s: {planned / actual:.2f}x\n")
    return planned / actual


def main(quick: bool) -> None:
    work = Path(tempfile.mkdtemp())
    ratio = case("sample", HERE.parent / "examples" / "digits.yaml", work / "digits" / "out")
    if not quick:
        sys.path.insert(0, str(HERE))
        from synthetic import image_folder

        (work / "googlenet").mkdir()
        image_folder(work / "googlenet" / "images", classes=10, per_class=20, size=64)
        (work / "googlenet" / "googlenet.yaml").write_text(GOOGLENET)
        ratio = case("googlenet, 64 px", work / "googlenet" / "googlenet.yaml", work / "googlenet" / "out")
    print(f"plan/actual: {ratio:.2f}x")


if __name__ == "__main__":
    main("--quick" in sys.argv)
