"""The build configuration: a validated pydantic tree loaded from YAML.

Defaults live in the models and only there: each analysis declares its own settings, assembled
here under `analyses:` from the registry, and the starter config (`dossier init`) and the README's
config reference are both written from these models. Every validation problem is reported by its
dotted key, with the file name and, for unknown keys, the keys that are allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, create_model, model_validator

from dossier.analyses import ordered
from dossier.errors import ConfigError
from dossier.sample import CHECKPOINTS, EPOCHS
from dossier.settings import StrictModel

MODEL_SOURCES = ("torchvision", "export", "torchscript", "factory", "builtin")
DATA_SOURCES = ("imagefolder", "builtin")


def _example(value: Any, alternative: bool = False) -> dict[str, Any]:
    """What the config reference shows for a key without a useful default (commented out when
    it is an alternative to the key above)."""
    return {"example": value, "alternative": alternative}


class ModelConfig(StrictModel):
    """Where the network comes from and how its input is prepared."""

    torchvision: str | None = Field(
        None, description="exactly one of: torchvision | export | torchscript | factory | builtin",
        json_schema_extra=_example("resnet18"),
    )
    export: str | None = Field(
        None, description="a torch.export.save file (.pt2), weights included",
        json_schema_extra=_example("model.pt2", True),
    )
    torchscript: str | None = Field(
        None, description="a torch.jit.save file", json_schema_extra=_example("model.ts", True)
    )
    factory: str | None = Field(
        None, description="FILE.py:FUNCTION or package.module:FUNCTION, returns an nn.Module",
        json_schema_extra=_example("my_models.py:build", True),
    )
    builtin: Literal["digits-cnn", "digits-cnn-early"] | None = Field(
        None, description=f"the offline sample model; digits-cnn-early: its checkpoint at epoch {CHECKPOINTS['digits-cnn-early']} of {EPOCHS}",
        json_schema_extra=_example("digits-cnn", True),
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="passed to the torchvision constructor / factory",
        json_schema_extra=_example({"num_classes": 10}),
    )
    weights: str | None = Field(
        None, description="a state_dict file, a checkpoint dict holding one, or a torchvision weights name",
        json_schema_extra=_example("weights/resnet18.pt"),
    )
    input_size: tuple[int, int, int] = Field(
        description="channels, height, width; images are resized to this", json_schema_extra=_example([3, 32, 32])
    )
    mean: tuple[float, ...] | None = Field(
        None, description="per-channel input normalisation (default 0)", json_schema_extra=_example([0.5, 0.5, 0.5])
    )
    std: tuple[float, ...] | None = Field(
        None, description="per-channel (default 1)", json_schema_extra=_example([0.5, 0.5, 0.5])
    )

    @model_validator(mode="after")
    def _one_source_and_matching_normalisation(self) -> "ModelConfig":
        given = [name for name in MODEL_SOURCES if getattr(self, name) is not None]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ValueError(f"give exactly one of {', '.join(MODEL_SOURCES)} (found: {found})")
        if self.export is not None and self.weights is not None:
            raise ValueError("weights cannot be used with export: an exported program carries its own weights")
        channels, height, width = self.input_size
        if min(self.input_size) < 1:
            raise ValueError(f"input_size must be positive, got {list(self.input_size)}")
        for key in ("mean", "std"):
            value = getattr(self, key)
            if value is not None and len(value) != channels:
                raise ValueError(f"{key} needs {channels} values (one per input channel)")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ValueError("std values must be > 0")
        return self

    @property
    def source(self) -> str:
        return next(name for name in MODEL_SOURCES if getattr(self, name) is not None)

    @property
    def channel_mean(self) -> tuple[float, ...]:
        return self.mean if self.mean is not None else (0.0,) * self.input_size[0]

    @property
    def channel_std(self) -> tuple[float, ...]:
        return self.std if self.std is not None else (1.0,) * self.input_size[0]


class DataConfig(StrictModel):
    """The images the analyses run on: held-out data the model did not train on."""

    imagefolder: str | None = Field(
        None, description="exactly one of: imagefolder | builtin; one sub-folder per class",
        json_schema_extra=_example("data/val"),
    )
    builtin: Literal["digits"] | None = Field(
        None, description="scikit-learn's digits (held-out split, coloured)",
        json_schema_extra=_example("digits", True),
    )
    limit: int | None = Field(
        None, gt=0, description="optional cap, balanced over classes", json_schema_extra=_example(2000)
    )
    class_index: str | None = Field(
        None, description="a JSON or text file naming the model's outputs; class folders map to them by name"
    )

    @model_validator(mode="after")
    def _one_source(self) -> "DataConfig":
        given = [name for name in DATA_SOURCES if getattr(self, name) is not None]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ValueError(f"give exactly one of {', '.join(DATA_SOURCES)} (found: {found})")
        return self

    @property
    def source(self) -> str:
        return next(name for name in DATA_SOURCES if getattr(self, name) is not None)


class OutputConfig(StrictModel):
    """How large what a build writes may grow: a site GitHub Pages serves, a PDF an audit attaches."""

    site_mb: float = Field(150, gt=0, description="the site at most (pictures of fewer units beyond it)")
    pdf_mb: float = Field(50, gt=0, description="the PDF at most (fewer pictures per layer beyond it)")


def _analyses_model() -> type[StrictModel]:
    """`analyses:`, one key per registered analysis, holding that analysis' own settings."""
    fields = {
        cls.name: (cls.settings_type, Field(default_factory=cls.settings_type, description=cls.title))
        for cls in ordered()
    }
    return create_model("AnalysesConfig", __base__=StrictModel, **fields)


AnalysesConfig = _analyses_model()


def _checks_model() -> type[StrictModel]:
    """`checks:`, flat: every analysis's check thresholds side by side (names are unique)."""
    fields: dict[str, Any] = {}
    for cls in ordered():
        for name, field in (cls.check_settings.model_fields.items() if cls.check_settings else []):
            if name in fields:
                raise TypeError(f"check setting {name!r} is declared twice ({cls.name})")
            fields[name] = (field.annotation, field)
    return create_model("ChecksConfig", __base__=StrictModel, **fields)


ChecksConfig = _checks_model()


class Config(StrictModel):
    """A whole dossier build."""

    title: str | None = Field(
        None, description="optional; default: the model's name", json_schema_extra=_example("My model")
    )
    author: str | None = Field(
        None, description="optional; on the cover and in the PDF metadata", json_schema_extra=_example("Audit team")
    )
    model: ModelConfig
    data: DataConfig
    layers: Literal["auto"] | list[str] = Field(
        "auto", description="or a list of module names; auto = every Conv2d + the last Linear"
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto uses a CUDA GPU when there is one")
    batch_size: Annotated[int, Field(gt=0)] | Literal["auto"] = Field(
        "auto", description="images per forward pass; auto: 64 on a CPU, from free memory on a GPU"
    )
    mixed_precision: Literal["auto", "on", "off"] = Field(
        "auto", description="bf16 forward passes and feature visualisation; auto: on with a GPU"
    )
    loader_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="processes decoding images; auto: 0 on a CPU, up to 8 with a GPU"
    )
    scheduler: str | None = Field(
        None, description="a Dask scheduler address, or local:N for N local worker processes"
    )
    budget: str | None = Field(
        "auto", description="e.g. 20m or 1h30m: reduce the work to fit; auto: 20m on a CPU, none on a GPU"
    )
    seed: int = Field(0, description="every random choice of the build derives from it")
    output: OutputConfig = Field(default_factory=OutputConfig, description="size budgets of the site and the PDF")
    checks: ChecksConfig = Field(  # type: ignore[valid-type]
        default_factory=ChecksConfig, description="thresholds of the checks that gate a release (dossier build --check)"
    )
    analyses: AnalysesConfig = Field(  # type: ignore[valid-type]
        default_factory=AnalysesConfig, description="per-analysis settings (defaults shown)"
    )

    _path: Path = PrivateAttr(default=Path("dossier.yaml"))

    @property
    def path(self) -> Path:
        return self._path

    def resolve(self, value: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self._path.parent / path).resolve()

    @property
    def display_title(self) -> str:
        if self.title:
            return self.title
        model = self.model
        return str(getattr(model, model.source))


def load_config(path: Path) -> Config:
    """Read and validate a YAML config; raise ConfigError with a one-line message."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys (title, model, data, ...) at the top")
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_validation_error(exc)}") from None
    config._path = path.resolve()
    return config


def describe_validation_error(exc: ValidationError) -> str:
    """All of pydantic's errors, each by dotted key, on one line."""
    messages = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"] if not _is_union_tag(part)]
        key = ".".join(loc) or "(top level)"
        kind = error["type"]
        if kind == "extra_forbidden":
            allowed = ", ".join(_allowed_keys(loc[:-1]))
            messages.append(f"unknown key '{key}' (allowed here: {allowed})")
        elif kind == "missing":
            messages.append(f"missing key '{key}'")
        elif kind == "literal_error":
            messages.append(f"'{key}': {error['msg'].lower()}, got {error['input']!r}")
        else:
            message = error["msg"].removeprefix("Value error, ")
            messages.append(f"'{key}': {message}")
    return "; ".join(dict.fromkeys(messages))


def _is_union_tag(part: object) -> bool:
    # pydantic names union members in locations ("list[str]", "literal['auto']"): not keys.
    return isinstance(part, str) and ("[" in part or part in {"str", "int"})


def _allowed_keys(loc: list[str]) -> list[str]:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


# The config reference --------------------------------------------------------------------------

_COMMENT_COLUMN = 36
_STARTER_HEADER = """\
# A dossier build configuration. Paths are relative to this file.
# Build it with:  dossier build THIS_FILE.yaml   (see `dossier build --help`)
"""


def config_reference(starter: bool = False) -> str:
    """Every config key with its default (or an example) and what it means, as YAML.

    The README's config reference is this text; the starter config (`dossier init`) is the same
    with the per-analysis settings commented out, so that they follow dossier's defaults."""
    lines = _model_lines(Config, 0, hidden=False, starter=starter)
    return (_STARTER_HEADER if starter else "") + "\n".join(lines) + "\n"


def _model_lines(model: type[BaseModel], indent: int, hidden: bool, starter: bool) -> list[str]:
    lines = []
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        hide = hidden or bool(extra.get("alternative")) or (starter and indent == 0 and name == "analyses")
        lead = "  " * indent + ("# " if hide else "")
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if indent == 0:
                lines.append("")
            lines.append(_with_comment(f"{lead}{name}:", field.description))
            lines += _model_lines(annotation, indent + 1, hide, starter)
            continue
        value = extra["example"] if "example" in extra else field.get_default(call_default_factory=True)
        lines.append(_with_comment(f"{lead}{name}: {_inline_yaml(value)}", field.description))
    return lines


def _with_comment(text: str, description: str | None) -> str:
    if not description:
        return text
    return f"{text.ljust(_COMMENT_COLUMN - 1)} # {description}"


def _inline_yaml(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=1000, allow_unicode=True)
    return text.removesuffix("\n...\n").strip()
