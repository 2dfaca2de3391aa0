"""Where a dossier came from: hashes, versions, device, seed and how long each stage took."""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata

from dossier import __version__

_PACKAGES = ("torch", "torchvision", "numpy", "scikit-learn", "matplotlib", "jinja2", "weasyprint", "pydantic")


@dataclass(frozen=True)
class Provenance:
    dossier_version: str
    generated_at: str  # ISO 8601, UTC
    config_file: str
    config_text: str
    model_source: str
    weights_source: str
    weights_sha256: str | None
    trained: bool
    data_source: str
    data_sha256: str
    images: int
    classes: int
    device: str
    batch_size: int
    mixed_precision: bool
    peak_memory_mib: float  # GPU memory on CUDA, else the process's peak resident memory
    executor: str  # where the work ran: LocalExecutor or DaskExecutor
    seed: int
    python: str
    platform: str
    packages: dict[str, str]
    stage_seconds: dict[str, float]
    cached_analyses: list[str]


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def environment() -> tuple[str, str]:
    return platform.python_version(), platform.platform()


class Stopwatch:
    """Wall time of each named stage of a build."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)


__all__ = ["Provenance", "Stopwatch", "package_versions", "environment", "__version__"]
