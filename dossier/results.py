"""Typed results saved without pickle: numbers as JSON, arrays as .npz beside them.

A result is a frozen dataclass of numbers, strings, lists, nested result dataclasses and numpy
arrays. Arrays whose field carries ``metadata={"export": False}`` (pictures) stay out of the JSON
export; every other number goes into dossier.json.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np

T = TypeVar("T")
NOT_EXPORTED = {"export": False}


class ByLayer:
    """for_layer() of a result whose `layers` are entries naming their `layer`."""

    layers: list[Any]

    def for_layer(self, name: str) -> Any:
        return next((entry for entry in self.layers if entry.layer == name), None)


def to_export(value: Any) -> Any:
    """A JSON-ready copy of a result for dossier.json: arrays as lists, pictures left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_export(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.metadata.get("export", True)
        }
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [to_export(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_export(v) for k, v in value.items()}
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def save(result: Any, path: Path) -> None:
    """Write result as PATH.json (+ PATH.npz when it holds arrays)."""
    arrays: dict[str, np.ndarray] = {}
    document = _encode(result, arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    if arrays:
        _atomic_write(path.with_suffix(".npz"), lambda handle: np.savez_compressed(handle, **arrays))
    # The JSON last: load() reads an entry only when it exists, so an interrupted save is a miss.
    _atomic_write(path.with_suffix(".json"), lambda handle: handle.write(json.dumps(document).encode()))


def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write to a temporary file beside path and rename it: a kill never leaves half a file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as handle:
            write(handle)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def load(cls: type[T], path: Path) -> T | None:
    """Read a result written by save(); None when it is absent or no longer matches cls."""
    json_path = path.with_suffix(".json")
    if not json_path.is_file():
        return None
    try:
        document = json.loads(json_path.read_text(encoding="utf-8"))
        npz = path.with_suffix(".npz")
        arrays = dict(np.load(npz, allow_pickle=False)) if npz.is_file() else {}
        return _decode(cls, document, arrays)
    except (ValueError, KeyError, TypeError, OSError):
        return None  # a stale or damaged cache entry is recomputed, not fatal


def _encode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name), arrays) for f in dataclasses.fields(value)}
    if isinstance(value, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, (list, tuple)):
        return [_encode(v, arrays) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v, arrays) for k, v in value.items()}
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def _decode(tp: Any, value: Any, arrays: dict[str, np.ndarray]) -> Any:
    origin = typing.get_origin(tp)
    if isinstance(value, dict) and "__array__" in value:
        return arrays[value["__array__"]]
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        fields = {f.name for f in dataclasses.fields(tp)}
        if set(value) != fields:
            raise KeyError("fields changed")
        return tp(**{name: _decode(hints[name], value[name], arrays) for name in fields})
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        return _decode(options[0], value, arrays)
    if origin is list:
        (item,) = typing.get_args(tp)
        return [_decode(item, v, arrays) for v in value]
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v, arrays) for v in value)
        return tuple(_decode(a, v, arrays) for a, v in zip(args, value))
    if origin is dict:
        key_type, item = typing.get_args(tp)
        return {key_type(k): _decode(item, v, arrays) for k, v in value.items()}
    return value


def cache_key(**parts: Any) -> str:
    """A stable hash of everything a result depends on."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]
