"""Checks that gate a release: known answers for the border (shortcut) check, a gate that exits
1 naming the check, and the sample passing with the defaults."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import write_config

# A model that decides its first class by the image's top-left corner and its second by the
# centre: relevance of the first class's images sits on the border.
SHORTCUT_FACTORY = textwrap.dedent("""
    import torch
    from torch import nn

    def build(num_classes=2, corner=True):
        conv = nn.Conv2d(3, 2, 1, bias=False)
        head = nn.Linear(2 * 16 * 16, 2, bias=False)
        with torch.no_grad():
            conv.weight.fill_(1 / 3)  # brightness, twice
            mask = torch.zeros(2, 2, 16, 16)
            mask[0, 0, :2, :2] = 1.0 if corner else 0.0  # class 0 reads the corner...
            mask[0, 0, 4:6, 4:6] = 0.0 if corner else 1.0  # ...or a patch inside the frame
            mask[1, 1, 6:10, 6:10] = 1.0  # class 1 reads the centre
            head.weight.copy_(mask.flatten(1) / 4)
        return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), head).eval()
""")
CONFIG = """\
model:
  factory: models.py:build
  input_size: [3, 16, 16]
data:
  imagefolder: data
batch_size: 8
"""


def _shortcut_project(root: Path, mark: tuple[slice, slice] = (slice(0, 2), slice(0, 2))) -> Path:
    """Class 0's images carry a bright mark (in the corner unless told otherwise), class 1's a
    bright centre."""
    (root / "models.py").write_text(SHORTCUT_FACTORY)
    rng = np.random.default_rng(0)
    # folders sort in the order of the outputs: "a-corner" is output 0
    for name, box in (("a-corner", mark), ("b-centre", (slice(6, 10), slice(6, 10)))):
        (root / "data" / name).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 30, size=(16, 16, 3), dtype=np.uint8)
            pixels[box] = 230
            Image.fromarray(pixels).save(root / "data" / name / f"{i}.png")
    return root


def _checks(out: Path) -> dict[str, dict]:
    return {check["name"]: check for check in json.loads((out / "dossier.json").read_text())["checks"]}


@pytest.mark.parametrize(("threshold", "status"), [(0.6, "fail"), (1.0, "warn")])
def test_a_planted_corner_shortcut_fails_the_border_check_and_names_its_class(
    tmp_path: Path, cli, threshold: float, status: str
) -> None:
    root = _shortcut_project(tmp_path)
    config = write_config(root, CONFIG + f"checks: {{max_border_relevance: {threshold}}}\n")
    result = cli("build", config, "--out", root / "out", "--no-pdf", "--only", "relevance", "--budget", "none")
    assert result.exit_code == 0, result.output
    border = _checks(root / "out")["relevance on the image border"]
    assert border["status"] == status
    assert border["value"] == "100%" and "class a-corner" in border["detail"]
    assert "shortcut" in border["detail"]


def test_the_border_check_passes_for_relevance_on_the_object(tmp_path: Path, cli) -> None:
    root = _shortcut_project(tmp_path, mark=(slice(4, 6), slice(4, 6)))
    text = CONFIG.replace("factory: models.py:build", "factory: models.py:build\n  kwargs: {corner: false}")
    config = write_config(root, text + "checks: {max_border_relevance: 0.6}\n")
    result = cli("build", config, "--out", root / "out", "--no-pdf", "--only", "relevance", "--budget", "none")
    assert result.exit_code == 0, result.output
    border = _checks(root / "out")["relevance on the image border"]
    assert border["status"] == "pass" and border["value"] == "0%"


def test_the_gate_exits_1_naming_the_failed_check(tiny_config: Path, cli) -> None:
    config = write_config(tiny_config.parent, tiny_config.read_text() + "checks: {min_top1: 1.0}\n", "strict.yaml")
    out = tiny_config.parent / "out"
    result = cli("build", config, "--out", out, "--no-pdf", "--only", "purity", "--check", "--budget", "none")
    assert result.exit_code == 1
    assert "fail: top-1 accuracy:" in result.output and "(threshold ≥ 100%)" in result.output
    assert (out / "dossier.json").is_file()  # the dossier is written all the same
    again = cli("check", out)
    assert again.exit_code == 1 and "fail: top-1 accuracy" in again.output
    index = (out / "index.html").read_text()
    assert 'id="checks"' in index and "check-fail" in index


def test_check_refuses_a_folder_without_a_dossier(tmp_path: Path, cli) -> None:
    result = cli("check", tmp_path)
    assert result.exit_code == 2 and "is not a dossier.json with checks" in result.output


def test_the_sample_passes_the_default_checks(sample_build: Path) -> None:
    checks = json.loads((sample_build / "dossier.json").read_text())["checks"]
    names = {check["name"] for check in checks}
    assert {"top-1 accuracy", "per-class accuracy", "dead units", "relevance conservation",
            "relevance on the image border", "heatmap faithfulness", "heatmap sanity check",
            "accuracy under shifts"} <= names
    assert not [check for check in checks if check["status"] == "fail"], checks
    from pypdf import PdfReader

    cover = " ".join(PdfReader(sample_build / "dossier.pdf").pages[0].extract_text().split())
    assert "Checks: 0 failed" in cover
