"""The offline sample: scikit-learn's digits drawn in random colours, and a small CNN for them.

Nothing can be downloaded, so the sample model is trained here, deterministically from the seed,
and cached. Each digit gets a random foreground and background colour, so colour carries no
information about the class and colour-blind units have something to mean.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from dossier.manifest import file_sha256

log = logging.getLogger(__name__)

SAMPLE_VERSION = 1  # bump when the data or the training recipe changes: invalidates the cache
EPOCHS = 30
# builtin name -> the epoch of the one training run whose weights it is: digits-cnn-early is the
# same run stopped early, an earlier checkpoint of digits-cnn to compare it with.
CHECKPOINTS = {"digits-cnn": EPOCHS, "digits-cnn-early": 18}
# The checkpoints trained with seed 0, shipped so that every machine builds the same sample:
# training is deterministic on one machine, not across machines (floating-point order differs).
# scripts/train_sample.py trains them again and prints the hash of what it trained.
SHIPPED_SEED = 0
SHIPPED_DIR = Path(__file__).parent / "data_files"
SHIPPED_SHA256 = {
    "digits-cnn": "1c55914de6baf826c2529e51ae929986575bfaf0d32e2e22b9730dee261b0424",
    "digits-cnn-early": "82007c7856a1504891379ba3cc17a3b51d82a9b094a0d774b5b1788148e191c5",
}
IMAGE_SIZE = 32
DIGIT_CLASSES = [str(d) for d in range(10)]
_SPLIT_SEED = 0  # the held-out split is part of the data set, not of a build's seed
_MIN_LUMINANCE_GAP = 0.3


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(out)))


class DigitsCNN(nn.Module):
    """RGB 32×32 in; a 5×5 stem, 3×3 convs, BatchNorm, one residual block, global pooling."""

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.block = ResidualBlock(2 * width)
        self.conv3 = nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.block(x)
        x = F.relu(self.bn3(self.conv3(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def digit_strokes(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Digit stroke maps in [0, 1], N×32×32, and labels, for the 'train' or 'test' split."""
    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]
    strokes = F.interpolate(images, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear")
    strokes = strokes[:, 0].clamp(0, 1).numpy()
    train_idx, test_idx = train_test_split(
        np.arange(len(digits.target)),
        test_size=0.3,
        stratify=digits.target,
        random_state=_SPLIT_SEED,
    )
    idx = {"train": train_idx, "test": test_idx}[split]
    return strokes[idx], digits.target[idx].astype(np.int64)


def colourise(strokes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Paint each stroke map with a random foreground on a random background: N×H×W×3 uint8."""
    n = len(strokes)
    foreground, background = _contrasting_colours(n, rng)
    x = strokes[..., None]
    images = background[:, None, None, :] * (1 - x) + foreground[:, None, None, :] * x
    return np.round(images * 255).astype(np.uint8)


def _contrasting_colours(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    weights = np.array([0.299, 0.587, 0.114])
    foreground = rng.random((n, 3))
    background = rng.random((n, 3))
    while True:
        # Redraw pairs too close in luminance: the digit must stay visible in grayscale too.
        bad = np.abs((foreground - background) @ weights) < _MIN_LUMINANCE_GAP
        if not bad.any():
            return foreground, background
        foreground[bad] = rng.random((int(bad.sum()), 3))
        background[bad] = rng.random((int(bad.sum()), 3))


def held_out_digits() -> tuple[np.ndarray, np.ndarray]:
    """The held-out split in fixed colours: the builtin 'digits' data set."""
    strokes, labels = digit_strokes("test")
    return colourise(strokes, np.random.default_rng(_SPLIT_SEED + 1)), labels


def _shift(strokes: np.ndarray, rng: np.random.Generator, max_shift: int = 3) -> np.ndarray:
    shifted = np.empty_like(strokes)
    for i, image in enumerate(strokes):
        dy, dx = rng.integers(-max_shift, max_shift + 1, size=2)
        shifted[i] = np.roll(image, (dy, dx), axis=(0, 1))
    return shifted


def _to_input(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return (x - 0.5) / 0.5


def train_digits_cnn(seed: int, epochs: int = EPOCHS, batch_size: int = 64, stop_after: int | None = None) -> DigitsCNN:
    """Train the sample model on the training split; deterministic given the seed. `stop_after`
    returns the run's checkpoint after that many epochs (the learning-rate schedule still spans
    `epochs`), so an early checkpoint is exactly what the full run held at that point."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    strokes, labels = digit_strokes("train")
    model = DigitsCNN()
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=3e-3, total_steps=epochs * -(-len(labels) // batch_size)
    )
    targets = torch.from_numpy(labels)
    model.train()
    for _ in range(epochs if stop_after is None else min(stop_after, epochs)):
        # Fresh colours and shifts every epoch: colour must not predict the class.
        images = _to_input(colourise(_shift(strokes, rng), rng))
        order = torch.from_numpy(rng.permutation(len(labels)))
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            loss = F.cross_entropy(model(images[batch]), targets[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    return model.eval()


def shipped_weights(name: str) -> Path:
    """Where the shipped seed-0 weights of checkpoint `name` lie."""
    return SHIPPED_DIR / f"{name}-seed{SHIPPED_SEED}.pt"


def trained_digits_cnn(seed: int, cache_dir: Path, name: str = "digits-cnn") -> tuple[DigitsCNN, Path]:
    """The trained sample model (or its checkpoint `name`, see CHECKPOINTS): the shipped weights
    for seed 0, else from the cache when it is there, else trained now; returns it and its
    weights file."""
    model = DigitsCNN()
    shipped = shipped_weights(name)
    if seed == SHIPPED_SEED and shipped.is_file() and file_sha256(shipped) == SHIPPED_SHA256[name]:
        model.load_state_dict(torch.load(shipped, map_location="cpu", weights_only=True))
        return model.eval(), shipped
    epoch = CHECKPOINTS[name]
    suffix = "" if epoch == EPOCHS else f"-epoch{epoch}"
    path = cache_dir / "models" / f"digits-cnn-v{SAMPLE_VERSION}-seed{seed}{suffix}.pt"
    if path.is_file():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval(), path
    log.info("training the sample model %s on the digits training split (seed %d, %d epochs)", name, seed, epoch)
    model = train_digits_cnn(seed, stop_after=epoch)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)
    return model, path
