"""The build configuration: a validated pydantic tree loaded from YAML.

Defaults live here and only here. Every validation problem is reported by its dotted key,
with the file name and, for unknown keys, the keys that are allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from dossier.errors import ConfigError

MODEL_SOURCES = ("torchvision", "torchscript", "factory", "builtin")
DATA_SOURCES = ("imagefolder", "builtin")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    """Where the network comes from and how its input is prepared."""

    torchvision: str | None = Field(None, description="torchvision model name, e.g. resnet18")
    torchscript: str | None = Field(None, description="a torch.jit.save file")
    factory: str | None = Field(None, description="FILE.py:FUNCTION or package.module:FUNCTION")
    builtin: Literal["digits-cnn"] | None = Field(None, description="the offline sample model")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="passed to the constructor")
    weights: str | None = Field(
        None, description="state_dict / checkpoint file, or a torchvision weights name"
    )
    input_size: tuple[int, int, int] = Field(description="channels, height, width")
    mean: tuple[float, ...] | None = Field(None, description="per-channel mean; default 0")
    std: tuple[float, ...] | None = Field(None, description="per-channel std; default 1")

    @model_validator(mode="after")
    def _one_source_and_matching_normalisation(self) -> "ModelConfig":
        given = [name for name in MODEL_SOURCES if getattr(self, name) is not None]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ValueError(f"give exactly one of {', '.join(MODEL_SOURCES)} (found: {found})")
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


class DataConfig(_Strict):
    """The images the analyses run on: held-out data the model did not train on."""

    imagefolder: str | None = Field(None, description="a folder with one sub-folder per class")
    builtin: Literal["digits"] | None = Field(None, description="scikit-learn's digits, coloured")
    limit: int | None = Field(None, gt=0, description="cap on the images, balanced over classes")

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


class ModelCardConfig(_Strict):
    sample_images: int = Field(8, ge=0, description="images shown with their top-5 predictions")


class PurityConfig(_Strict):
    max_features: int = Field(
        2048, gt=0, description="flatten a layer's activations up to this size, else avg-pool"
    )
    n_init: int = Field(4, gt=0, description="k-means restarts")
    representatives: int = Field(6, ge=0, description="images nearest each cluster centre")


class NeuronTypesConfig(_Strict):
    border_threshold: float = Field(0.5, gt=0, le=1, description="KS spread for border-aware (seed: 0.5)")
    border_rule: Literal["either", "both"] = Field(
        "either", description="flag when a column or a row spread reaches it (either), or both"
    )
    border_activation_ratio: float = Field(
        1.5, gt=0, description="border ÷ interior mean activation that confirms a border unit"
    )
    dead_epsilon: float = Field(1e-6, ge=0, description="a unit whose maximum stays at or below is dead")
    selectivity_threshold: float = Field(0.5, ge=0, le=1, description="class selectivity index of a selective unit")


class KernelClustersConfig(_Strict):
    max_clusters: int = Field(8, ge=2, description="upper bound for the dendrogram's choice")
    clusters: int | None = Field(None, ge=2, description="fix the number of clusters instead")
    representatives: int = Field(3, ge=1, description="kernels shown per cluster")
    umap_neighbors: int = Field(30, ge=2)
    umap_min_dist: float = Field(0.0, ge=0)


class TdaRingsConfig(_Strict):
    max_kernels: int = Field(4000, ge=50, description="deterministic subsample above this many kernels")
    density_neighbors: int = Field(100, ge=2, description="k of the k-NN density filter")
    density_drop: float = Field(0.2, ge=0, lt=1, description="share of least dense kernels dropped")
    cubes: int = Field(5, ge=1, description="intervals per lens dimension")
    overlap: float = Field(0.1, gt=0, lt=1)
    eps: dict[int, float] = Field(default_factory=lambda: {3: 0.5, 5: 2.0}, description="DBSCAN eps by kernel size")
    min_samples: int = Field(3, ge=1)
    homology_points: int = Field(400, ge=20, description="greedy-permutation subsample for ripser")


class RelevanceConfig(_Strict):
    per_class: int = Field(1, ge=0, description="most confident correct images explained per class")
    mistakes: int = Field(4, ge=0, description="most confident mistakes explained")
    tolerance: float = Field(0.01, gt=0, description="conservation tolerance: |Σ input relevance / logit − 1|")
    top_filters: int = Field(5, ge=1, description="filters listed per class")
    activation_maps: int = Field(4, ge=1, description="strongest channels shown per layer and image")


class CommuteConfig(_Strict):
    sample: int = Field(2000, ge=10, description="class-balanced images (dense path: memory n², time n³)")
    neighbors: int = Field(10, ge=1, description="k of the symmetric k-NN graph")
    max_features: int = Field(2048, gt=0, description="flatten up to this size, else avg-pool")
    representatives: int = Field(6, ge=0)


class ProbesConfig(_Strict):
    sample: int = Field(2000, ge=10, description="class-balanced images")
    folds: int = Field(5, ge=2, description="cross-validation folds")
    max_features: int = Field(2048, gt=0, description="flatten up to this size, else avg-pool")
    max_dim: int = Field(256, ge=2, description="PCA components the probes read at most")
    trees: int = Field(50, ge=1, description="random-forest trees")


class TranslationConfig(_Strict):
    images: int = Field(200, ge=2, description="class-balanced images shifted")
    max_shift: int | None = Field(None, ge=1, description="largest shift in pixels; default input size / 8")


class EmbeddingConfig(_Strict):
    sample: int = Field(2000, ge=10, description="class-balanced images embedded (keep under 4,096)")
    neighbors: int = Field(15, ge=2, description="UMAP n_neighbors")
    thumbnails: int = Field(24, ge=0, description="misclassified images shown as pictures")


class GalleriesConfig(_Strict):
    steps: int = Field(48, ge=1, description="Adam steps per image (CPU default; raise on a GPU)")
    parameterisation: Literal["fourier", "pixel", "laplacian"] = "fourier"
    units_per_batch: int = Field(64, ge=1, description="units optimised together, one image each")
    exemplars: int = Field(6, ge=1, description="top and bottom data-set images kept per unit")
    colour_threshold: float = Field(3.0, ge=0, description="std of RGB histogram peaks of a colour-blind unit (0–255)")
    pdf_units: int = Field(8, ge=0, description="units per layer shown in the PDF")


class AnalysesConfig(_Strict):
    model_card: ModelCardConfig = Field(default_factory=ModelCardConfig)
    purity: PurityConfig = Field(default_factory=PurityConfig)
    neuron_types: NeuronTypesConfig = Field(default_factory=NeuronTypesConfig)
    kernel_clusters: KernelClustersConfig = Field(default_factory=KernelClustersConfig)
    tda_rings: TdaRingsConfig = Field(default_factory=TdaRingsConfig)
    relevance: RelevanceConfig = Field(default_factory=RelevanceConfig)
    commute: CommuteConfig = Field(default_factory=CommuteConfig)
    probes: ProbesConfig = Field(default_factory=ProbesConfig)
    translation: TranslationConfig = Field(default_factory=TranslationConfig)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    galleries: GalleriesConfig = Field(default_factory=GalleriesConfig)


class Config(_Strict):
    """A whole dossier build."""

    title: str | None = Field(None, description="report title; default: the model's name")
    author: str | None = Field(None, description="shown on the cover and in the PDF metadata")
    model: ModelConfig
    data: DataConfig
    layers: Literal["auto"] | list[str] = Field(
        "auto", description="module names, or auto = every Conv2d + the classifier"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(64, gt=0)
    seed: int = 0
    analyses: AnalysesConfig = Field(default_factory=AnalysesConfig)

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


STARTER_CONFIG = """\
# A dossier build configuration. Paths are relative to this file.
# Build it with:  dossier build THIS_FILE.yaml   (see `dossier build --help`)

title: My model                  # optional; shown on the cover and every page
# author: Model audit team       # optional; cover and PDF metadata

model:
  # Exactly one source:
  torchvision: resnet18          # a torchvision model name
  # torchscript: model.ts        # a torch.jit.save file (activations only at the output)
  # factory: my_models.py:build  # FILE.py:FUNCTION or package.module:FUNCTION -> nn.Module
  # builtin: digits-cnn          # the offline sample model, trained on first use
  kwargs: {num_classes: 10}      # passed to the constructor or factory
  weights: weights/resnet18.pt   # a state_dict, a checkpoint dict holding one, or a torchvision
                                 # weights name such as IMAGENET1K_V1 (from torch's hub cache).
                                 # Leave out only to audit a randomly initialised model.
  input_size: [3, 32, 32]        # channels, height, width; images are resized to this
  mean: [0.5, 0.5, 0.5]          # input normalisation, one value per channel
  std: [0.5, 0.5, 0.5]

data:
  imagefolder: data/val          # one sub-folder per class, as torchvision's ImageFolder
  # builtin: digits              # scikit-learn's digits, coloured, held-out split
  limit: 2000                    # optional cap, balanced over classes

layers: auto                     # or a list of module names (see `dossier layers THIS_FILE.yaml`)
device: auto                     # auto | cpu | cuda
batch_size: 64
seed: 0

# Per-analysis settings (all optional; these are the defaults):
# analyses:
#   model_card: {sample_images: 8}
#   purity: {max_features: 2048, n_init: 4, representatives: 6}
#   neuron_types: {border_threshold: 0.5, border_rule: either, border_activation_ratio: 1.5,
#                  dead_epsilon: 1.0e-6, selectivity_threshold: 0.5}
#   kernel_clusters: {max_clusters: 8, clusters: null, representatives: 3,
#                     umap_neighbors: 30, umap_min_dist: 0.0}
#   tda_rings: {max_kernels: 4000, density_neighbors: 100, density_drop: 0.2, cubes: 5,
#               overlap: 0.1, eps: {3: 0.5, 5: 2.0}, min_samples: 3, homology_points: 400}
#   relevance: {per_class: 1, mistakes: 4, tolerance: 0.01, top_filters: 5, activation_maps: 4}
#   commute: {sample: 2000, neighbors: 10, max_features: 2048, representatives: 6}
#   probes: {sample: 2000, folds: 5, max_features: 2048, max_dim: 256, trees: 100}
#   translation: {images: 200, max_shift: null}
#   embedding: {sample: 2000, neighbors: 15, thumbnails: 24}
#   galleries: {steps: 48, parameterisation: fourier, units_per_batch: 64, exemplars: 6,
#               colour_threshold: 3.0, pdf_units: 8}
"""
