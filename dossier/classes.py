"""Which model output each class folder is: the data's classes among the model's outputs.

People audit a model on some of its classes (ten of an ImageNet model's thousand). The K class
folders keep the labels 0..K-1 that every analysis groups images by; a ClassMap says which of the
model's N outputs each label is. Predictions are read over all N outputs, so a prediction outside
the K classes counts as a mistake instead of being ignored, and ClassMap is the one place that
says what a predicted output is in the data's terms.

The outputs are named, in this order, by
1. `data.class_index`, a file (see read_class_index);
2. the categories of torchvision weights given by name (`model.weights: IMAGENET1K_V1`);
3. the ImageNet-1k WordNet ids (`n01440764`), for a model with 1000 outputs.
Without data.class_index and with as many folders as outputs, the sorted folders are the outputs
(torchvision's ImageFolder convention) and no name is read. Otherwise the class_index alone, or
the first of 2 and 3 that names every folder, maps them. Names match ignoring case, with `_`, `-`
and spaces equivalent.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dossier.errors import DataError
from dossier.model_source import torchvision_categories

if TYPE_CHECKING:
    from dossier.config import Config

log = logging.getLogger(__name__)

IDENTITY = "sorted class folders = outputs"
IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class ClassMap:
    """The data's K classes among the model's N outputs."""

    class_names: list[str]  # label k is class_names[k]
    class_outputs: list[int]  # the model output of each class
    output_names: list[str]  # a name for each of the model's outputs
    source: str  # how the classes were mapped, as the report says it

    @property
    def outputs(self) -> int:
        return len(self.output_names)

    @property
    def fingerprint(self) -> str:
        """Changes with the mapping and the outputs' names: results depend on both."""
        return hashlib.sha256(json.dumps(dataclasses.asdict(self)).encode()).hexdigest()

    def true_outputs(self, labels: np.ndarray) -> np.ndarray:
        """The model output of each label."""
        return np.asarray(self.class_outputs, dtype=np.int64)[labels]

    def labels_of(self, outputs: np.ndarray) -> np.ndarray:
        """The class of each predicted output; K (one past the last class) for an output that is
        none of the data's classes."""
        lookup = np.full(self.outputs, len(self.class_names), dtype=np.int64)
        lookup[self.class_outputs] = np.arange(len(self.class_names))
        return lookup[outputs]

    def prediction_name(self, output: int) -> str:
        """A predicted output as the report names it: its class, or `other: <output name>`."""
        if output in self.class_outputs:
            return self.class_names[self.class_outputs.index(output)]
        return f"other: {self.output_names[output]}"


class _Unmatched(Exception):
    """A source names no output after a class folder: the next source may."""


@dataclass(frozen=True)
class _Source:
    """One way of naming the model's outputs."""

    label: str
    names: dict[str, list[int]]  # normalised name -> the outputs it names
    display: list[str] | None  # a name for each output, when the source has them

    def match(self, folders: list[str], outputs: int) -> list[int]:
        """The output each folder names; _Unmatched when one names none (the next source may)."""
        found = []
        for folder in folders:
            candidates = self.names.get(normalise(folder), [])
            if not candidates:
                close = difflib.get_close_matches(normalise(folder), list(self.names), n=3, cutoff=0.5)
                hint = f", closest: {', '.join(repr(name) for name in close)}" if close else ""
                raise _Unmatched(f"class folder '{folder}' matches none of the model's {outputs} outputs by {self.label}{hint}")
            if len(candidates) > 1:
                raise DataError(
                    f"data: class folder '{folder}' names outputs {', '.join(map(str, candidates))} by {self.label}; "
                    'map it to one in data.class_index ({"folder": output index})'
                )
            found.append(candidates[0])
        owner: dict[int, str] = {}
        for folder, output in zip(folders, found):
            if output in owner:
                raise DataError(f"data: class folders '{owner[output]}' and '{folder}' are both output {output} by {self.label}")
            owner[output] = folder
        return found


def normalise(name: str) -> str:
    """A name as matching sees it: case-folded, runs of `_`, `-` and spaces one space."""
    return re.sub(r"[\s_-]+", " ", name).strip().casefold()


def map_classes(config: Config, folders: list[str], outputs: int) -> ClassMap:
    """The model output of each class folder (folders sorted, as the labels are)."""
    if config.data.class_index is None and len(folders) == outputs:
        return ClassMap(folders, list(range(outputs)), folders, IDENTITY)
    categories = torchvision_categories(config)
    sources = _sources(config, outputs, categories)
    if not sources:
        raise DataError(
            f"data: {len(folders)} classes but the model outputs {outputs} scores; give one class folder per "
            "output (sorted names = outputs) or name the outputs in data.class_index to map the folders by name"
        )
    misses = []
    for source in sources:
        try:
            class_outputs = source.match(folders, outputs)
        except _Unmatched as miss:
            misses.append(str(miss))
            continue
        names = source.display or categories or _numbered(folders, class_outputs, outputs)
        log.info("data: %d of the model's %d classes, mapped by %s", len(folders), outputs, source.label)
        return ClassMap(folders, class_outputs, names, source.label)
    raise DataError("data: " + "; ".join(misses))


def _numbered(folders: list[str], class_outputs: list[int], outputs: int) -> list[str]:
    """Output names where nothing names them: the mapped folders, `output i` for the rest."""
    names = [f"output {i}" for i in range(outputs)]
    for folder, output in zip(folders, class_outputs):
        names[output] = folder
    return names


def _sources(config: Config, outputs: int, categories: list[str] | None) -> list[_Source]:
    """The ways of naming the outputs this model and config offer, in the order they are tried.
    An explicit data.class_index is the only one: a mistake in it should not be papered over."""
    if config.data.class_index is not None:
        return [read_class_index(config.resolve(config.data.class_index), outputs)]
    sources = []
    if categories is not None and len(categories) == outputs:
        label = f"torchvision {config.model.torchvision} {config.model.weights} categories"
        sources.append(_by_output(label, [[name] for name in categories]))
    if outputs == IMAGENET_CLASSES:
        wnids = imagenet_wnids()
        sources.append(_by_output("ImageNet-1k WordNet ids", [[w] for w in wnids], categories or list(wnids)))
    return sources


@cache
def imagenet_wnids() -> tuple[str, ...]:
    """The ImageNet-1k WordNet ids in output order, shipped with dossier (source: the file's header)."""
    text = resources.files("dossier").joinpath("data_files/imagenet_wnids.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line and not line.startswith("#"))


def read_class_index(path: Path, outputs: int) -> _Source:
    """data.class_index, one of: JSON `{"folder": output index}`; a JSON list of output names in
    output order, an item possibly a list of names of one output (the last is shown); JSON
    `{"0": ["n01440764", "tench"], ...}` (the imagenet_class_index.json of Keras and torchvision
    examples); or any file not ending in .json, one output name per line in output order."""
    if not path.is_file():
        raise DataError(f"data.class_index: file '{path}' not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"data.class_index: '{path}' is not a UTF-8 text file") from None
    label = f"{path.name} (data.class_index)"
    if path.suffix.lower() != ".json":
        lines = [line.strip() for line in text.strip().splitlines()]
        return _by_output(label, _counted([[line] if line else [] for line in lines], outputs, path))
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"data.class_index: '{path}' is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(raw, list):
        return _by_output(label, _counted([_aliases(item, path) for item in raw], outputs, path))
    if isinstance(raw, dict) and raw and all(_is_index(value) for value in raw.values()):
        for output in raw.values():
            _check_output(output, outputs, path)
        return _Source(label, _index(raw.items()), None)
    if isinstance(raw, dict) and raw and all(key.strip().isdigit() for key in raw):
        aliases: list[list[str]] = [[] for _ in range(outputs)]
        for key, names in raw.items():
            aliases[_check_output(int(key), outputs, path)] = _aliases(names, path)
        return _by_output(label, aliases)
    raise DataError(
        f'data.class_index: \'{path}\' holds none of {{"folder": output index}}, a list of output names, '
        '{"output index": [names]}'
    )


def _by_output(label: str, aliases: list[list[str]], display: list[str] | None = None) -> _Source:
    """A source naming output i by aliases[i]; shown by its last alias unless display is given."""
    pairs = ((name, output) for output, names in enumerate(aliases) for name in names)
    shown = display or [names[-1] if names else f"output {i}" for i, names in enumerate(aliases)]
    return _Source(label, _index(pairs), shown)


def _index(pairs: Iterable[tuple[str, int]]) -> dict[str, list[int]]:
    names: dict[str, list[int]] = {}
    for name, output in pairs:
        outputs = names.setdefault(normalise(name), [])
        if output not in outputs:
            outputs.append(output)
    return names


def _counted(aliases: list[list[str]], outputs: int, path: Path) -> list[list[str]]:
    if len(aliases) != outputs:
        raise DataError(f"data.class_index: '{path}' names {len(aliases)} outputs but the model has {outputs}")
    return aliases


def _aliases(item: object, path: Path) -> list[str]:
    if isinstance(item, str):
        return [item]
    if isinstance(item, list) and item and all(isinstance(name, str) for name in item):
        return item
    raise DataError(f"data.class_index: '{path}': an output's names should be a string or a list of strings, not {item!r}")


def _is_index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_output(output: int, outputs: int, path: Path) -> int:
    if not 0 <= output < outputs:
        raise DataError(f"data.class_index: '{path}' names output {output}, outside the model's {outputs} outputs (0–{outputs - 1})")
    return output
