"""Data sources: an image folder or the builtin coloured digits, resized and normalised for the model."""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from dossier.classes import ClassMap, map_classes
from dossier.errors import DataError
from dossier.sample import DIGIT_CLASSES, held_out_digits
from dossier.sampling import round_robin

if TYPE_CHECKING:
    from dossier.config import Config

log = logging.getLogger(__name__)

WIDE_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif"}


@dataclass
class ImageSet(Dataset):
    """Images with class labels, yielding (normalised tensor, label, index); None when unreadable.
    Labels count the data's classes; `classes` says which model output each one is."""

    classes: ClassMap
    labels: np.ndarray
    names: list[str]
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    fingerprint: str
    source: str
    _paths: list[Path] | None = None
    _pixels: np.ndarray | None = None  # N×H×W×C uint8, for in-memory sets
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why it could not be read

    @property
    def class_names(self) -> list[str]:
        return self.classes.class_names

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> np.ndarray | None:
        """The image as the model sees it before normalisation: H×W×C uint8, or None."""
        if self._pixels is not None:
            return _resize(self._pixels[index], self.input_size)
        assert self._paths is not None
        path = self._paths[index]
        try:
            with warnings.catch_warnings():
                # Above Pillow's MAX_IMAGE_PIXELS it only warns: skip such an image, do not decode it.
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as handle:
                    return _resize(np.asarray(_convert(handle, self.input_size[0])), self.input_size)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            if self.names[index] not in self.skipped:
                log.warning("skipping unreadable image %s: %s", path, exc)
                self.skipped[self.names[index]] = str(exc).splitlines()[0] if str(exc) else "unreadable"
            return None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int] | None:
        pixels = self.image(index)
        if pixels is None:
            return None
        return self.normalise(pixels), int(self.labels[index]), index

    def normalise(self, pixels: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.array(pixels, copy=True)).permute(2, 0, 1).float() / 255.0
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return (x - mean) / std


def collate_readable(items: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Stack a batch, dropping images that could not be read."""
    items = [item for item in items if item is not None]
    if not items:
        return None
    images, labels, indices = zip(*items)
    return torch.stack(images), torch.tensor(labels), torch.tensor(indices)


def _convert(image: Image.Image, channels: int) -> Image.Image:
    if image.mode in WIDE_MODES:
        # Pillow's convert clips 16- and 32-bit values at 255 (a white image); scale them instead.
        wide = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or wide.max() <= 65535 else float(wide.max())
        image = Image.fromarray(np.clip(wide / top * 255.0, 0, 255).round().astype(np.uint8))
    return image.convert("L" if channels == 1 else "RGB")


def _resize(pixels: np.ndarray, input_size: tuple[int, int, int]) -> np.ndarray:
    channels, height, width = input_size
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.shape[2] != channels:
        mode_in = Image.fromarray(pixels if pixels.shape[2] == 3 else pixels[..., 0])
        pixels = np.asarray(_convert(mode_in, channels))
        if pixels.ndim == 2:
            pixels = pixels[..., None]
    if pixels.shape[:2] != (height, width):
        image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
        pixels = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))
        if pixels.ndim == 2:
            pixels = pixels[..., None]
    return pixels


def load_dataset(config: Config, outputs: int | None = None) -> ImageSet:
    """The configured data set, capped to data.limit images balanced over classes, its classes
    mapped to the model's `outputs` (None: as many outputs as classes)."""
    data = config.data
    common = dict(
        input_size=config.model.input_size,
        mean=config.model.channel_mean,
        std=config.model.channel_std,
    )
    if data.builtin == "digits":
        pixels, labels = held_out_digits()
        keep = balanced_subset(labels, data.limit, config.seed)
        pixels, labels = pixels[keep], labels[keep]
        fingerprint = hashlib.sha256(pixels.tobytes() + labels.tobytes()).hexdigest()
        return ImageSet(
            classes=_classes(config, list(DIGIT_CLASSES), outputs),
            labels=labels,
            names=[f"digits/{i}" for i in keep],
            fingerprint=fingerprint,
            source="builtin: digits (scikit-learn, held-out 30%, coloured)",
            _pixels=pixels,
            **common,
        )
    assert data.imagefolder is not None
    return _image_folder(config, config.resolve(data.imagefolder), outputs, common)


def _classes(config: Config, folders: list[str], outputs: int | None) -> ClassMap:
    return map_classes(config, folders, len(folders) if outputs is None else outputs)


def _image_folder(config: Config, root: Path, outputs: int | None, common: dict) -> ImageSet:
    if not root.is_dir():
        raise DataError(f"data.imagefolder: folder '{root}' not found")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(
            f"data.imagefolder: '{root}' has no class sub-folders (expected ROOT/CLASS/IMAGE files)"
        )
    classes = _classes(config, [p.name for p in class_dirs], outputs)  # before reading thousands of images
    paths: list[Path] = []
    labels: list[int] = []
    for label, class_dir in enumerate(class_dirs):
        files = image_files(class_dir)
        paths += files
        labels += [label] * len(files)
    if not paths:
        allowed = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise DataError(f"data.imagefolder: no images in '{root}' (looked for {allowed})")
    label_array = np.array(labels, dtype=np.int64)
    keep = balanced_subset(label_array, config.data.limit, config.seed)
    kept_paths = [paths[i] for i in keep]
    names = [str(p.relative_to(root)) for p in kept_paths]
    return ImageSet(
        classes=classes,
        labels=label_array[keep],
        names=names,
        fingerprint=files_sha256(names, kept_paths),
        source=f"imagefolder: {root}",
        _paths=kept_paths,
        **common,
    )


def balanced_subset(labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Indices of at most `limit` items, spread as evenly as the classes allow, in stable order."""
    if limit is None or limit >= len(labels):
        return np.arange(len(labels))
    return np.sort(round_robin(labels, limit, np.random.default_rng(seed)))


def image_files(folder: Path) -> list[Path]:
    """The image files under folder, at any depth, in sorted order."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def files_sha256(names: list[str], paths: list[Path]) -> str:
    """Hash of every file's name and bytes: changes when any image changes."""
    digest = hashlib.sha256()
    for name, path in zip(names, paths):
        digest.update(name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
