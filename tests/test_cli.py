"""Every bad input is one line on stderr, exit code 2, no traceback."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_CONFIG, tiny_model, write_config


def _setup_state_dict_mismatch(project: Path) -> str:
    state = tiny_model().state_dict()
    del state["fc.bias"]
    torch.save(state, project / "bad.pt")
    return TINY_CONFIG.replace("tiny.pt", "bad.pt")


def _setup_junk_weights(project: Path) -> str:
    (project / "junk.pt").write_bytes(b"\x00\x01junk")
    return TINY_CONFIG.replace("tiny.pt", "junk.pt")


def _setup_empty_folder(project: Path) -> str:
    (project / "empty").mkdir()
    return TINY_CONFIG.replace("imagefolder: data", "imagefolder: empty")


BAD_INPUTS = {
    "yaml syntax": (lambda p: "model: [unclosed\n", "YAML syntax error at line"),
    "unknown key": (lambda p: TINY_CONFIG + "colour: blue\n", "unknown key 'colour'"),
    "two model sources": (
        lambda p: TINY_CONFIG.replace("model:\n", "model:\n  builtin: digits-cnn\n"),
        "give exactly one of torchvision, export, torchscript, factory, builtin (found: factory, builtin)",
    ),
    "missing weights": (lambda p: TINY_CONFIG.replace("tiny.pt", "gone.pt"), "gone.pt' not found"),
    "not a checkpoint": (_setup_junk_weights, "is not a PyTorch checkpoint"),
    "state_dict mismatch": (_setup_state_dict_mismatch, "does not fit the architecture (missing: fc.bias)"),
    "input size rejected": (
        lambda p: TINY_CONFIG.replace("[3, 12, 12]", "[2, 12, 12]")
        .replace("[0.5, 0.5, 0.5]", "[0.5, 0.5]")
        .replace("[0.25, 0.25, 0.25]", "[0.25, 0.25]"),
        "model.input_size [2, 12, 12]: the model rejects an input of this size",
    ),
    "unknown layer": (lambda p: TINY_CONFIG + "layers: [conv1, cnv2]\n", "no module named 'cnv2'; close matches: conv2"),
    "missing image folder": (lambda p: TINY_CONFIG.replace("imagefolder: data", "imagefolder: nowhere"), "not found"),
    "empty image folder": (_setup_empty_folder, "has no class sub-folders"),
    "factory without function": (lambda p: TINY_CONFIG.replace("models.py:build", "models.py:nothing"), "has no function 'nothing'"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2(case: str, project: Path, cli) -> None:
    make_text, expected = BAD_INPUTS[case]
    config = write_config(project, make_text(project))
    result = cli("build", config, "--out", project / "out")
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and expected in errors[0], result.output
    assert "Traceback" not in result.output
    assert not (project / "out").exists()


def test_missing_config_through_the_real_entry_point(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dossier", "build", str(tmp_path / "absent.yaml")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"Error: config file '{tmp_path / 'absent.yaml'}' not found"
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_device_cuda_without_gpu(tiny_config: Path, cli) -> None:
    result = cli("build", tiny_config, "--device", "cuda")
    assert result.exit_code == 2 and "no CUDA GPU is available" in result.output


def test_layers_command_prints_the_table(tiny_config: Path, cli) -> None:
    result = cli("layers", tiny_config)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["#", "name", "type", "kernel", "output", "parameters"]
    assert lines[1].split() == ["1", "conv1", "Conv2d", "3×3", "4×12×12", "112"]
    assert lines[3].split() == ["3", "fc", "Linear", "3", "51"]
    assert "3 layers; the model outputs 3 class scores." in lines[-1]


def test_help_explains_every_option(cli) -> None:
    text = " ".join(cli("build", "--help").output.split())
    for option in ("--out", "--device", "--no-pdf", "--only", "--strict"):
        assert option in text
    assert "build/<config file stem>" in text
