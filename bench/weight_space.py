"""How long the weight-space analyses take, against the data pass of the same build.

    .venv/bin/python bench/weight_space.py

1. The sample (examples/digits.yaml): neuron types + kernel clusters + TDA rings vs the one
   activation pass over the data, in one process (UMAP's numba compilation included, as a build
   pays it once per process; run twice to see it served from NUMBA_CACHE_DIR).
2. A 512-unit 3×3×512 layer (resnet18 layer4.1.conv2, random weights): the three analyses on it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / "build" / ".dossier-cache" / "numba"))

import torch  # noqa: E402
import torchvision  # noqa: E402

from dossier.analyses import REGISTRY, BuildContext  # noqa: E402
from dossier.analyses.kernel_clusters import KernelClustersSettings, cluster_kernels  # noqa: E402
from dossier.analyses.neuron_types import ks_spreads  # noqa: E402
from dossier.analyses.tda_rings import TdaRingsSettings, analyse_rings  # noqa: E402
from dossier.capture import data_pass  # noqa: E402
from dossier.config import load_config  # noqa: E402
from dossier.data import load_dataset  # noqa: E402
from dossier.layers import discover_layers  # noqa: E402
from dossier.model_source import load_model  # noqa: E402
from dossier.weights import conv_weight  # noqa: E402


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def sample() -> None:
    config = load_config(ROOT / "examples" / "digits.yaml")
    device = torch.device("cpu")
    model = load_model(config, ROOT / "build" / ".dossier-cache")
    layers, _ = discover_layers(model.module, config.layers, config.model.input_size, device, False)
    ctx = BuildContext(config, model, layers, load_dataset(config), device)
    names = ("neuron_types", "kernel_clusters", "tda_rings")
    analyses = [REGISTRY[name]() for name in names]
    consumers = [a.consumer(ctx) for a in analyses]
    feeding = [c for c in consumers if c is not None]
    _, pass_seconds = timed(
        data_pass, model.module, ctx.dataset, [l.name for l in layers], device, config.batch_size, feeding
    )
    seconds = {}
    for analysis, consumer in zip(analyses, consumers):
        _, seconds[analysis.name] = timed(analysis.finish, ctx, consumer)
    total = sum(seconds.values())
    print("sample (digits-cnn, 540 images):")
    print(f"  data pass (with the neuron-type statistics): {pass_seconds:.2f} s")
    for name, value in seconds.items():
        print(f"  {name}: {value:.2f} s")
    print(f"  weight-space analyses / data pass: {total / pass_seconds:.1f}x")


def large_layer() -> None:
    weight = conv_weight(torchvision.models.resnet18().layer4[1].conv2)
    _, ks = timed(lambda: [ks_spreads(weight[u]) for u in range(len(weight))])
    _, clusters = timed(cluster_kernels, "layer4.1.conv2", weight, KernelClustersSettings(), 0)
    _, rings = timed(analyse_rings, "layer4.1.conv2", weight, TdaRingsSettings(), 0)
    print("resnet18 layer4.1.conv2 (512 units, 3×3×512, random weights):")
    print(f"  neuron types (KS border test): {ks:.2f} s")
    print(f"  kernel clusters: {clusters:.2f} s")
    print(f"  TDA rings: {rings:.2f} s")
    print(f"  weight-space analyses on a 512-unit layer: {ks + clusters + rings:.1f} s (bar: 60 s)")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sample()
    large_layer()
