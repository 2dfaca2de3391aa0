"""One process against a 2-worker Dask LocalCluster, same work: the ratio, and the overhead per task.

    .venv/bin/python bench/dask_cluster.py

The work is the computing phase of the sample (the data pass in shards and every per-layer task;
no rendering), cold, each way. The overhead per task is measured apart, on tasks that do nothing,
through each executor.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from dask.distributed import LocalCluster

from dossier.analyses import REGISTRY
from dossier.build import compute_results, load_context
from dossier.config import load_config
from dossier.distributed import DaskExecutor, LocalExecutor
from dossier.provenance import Stopwatch

SAMPLE = Path(__file__).parent.parent / "examples" / "digits.yaml"
TASKS = 200


def nothing(ctx, item: int) -> int:
    return item


def compute(executor, cache: Path) -> float:
    shutil.rmtree(cache / "results", ignore_errors=True)
    ctx = load_context(load_config(SAMPLE), cache, "cpu", executor=executor)
    start = time.perf_counter()
    compute_results(ctx, list(REGISTRY), cache, Stopwatch(), strict=True)
    return time.perf_counter() - start


def per_task(executor, cache: Path) -> float:
    ctx = load_context(load_config(SAMPLE), cache, "cpu", executor=executor)
    ctx.map(nothing, list(range(8)))  # the workers build the context once, before the clock
    start = time.perf_counter()
    ctx.map(nothing, list(range(TASKS)))
    return (time.perf_counter() - start) / TASKS


def main() -> None:
    cache = Path(tempfile.mkdtemp()) / ".dossier-cache"
    single = compute(LocalExecutor(), cache)
    local_overhead = per_task(LocalExecutor(), cache)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        executor = DaskExecutor(cluster.scheduler_address)
        try:
            distributed = compute(executor, cache)
            dask_overhead = per_task(executor, cache)
        finally:
            executor.close()
    print(f"one process:          {single:6.1f} s")
    print(f"2-worker LocalCluster: {distributed:6.1f} s")
    print(f"overhead per task: {1000 * dask_overhead:.1f} ms on Dask, {1000 * local_overhead:.3f} ms in one process")
    print(f"dask/single: {distributed / single:.2f}x")


if __name__ == "__main__":
    main()
