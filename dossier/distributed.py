"""Where the work of a build runs: in this process, or on a Dask cluster (dask.distributed).

A build cuts its data pass into shards and its per-layer work into tasks, and hands both to an
executor. Without a scheduler the executor is this process; with `--scheduler ADDRESS` (or
`local:N` for a LocalCluster of N worker processes) the same functions run on Dask workers,
which rebuild the build's context (model, layers, data) from its spec once each. The results do
not depend on where they ran: shards are cut the same way everywhere and merged in order, and
per-layer tasks run with one BLAS thread, whose sums do not depend on a machine's core count.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from threadpoolctl import threadpool_limits
from tqdm import tqdm

from dossier.errors import DossierError

if TYPE_CHECKING:
    from dossier.analyses.base import BuildContext
    from dossier.config import Config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContextSpec:
    """What a worker needs to rebuild a build's context: the config as the build runs it (budget
    reductions included), where the model cache is, and the device."""

    config: Config
    cache_dir: Path
    device: str
    token: str  # names the build: a worker keeps one context per token


_CONTEXTS: dict[str, BuildContext] = {}


def register_context(spec: ContextSpec, ctx: BuildContext) -> None:
    """The driver's own context, so tasks run here reuse it instead of loading the model again."""
    _CONTEXTS[spec.token] = ctx


def context_for(spec: ContextSpec) -> BuildContext:
    if spec.token not in _CONTEXTS:
        from dossier.build import load_context

        _CONTEXTS.clear()  # one build at a time per worker: drop a previous build's model
        _CONTEXTS[spec.token] = load_context(spec.config, spec.cache_dir, spec.device)
    return _CONTEXTS[spec.token]


def _progress(items: Iterable[Any], total: int, desc: str) -> Iterable[Any]:
    """A progress bar with its ETA when the work has a name."""
    return tqdm(items, total=total, desc=desc, leave=False) if desc else items


def _run(job: tuple[ContextSpec, Callable[..., Any], Any, bool]) -> Any:
    spec, function, item, single_threaded = job
    ctx = context_for(spec)
    if not single_threaded:
        return function(ctx, item)
    with threadpool_limits(limits=1):
        return function(ctx, item)


class Executor(Protocol):
    def map(
        self, spec: ContextSpec, function: Callable[[BuildContext, Any], Any], items: Sequence[Any], cpu: bool, desc: str
    ) -> list:
        """function(ctx, item) for every item, in order. `cpu`: numpy/scikit-learn work, run with
        one BLAS thread (so its sums do not depend on where it runs) and side by side."""

    def imap(
        self, spec: ContextSpec, function: Callable[[BuildContext, Any], Any], items: Sequence[Any], desc: str
    ) -> Iterator[Any]:
        """function(ctx, item) for every item, each result handed over in order as soon as it
        is there, so a caller folding results together holds one at a time, not all of them."""

    def close(self) -> None: ...


class LocalExecutor:
    """This process: torch work one item after the other (torch uses every core itself), CPU
    work on as many threads as there are cores, one BLAS thread each."""

    def __init__(self) -> None:
        self.threads = os.cpu_count() or 1

    @property
    def workers(self) -> int:
        """How many CPU tasks run at once."""
        return self.threads

    def map(self, spec: ContextSpec, function: Callable, items: Sequence[Any], cpu: bool, desc: str) -> list:
        if not cpu:
            return list(self.imap(spec, function, items, desc))
        jobs = [(spec, function, item, False) for item in items]
        # The limit is process-wide, so it is set once around the pool, not per thread.
        with threadpool_limits(limits=1), ThreadPoolExecutor(self.threads) as pool:
            return list(_progress(pool.map(_run, jobs), len(jobs), desc))

    def imap(self, spec: ContextSpec, function: Callable, items: Sequence[Any], desc: str) -> Iterator[Any]:
        for item in _progress(items, len(items), desc):
            yield _run((spec, function, item, False))

    def close(self) -> None:
        pass


class DaskExecutor:
    """dask.distributed: tasks go to the workers; a task whose worker dies is run again. Workers
    should run one thread each (`dask worker --nthreads 1`; local:N does): the BLAS limit a task
    sets is process-wide."""

    RETRIES = 3

    def __init__(self, address: str) -> None:
        from dask.distributed import Client, LocalCluster

        self.cluster = None
        try:
            if address.startswith("local:"):
                workers = int(address.removeprefix("local:"))
                self.cluster = LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
                )
                self.client = Client(self.cluster)
            else:
                self.client = Client(address, timeout=30)
        except (OSError, ValueError, TimeoutError) as error:
            raise DossierError(f"--scheduler '{address}': cannot reach the Dask scheduler ({error})") from None
        log.info("running on Dask: %s", self.client.dashboard_link or self.client.scheduler.address)

    @property
    def workers(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def map(self, spec: ContextSpec, function: Callable, items: Sequence[Any], cpu: bool, desc: str) -> list:
        return self.client.gather(self._submit(spec, function, items, desc))

    def imap(self, spec: ContextSpec, function: Callable, items: Sequence[Any], desc: str) -> Iterator[Any]:
        futures = self._submit(spec, function, items, desc)
        for index, future in enumerate(futures):
            yield future.result()
            futures[index] = None  # the last reference: the cluster drops the result once it is folded in

    def _submit(self, spec: ContextSpec, function: Callable, items: Sequence[Any], desc: str) -> list:
        jobs = [(spec, function, item, True) for item in items]  # workers run one task per thread
        futures = self.client.map(_run, jobs, pure=False, retries=self.RETRIES)
        if desc:
            log.info("%s: %d tasks on the cluster", desc, len(futures))
        return futures

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def executor_for(scheduler: str | None) -> Executor:
    return DaskExecutor(scheduler) if scheduler else LocalExecutor()
