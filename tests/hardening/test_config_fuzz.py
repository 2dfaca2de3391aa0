"""Property-based fuzzing of the config loader: whatever a config file holds, loading it gives a
Config or the tool's own one-line ConfigError, never another exception."""

from __future__ import annotations

import typing
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from dossier.config import Config, load_config
from dossier.errors import ConfigError

VALID = {
    "title": "fuzzed",
    "model": {"builtin": "digits-cnn", "input_size": [3, 8, 8]},
    "data": {"builtin": "digits", "limit": 50},
}


def _model_of(annotation: object) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _key_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key a config may hold, nested sections included (the analyses' settings too)."""
    paths = []
    for name, field in model.model_fields.items():
        paths.append((*prefix, name))
        inner = _model_of(field.annotation)
        if inner is not None:
            paths += _key_paths(inner, (*prefix, name))
    return paths


KEY_PATHS = _key_paths(Config)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.text(max_size=30),
    st.floats(allow_nan=True, allow_infinity=True), st.just(-1), st.just(0), st.just(""),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


def _set(document: dict, path: tuple[str, ...], value: object) -> dict:
    node = document
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value
    return document


@st.composite
def configs(draw) -> object:
    """A valid config with some keys given arbitrary values, or something else entirely."""
    if draw(st.integers(0, 9)) == 0:
        return draw(values)
    document = yaml.safe_load(yaml.safe_dump(VALID))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(KEY_PATHS + [("analyses", "no_such_analysis"), ("modle",)]))
        document = _set(document, path, draw(values))
    return document


def test_the_key_paths_cover_the_analyses_settings() -> None:
    assert ("analyses", "galleries", "steps") in KEY_PATHS and ("checks", "min_top1") in KEY_PATHS
    assert ("model", "input_size") in KEY_PATHS and ("data", "limit") in KEY_PATHS


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=configs())
def test_loading_any_config_gives_a_config_or_a_config_error(document: object, tmp_path_factory) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "dossier.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    try:
        config = load_config(path)
    except ConfigError as error:
        message = error.format_message()
        assert message and "\n" not in message and "Traceback" not in message
        assert str(path) in message or "config" in message
    else:
        assert isinstance(config, Config)
        assert config.analyses.galleries.steps >= 0 and config.batch_size != 0


def test_nonsense_bytes_are_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "dossier.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage: [")
    try:
        load_config(path)
    except ConfigError as error:
        assert str(path) in error.format_message()
    else:
        raise AssertionError("garbage loaded")
