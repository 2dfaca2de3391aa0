from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from dossier import results
from dossier.capture import Batch, PassOptions, data_pass, recording
from dossier.config import load_config
from dossier.data import load_dataset
from tests.conftest import TINY_CONFIG, tiny_model, write_config


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_recording_captures_outputs_and_always_removes_hooks() -> None:
    model = tiny_model().eval()
    x = torch.randn(2, 3, 12, 12)
    with recording(model, ["conv1", "fc"]) as outputs:
        logits = model(x)
    assert outputs["conv1"].shape == (2, 4, 12, 12)
    assert torch.equal(outputs["fc"], logits)
    assert _hook_count(model) == 0
    with pytest.raises(RuntimeError):
        with recording(model, ["conv1"]):
            model(torch.randn(2, 5, 12, 12))
    assert _hook_count(model) == 0


class _Counter:
    def __init__(self) -> None:
        self.indices: list[int] = []
        self.shapes: set = set()

    def update(self, batch: Batch) -> None:
        self.indices += batch.indices.tolist()
        self.shapes.add(tuple(batch.activations["conv2"].shape[1:]))


def test_data_pass_feeds_every_image_once(project: Path) -> None:
    (project / "data" / "cat" / "broken.png").write_bytes(b"garbage")
    dataset = load_dataset(load_config(write_config(project, TINY_CONFIG)))
    model = tiny_model().eval()
    counter = _Counter()
    seen = data_pass(model, dataset, ["conv2"], PassOptions(torch.device("cpu"), batch_size=5), [counter])
    assert seen == 18 and sorted(counter.indices) == sorted(set(range(19)) - {dataset.names.index("cat/broken.png")})
    assert counter.shapes == {(4, 12, 12)}
    assert _hook_count(model) == 0


@dataclass(frozen=True)
class _Inner:
    score: float
    picture: np.ndarray = field(metadata=results.NOT_EXPORTED)


@dataclass(frozen=True)
class _Outer:
    name: str
    values: list[float | None]
    counts: dict[str, int]
    inner: list[_Inner]
    matrix: np.ndarray


def test_results_round_trip_without_pickle(tmp_path: Path) -> None:
    original = _Outer(
        name="x<y>",
        values=[0.5, None],
        counts={"a": 1},
        inner=[_Inner(1.25, np.arange(12, dtype=np.uint8).reshape(2, 2, 3))],
        matrix=np.eye(3),
    )
    results.save(original, tmp_path / "r")
    loaded = results.load(_Outer, tmp_path / "r")
    assert loaded.name == original.name and loaded.values == [0.5, None] and loaded.counts == {"a": 1}
    assert np.array_equal(loaded.inner[0].picture, original.inner[0].picture)
    assert np.array_equal(loaded.matrix, np.eye(3))
    exported = results.to_export(original)
    assert "picture" not in exported["inner"][0] and exported["matrix"][1] == [0.0, 1.0, 0.0]
    assert results.load(_Inner, tmp_path / "r") is None  # a different shape is a cache miss
    assert results.load(_Outer, tmp_path / "absent") is None
