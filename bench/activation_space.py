"""Time and peak memory of commute time and probes per layer, for n = 500, 1,000, 2,000 images.

    .venv/bin/python bench/activation_space.py

Synthetic 512-dimensional activations of 10 classes stand in for one layer; the dense commute-time
path grows as n² in memory and n³ in time, which the table makes visible.
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np

from dossier.analyses.commute import analyse_layer
from dossier.analyses.probes import probe_layer


def measured(function, *args):
    tracemalloc.start()
    start = time.perf_counter()
    function(*args)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak / 2**20


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"{'n':>6} {'commute s':>10} {'commute MiB':>12} {'probes s':>9} {'probes MiB':>11}")
    for n in (500, 1000, 2000):
        labels = np.repeat(np.arange(10), n // 10)
        points = rng.normal(0, 3, size=(10, 512))[labels] + rng.normal(size=(n, 512))
        commute_s, commute_mib = measured(analyse_layer, "layer", points, labels, 10, 10, 0)
        probes_s, probes_mib = measured(probe_layer, "layer", points, labels, 5, 256, 50, 0)
        print(f"{n:>6} {commute_s:>10.2f} {commute_mib:>12.0f} {probes_s:>9.2f} {probes_mib:>11.0f}")


if __name__ == "__main__":
    main()
