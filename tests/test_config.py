from pathlib import Path

import pytest

from dossier.config import config_reference, load_config
from dossier.errors import ConfigError
from tests.conftest import TINY_CONFIG, write_config


def test_valid_config_resolves_paths_relative_to_the_file(tiny_config: Path) -> None:
    config = load_config(tiny_config)
    assert config.model.source == "factory"
    assert config.data.source == "imagefolder"
    assert config.resolve(config.data.imagefolder) == (tiny_config.parent / "data").resolve()
    assert config.model.channel_std == (0.25, 0.25, 0.25)
    assert config.layers == "auto" and config.seed == 0 and config.batch_size == 8


def test_unknown_key_names_key_file_and_allowed_keys(tmp_path: Path) -> None:
    path = write_config(tmp_path, TINY_CONFIG.replace("  weights: tiny.pt", "  weigths: tiny.pt"))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = error.value.message
    assert "unknown key 'model.weigths'" in message
    assert str(path) in message
    assert "weights" in message and "torchvision" in message  # the allowed keys
    assert "\n" not in message


def test_missing_key_is_named(tmp_path: Path) -> None:
    path = write_config(tmp_path, TINY_CONFIG.replace("  input_size: [3, 12, 12]\n", ""))
    with pytest.raises(ConfigError, match="missing key 'model.input_size'"):
        load_config(path)


def test_two_model_sources_are_rejected(tmp_path: Path) -> None:
    path = write_config(tmp_path, TINY_CONFIG.replace("model:\n", "model:\n  torchvision: resnet18\n"))
    with pytest.raises(ConfigError, match="exactly one of torchvision, export, torchscript, factory, builtin"):
        load_config(path)


def test_yaml_syntax_error_reports_the_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, "title: x\nmodel:\n  factory: [unclosed\ndata: {}\n")
    with pytest.raises(ConfigError, match=r"YAML syntax error at line \d+"):
        load_config(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_mean_must_match_channels(tmp_path: Path) -> None:
    path = write_config(tmp_path, TINY_CONFIG.replace("mean: [0.5, 0.5, 0.5]", "mean: [0.5]"))
    with pytest.raises(ConfigError, match="'model': mean needs 3 values"):
        load_config(path)


def test_bad_literal_lists_the_allowed_values(tmp_path: Path) -> None:
    path = write_config(tmp_path, TINY_CONFIG + "device: tpu\n")
    with pytest.raises(ConfigError, match="'device'.*'auto', 'cpu' or 'cuda'"):
        load_config(path)


def test_starter_config_is_valid(tmp_path: Path, cli) -> None:
    result = cli("init", tmp_path / "start.yaml")
    assert result.exit_code == 0
    assert (tmp_path / "start.yaml").read_text() == config_reference(starter=True)
    config = load_config(tmp_path / "start.yaml")
    assert config.model.torchvision == "resnet18"
    assert cli("init", tmp_path / "start.yaml").exit_code != 0  # no silent overwrite
