"""The shared data pass at N, 4N and 16N images: its time should grow linearly and its memory not.

    .venv/bin/python bench/scale.py [N]

resnet18 (random weights, 10 classes) at 32 px on synthetic images held in memory, every
analysis's statistic fed at once (the default settings: purity, commute and probes keep a
class-balanced sample, here of 500, the running statistics a fixed number per unit). Each size
runs in a fresh process, so its peak resident memory is its own. Last line:
`time 16N/N: …x, memory 16N/N: …x` (linear time is 16×; flat memory is ≤ 1.2×).
"""

from __future__ import annotations

import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

CONFIG = """\
model:
  torchvision: resnet18
  kwargs: {num_classes: 10}
  input_size: [3, 32, 32]
data:
  builtin: digits
batch_size: 128
analyses:  # the statistics that keep a sample keep 500 images: N = 500 and more is past it
  purity: {sample: 500}
  commute: {sample: 500}
  probes: {sample: 500}
  embedding: {sample: 500}
"""


def synthetic_class():
    from dossier.data import ImageSet

    class Synthetic(ImageSet):
        """Images made from their index when read, like files: the data set itself takes no memory."""

        def image(self, index: int) -> np.ndarray:
            return np.random.default_rng(index).integers(0, 255, size=(32, 32, 3), dtype=np.uint8)

    return Synthetic


def run(images: int) -> dict:
    """One size, in this process: the data pass alone, timed, and this process's peak memory."""
    from dossier.analyses import REGISTRY
    from dossier.build import compute_order, load_context, shared_data_pass
    from dossier.config import load_config
    from dossier.classes import IDENTITY, ClassMap
    from dossier.provenance import Stopwatch

    Synthetic = synthetic_class()

    folder = Path(tempfile.mkdtemp())
    (folder / "scale.yaml").write_text(CONFIG)
    config = load_config(folder / "scale.yaml")
    ctx = load_context(config, folder / ".cache", "cpu")
    names = [str(c) for c in range(10)]
    ctx.dataset = Synthetic(
        classes=ClassMap(names, list(range(10)), names, IDENTITY), labels=np.arange(images) % 10,
        names=[f"synthetic/{i}" for i in range(images)], input_size=(3, 32, 32), mean=(0.0,) * 3, std=(1.0,) * 3,
        fingerprint=hashlib.sha256(str(images).encode()).hexdigest(), source="synthetic",
    )
    analyses = [REGISTRY[name]() for name in compute_order(list(REGISTRY))]
    analyses = [a for a in analyses if a.applies(ctx) is None]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    shared_data_pass(ctx, analyses, Stopwatch())
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"images": images, "seconds": seconds, "peak_mib": peak / 1024, "growth_mib": (peak - before) / 1024}


def main(base: int) -> None:
    rows = []
    for images in (base, 4 * base, 16 * base):
        done = subprocess.run(
            [sys.executable, __file__, "--one", str(images)], capture_output=True, text=True, check=True
        )
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{row['images']:>7,} images: {row['seconds']:7.1f} s, peak memory {row['peak_mib']:7.0f} MiB")
    time_ratio = rows[2]["seconds"] / rows[0]["seconds"]
    memory_ratio = rows[2]["peak_mib"] / rows[0]["peak_mib"]
    print(textwrap.dedent(f"""\
        time 4N/N: {rows[1]['seconds'] / rows[0]['seconds']:.2f}x (linear: 4x)
        time 16N/N: {time_ratio:.2f}x, memory 16N/N: {memory_ratio:.2f}x"""))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(json.dumps(run(int(sys.argv[2]))))
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
