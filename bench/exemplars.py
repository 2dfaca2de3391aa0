"""The exemplar pass (running top-k/bottom-k of every conv unit) against a bare inference pass.

    .venv/bin/python bench/exemplars.py

resnet18 (random weights), 64 px, batches of 64 synthetic images: time of the pass with the
exemplar statistics on every conv layer ÷ the same forward passes without them, and the peak
memory (maximum resident set, each run in a fresh process) at N and at 10×N images.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

import torch
import torchvision

from dossier.analyses.galleries import RunningExtremes
from dossier.capture import Batch, recording

BATCH, SIZE = 64, 64


def run(images: int, exemplars: bool) -> float:
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    extremes = RunningExtremes(convs, k=6, norms={})
    start = time.perf_counter()
    with torch.inference_mode(), recording(model, convs if exemplars else []) as outputs:
        for first in range(0, images, BATCH):
            x = torch.randn(BATCH, 3, SIZE, SIZE)
            logits = model(x)
            if exemplars:
                indices = torch.arange(first, first + BATCH)
                extremes.update(Batch(x, torch.zeros(BATCH, dtype=torch.long), indices, logits, dict(outputs)))
    return time.perf_counter() - start


def child(images: int) -> None:
    seconds = run(images, exemplars=True)
    print(json.dumps({"seconds": seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    n = 512
    run(BATCH, True)  # warm-up
    bare = run(n, exemplars=False)
    with_exemplars = run(n, exemplars=True)
    peaks = {}
    for images in (n, 10 * n):
        done = subprocess.run([sys.executable, __file__, "--child", str(images)], capture_output=True, text=True, check=True)
        peaks[images] = json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"]
    print(f"bare inference over {n} images: {bare:.2f} s; with exemplar statistics: {with_exemplars:.2f} s")
    print(f"peak memory: {peaks[n]:.0f} MiB at {n} images, {peaks[10 * n]:.0f} MiB at {10 * n}")
    print(f"memory at 10×N ÷ at N: {peaks[10 * n] / peaks[n]:.2f}x (bar ≤ 1.2x)")
    print(f"exemplar pass / bare pass: {with_exemplars / bare:.2f}x (bar ≤ 1.3x)")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(int(sys.argv[2]))
    else:
        main()
