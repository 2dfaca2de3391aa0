"""The data pass in shards and the per-layer work on Dask: the same dossier.json as a build in one
process, also when a worker dies mid-build; and a device running out of memory halves the batch."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from dossier.analyses import REGISTRY
from dossier.build import build, load_context
from dossier.capture import PassOptions, data_pass, shard_ranges
from dossier.config import load_config
from tests.conftest import TINY_CONFIG, TINY_FACTORY, make_image_folder, tiny_model, write_config

distributed = pytest.importorskip("dask.distributed")

# 300 images: two shards of the data pass (SHARD_IMAGES = 256), so merging is exercised.
CONFIG = TINY_CONFIG.replace("batch_size: 8", "batch_size: 16") + """\
analyses:
  galleries: {steps: 2}
  deepdream: {steps: 2, octaves: 1}
  probes: {folds: 2, trees: 5}
"""
# A model whose every forward pass takes a while, so that a worker can be killed mid-shard.
SLOW_FACTORY = TINY_FACTORY + textwrap.dedent("""
    import time

    class Slow(Tiny):
        def forward(self, x):
            time.sleep(0.05)
            return super().forward(x)

    def slow(num_classes=3):
        return Slow(num_classes)
""")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("distributed")
    (root / "models.py").write_text(SLOW_FACTORY)
    torch.manual_seed(0)
    torch.save(tiny_model().state_dict(), root / "tiny.pt")
    make_image_folder(root / "data", ["cat", "dog", "eel"], per_class=100)
    write_config(root, CONFIG)
    write_config(root, CONFIG.replace("models.py:build", "models.py:slow"), "slow.yaml")
    return root


def _numbers(out: Path) -> dict:
    """dossier.json without what may differ between two builds of the same inputs."""
    export = json.loads((out / "dossier.json").read_text())
    for key in ("generated_at", "stage_seconds", "cached_analyses", "executor", "peak_memory_mib"):
        export["provenance"].pop(key)
    for layer in export["analyses"].get("commute", {}).get("layers", []):
        layer.pop("seconds")
    return export


@pytest.fixture(scope="module")
def single(project: Path) -> dict:
    out = project / "single" / "out"
    build(load_config(project / "dossier.yaml"), out, device="cpu", pdf=False)
    return _numbers(out)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as local:
        yield local


def test_the_data_set_is_cut_into_shards_of_whole_batches() -> None:
    assert [(r.start, r.stop) for r in shard_ranges(300, 24)] == [(0, 240), (240, 300)]
    assert [(r.start, r.stop) for r in shard_ranges(300, 16)] == [(0, 256), (256, 300)]
    assert [(r.start, r.stop) for r in shard_ranges(10, 64)] == [(0, 10)]


def test_a_distributed_build_equals_the_single_process_one(project: Path, single: dict, cluster) -> None:
    out = project / "dask" / "out"
    build(load_config(project / "dossier.yaml"), out, device="cpu", pdf=False, scheduler=cluster.scheduler_address)
    distributed_numbers = _numbers(out)
    assert distributed_numbers == single
    assert json.loads((out / "dossier.json").read_text())["provenance"]["executor"] == "DaskExecutor"
    assert single["analyses"]["model_card"]["images"] == 300


def test_a_worker_killed_mid_build_is_retried_without_damage(project: Path, cluster) -> None:
    reference = project / "slow-single" / "out"
    build(load_config(project / "slow.yaml"), reference, device="cpu", pdf=False, only=["neuron_types", "galleries"])
    killed: list[str] = []

    def kill_a_busy_worker() -> None:
        with distributed.Client(cluster.scheduler_address, timeout=30) as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                busy = [worker for worker, tasks in client.processing().items() if tasks]
                if busy:
                    killed.append(busy[0])
                    with contextlib.suppress(Exception):  # the worker dies before it can answer
                        client.run(os._exit, 1, workers=busy[:1])  # its nanny starts a new one
                time.sleep(0.05)

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    killer.start()
    out = project / "slow-dask" / "out"
    build(
        load_config(project / "slow.yaml"), out, device="cpu", pdf=False, only=["neuron_types", "galleries"],
        scheduler=cluster.scheduler_address,
    )
    killer.join(timeout=5)
    assert killed, "no worker was busy long enough to be killed"
    assert _numbers(out) == _numbers(reference)


def _out_of_memory_past_four(_module: nn.Module, inputs: tuple) -> None:
    """Fails as a GPU would on more than four images at once."""
    if len(inputs[0]) > 4:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")


def test_running_out_of_memory_halves_the_batch_and_says_so(project: Path, caplog) -> None:
    ctx = load_context(load_config(project / "dossier.yaml"), project / ".cache", "cpu")
    model, layers = ctx.model.module, [layer.name for layer in ctx.recorded_layers]

    def statistics() -> tuple[int, list]:
        consumers = [REGISTRY[name]().consumer(ctx) for name in ("model_card", "purity")]
        seen = data_pass(model, ctx.dataset, layers, PassOptions(torch.device("cpu"), batch_size=16), consumers, indices=range(40))
        return seen, consumers

    plain_seen, plain = statistics()
    handle = model.register_forward_pre_hook(_out_of_memory_past_four)
    try:
        with caplog.at_level(logging.WARNING, logger="dossier.capture"):
            halved_seen, halved = statistics()
    finally:
        handle.remove()
    assert halved_seen == plain_seen == 40
    assert (halved[0].confusion == plain[0].confusion).all()
    for name in ("input", *layers):
        assert len(halved[1].features[name]) == len(plain[1].features[name]) == 3  # the consumers saw whole batches
        for mine, theirs in zip(halved[1].features[name], plain[1].features[name]):
            assert torch.allclose(torch.from_numpy(mine), torch.from_numpy(theirs), atol=1e-6)
    messages = [r.getMessage() for r in caplog.records]
    assert "out of memory on cpu with 16 images at once: retrying 8 at a time" in messages[0], messages
    assert "with 8 images at once: retrying 4 at a time" in messages[1], messages
    assert len(messages) == 2  # remembered: later batches go four at a time without failing first


def test_shard_results_are_handed_over_one_at_a_time() -> None:
    """The data pass folds each shard in as it arrives: the next shard is not computed (nor held)
    before the caller has taken the one before."""
    from dossier.distributed import ContextSpec, LocalExecutor, register_context

    spec = ContextSpec(config=None, cache_dir=Path("."), device="cpu", token="one-at-a-time")
    register_context(spec, object())
    computed = []

    def double(ctx: object, item: int) -> int:
        computed.append(item)
        return 2 * item

    results = LocalExecutor().imap(spec, double, [1, 2, 3], "")
    assert next(results) == 2 and computed == [1]
    assert list(results) == [4, 6] and computed == [1, 2, 3]
