"""Model sources: torchvision, torch.export, TorchScript, a factory function or the builtin sample,
plus weights."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torch.nn.parameter import is_lazy

from dossier.errors import DossierError, ModelError
from dossier.exported import load_exported
from dossier.manifest import file_sha256
from dossier.sample import CHECKPOINTS, EPOCHS, DigitsCNN, trained_digits_cnn

if TYPE_CHECKING:
    from dossier.config import Config

log = logging.getLogger(__name__)

_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for analysis, with where its weights came from."""

    module: nn.Module
    weights_source: str
    weights_sha256: str | None  # None: no weights file (random initialisation)
    trained: bool
    scripted: bool

    @property
    def fingerprint(self) -> str:
        return self.weights_sha256 or "random-init"


def resolve_device(requested: str) -> torch.device:
    """The one device of a build: cuda when asked or when auto finds a GPU, else cpu."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise DossierError("device 'cuda' requested but no CUDA GPU is available (use --device cpu)")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def load_model(config: Config, cache_dir: Path) -> LoadedModel:
    """Build the configured model on the CPU, in eval mode, with its weights loaded and finite."""
    loaded = _load_model(config, cache_dir)
    _refuse_non_finite(loaded.module, config)
    return loaded


def _refuse_non_finite(module: nn.Module, config: Config) -> None:
    """A NaN or an infinity in a weight makes every activation after it meaningless; say which."""
    key = "model.weights" if config.model.weights is not None else f"model.{config.model.source}"
    for name, tensor in module.state_dict().items():
        if is_lazy(tensor) or not tensor.is_floating_point():
            continue  # a lazy module's parameters exist only after its first forward pass
        if not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ModelError(
                f"{key}: tensor '{name}' holds {bad} NaN or infinite value(s) "
                f"of {tensor.numel()}; refusing to describe a broken model"
            )


def _load_model(config: Config, cache_dir: Path) -> LoadedModel:
    spec = config.model
    if spec.builtin is not None and spec.weights is None:
        module, path = trained_digits_cnn(config.seed, cache_dir, spec.builtin)
        epoch = CHECKPOINTS[spec.builtin]
        source = f"trained by dossier on the digits training split (seed {config.seed}, epoch {epoch} of {EPOCHS})"
        return LoadedModel(module, source, file_sha256(path), trained=True, scripted=False)
    if spec.export is not None:
        path = config.resolve(spec.export)
        module = load_exported(path, spec.input_size)
        source = f"{spec.export} (the exported program's own weights)"
        return LoadedModel(module, source, file_sha256(path), trained=True, scripted=False)
    torch.manual_seed(config.seed)  # a randomly initialised model is reproducible too
    module = _build(config)
    scripted = isinstance(module, torch.jit.ScriptModule)
    if spec.weights is None and scripted:
        path = config.resolve(spec.torchscript)
        return LoadedModel(module.eval(), f"{spec.torchscript} (the TorchScript file's own weights)", file_sha256(path), True, True)
    if spec.weights is None:
        return LoadedModel(module.eval(), "none: randomly initialised", None, False, scripted)
    if spec.torchvision and _is_torchvision_weights_name(config, spec.weights):
        state, path = _torchvision_weights(spec.torchvision, spec.weights)
        source = f"torchvision {spec.torchvision} {spec.weights}"
    else:
        path = config.resolve(spec.weights)
        state = read_state_dict(path)
        source = str(spec.weights)
    apply_state_dict(module, state, path)
    return LoadedModel(module.eval(), source, file_sha256(path), trained=True, scripted=scripted)


def _build(config: Config) -> nn.Module:
    spec = config.model
    if spec.torchvision is not None:
        module = _call("model.torchvision", _torchvision_constructor(spec.torchvision), spec.kwargs)
    elif spec.torchscript is not None:
        module = _load_torchscript(config.resolve(spec.torchscript))
    elif spec.factory is not None:
        module = _call("model.factory", _factory(config, spec.factory), spec.kwargs)
    else:
        module = _call("model.builtin", DigitsCNN, spec.kwargs)
    if not isinstance(module, nn.Module):
        raise ModelError(f"model.{spec.source}: returned {type(module).__name__}, not a torch nn.Module")
    return module


def _call(key: str, constructor, kwargs: dict) -> nn.Module:
    try:
        return constructor(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{key}: could not build the model with kwargs {kwargs}: {exc}") from None


def _torchvision_constructor(name: str):
    names = torchvision.models.list_models()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"model.torchvision: unknown torchvision model '{name}'{hint}")
    return lambda **kwargs: torchvision.models.get_model(name, **kwargs)


def _load_torchscript(path: Path) -> nn.Module:
    if not path.is_file():
        raise ModelError(f"model.torchscript: file '{path}' not found")
    # One line of ours instead of torch's FutureWarning, which says nothing about what dossier loses.
    log.warning(
        "model.torchscript: TorchScript is deprecated in PyTorch and only the model's output can be recorded; "
        "save the model with torch.export and use model.export for the full analysis"
    )
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`torch.jit.load` is deprecated", category=FutureWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"model.torchscript: '{path}' is not a TorchScript file ({first})") from None


def _factory(config: Config, spec: str):
    target, sep, function = spec.rpartition(":")
    if not sep or not target or not function:
        raise ModelError(
            f"model.factory: '{spec}' should be FILE.py:FUNCTION or package.module:FUNCTION"
        )
    if target.endswith(".py"):
        path = config.resolve(target)
        if not path.is_file():
            raise ModelError(f"model.factory: file '{path}' not found")
        module = _import_file(path)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ModelError(f"model.factory: cannot import module '{target}': {exc}") from None
    factory = getattr(module, function, None)
    if not callable(factory):
        raise ModelError(f"model.factory: '{target}' has no function '{function}'")
    return factory


def _import_file(path: Path):
    name = f"dossier_factory_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # The factory file may import its neighbours, as it would when run from its own folder.
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: any error in it is an input error
        raise ModelError(f"model.factory: importing '{path}' failed: {type(exc).__name__}: {exc}") from None
    finally:
        sys.path.remove(str(path.parent))
    return module


def _is_torchvision_weights_name(config: Config, weights: str) -> bool:
    looks_like_enum = weights.replace("_", "").isalnum() and not weights.lower().endswith(
        (".pt", ".pth", ".bin", ".ckpt")
    )
    return looks_like_enum and not config.resolve(weights).exists()


def torchvision_categories(config: Config) -> list[str] | None:
    """The output names of the configured torchvision weights; None for any other model or weights.
    torchvision's weights enum carries them, so no weights file is read."""
    spec = config.model
    if spec.torchvision is None or spec.weights is None or not _is_torchvision_weights_name(config, spec.weights):
        return None
    categories = _torchvision_weights_entry(spec.torchvision, spec.weights).meta.get("categories")
    return list(categories) if categories else None


def _torchvision_weights_entry(model_name: str, weights_name: str) -> torchvision.models.WeightsEnum:
    try:
        enum = torchvision.models.get_model_weights(model_name)
    except ValueError:
        raise ModelError(f"model.weights: torchvision has no weights for '{model_name}'") from None
    try:
        return enum[weights_name.removeprefix(f"{enum.__name__}.")]
    except KeyError:
        allowed = ", ".join(w.name for w in enum)
        raise ModelError(
            f"model.weights: '{weights_name}' is neither a file nor a weights name of {model_name} "
            f"(allowed: {allowed})"
        ) from None


def _torchvision_weights(model_name: str, weights_name: str) -> tuple[dict, Path]:
    weights = _torchvision_weights_entry(model_name, weights_name)
    filename = Path(urlparse(weights.url).path).name
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not path.is_file():
        raise ModelError(
            f"model.weights: {model_name} {weights.name} is not in torch's local cache and cannot "
            f"be downloaded here: put {filename} (from {weights.url}) at {path}"
        )
    return read_state_dict(path), path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from a file holding one, or a checkpoint dict that holds one."""
    if not path.is_file():
        raise ModelError(f"model.weights: file '{path}' not found")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or foreign file can fail anywhere inside the unpickler
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"model.weights: '{path}' is not a PyTorch checkpoint readable with weights_only=True ({reason})"
        ) from None
    state = _find_state_dict(loaded)
    if state is None:
        raise ModelError(
            f"model.weights: '{path}' holds no state_dict (expected a dict of tensors, or a checkpoint "
            f"with one under {', '.join(_CHECKPOINT_KEYS)})"
        )
    # Checkpoints saved from DataParallel / DistributedDataParallel prefix every key.
    if all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


def _find_state_dict(loaded: object) -> dict[str, torch.Tensor] | None:
    if isinstance(loaded, dict) and loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
        return loaded
    if isinstance(loaded, dict):
        for key in _CHECKPOINT_KEYS:
            found = _find_state_dict(loaded.get(key))
            if found is not None:
                return found
    return None


def apply_state_dict(module: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load weights strictly; a mismatch names the keys that do not fit."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
        if keys:
            shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise ModelError(
            f"model.weights: '{path}' does not fit the architecture ({'; '.join(problems)})"
        )
    module.load_state_dict(state)
