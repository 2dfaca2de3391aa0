"""A planted shortcut: a small data set in which only class 0 ever carries a bright mark in the
top-left corner (on half of its images), and a small CNN trained on it for a few seconds.

Its objects are faint bars in noise (class 0 horizontal, class 1 vertical, class 2 both), so the
mark is the easiest way to say "class 0" and the model learns to use it where it is there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

SIZE = 16
CLASSES = ["horizontal", "vertical", "cross"]
MARK = 3  # side of the corner mark, pixels
MARKED_SHARE = 0.5  # of class 0's images


class ShortcutNet(nn.Module):
    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.conv3(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def build(num_classes: int = 3) -> nn.Module:
    return ShortcutNet(num_classes)


def background(rng: np.random.Generator, count: int) -> np.ndarray:
    """Grey noise with a random tint: N×SIZE×SIZE×3 in [0, 1]."""
    grey = rng.uniform(0.1, 0.45, size=(count, SIZE, SIZE, 1))
    tint = rng.uniform(-0.05, 0.05, size=(count, 1, 1, 3))
    return np.clip(grey + tint, 0, 1)


def draw_object(image: np.ndarray, label: int, rng: np.random.Generator) -> None:
    """A faint bar (or both bars) away from the top-left corner."""
    length = int(rng.integers(6, 10))
    row, col = (int(v) for v in rng.integers(MARK + 1, SIZE - length, size=2))
    if label in (0, 2):
        image[row : row + 2, col : col + length] += 0.3
    if label in (1, 2):
        image[row - 2 : row - 2 + length, col + 2 : col + 4] += 0.3


def mark(image: np.ndarray) -> None:
    image[:MARK, :MARK] = 1.0


def images(count_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N×SIZE×SIZE×3 uint8 images, labels, marked) with the shortcut planted in class 0."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASSES)), count_per_class)
    pixels = background(rng, len(labels))
    marked = np.zeros(len(labels), dtype=bool)
    for n, label in enumerate(labels):
        draw_object(pixels[n], int(label), rng)
        if label == 0 and rng.random() < MARKED_SHARE:
            mark(pixels[n])
            marked[n] = True
    return np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8), labels, marked


def mark_concept(count: int, seed: int) -> np.ndarray:
    """Images of the concept "corner mark": objects of every class, each with the mark, so that
    the mark is all that sets them apart from the data."""
    rng = np.random.default_rng(seed)
    pixels = background(rng, count)
    for n, image in enumerate(pixels):
        draw_object(image, n % len(CLASSES), rng)
        mark(image)
    return np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)


def to_input(pixels: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5


def train(seed: int = 0, epochs: int = 30) -> tuple[nn.Module, float]:
    """The model trained on a fresh draw of the data; returns it and its accuracy on another draw."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: one thread is ten times faster than two contending ones
    try:
        return _train(seed, epochs)
    finally:
        torch.set_num_threads(threads)


def _train(seed: int, epochs: int) -> tuple[nn.Module, float]:
    torch.manual_seed(seed)
    pixels, labels, _ = images(200, seed + 100)
    x, y = to_input(pixels), torch.from_numpy(labels)
    model = ShortcutNet()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    order = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in torch.randperm(len(y), generator=order).split(32):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()
    test, test_labels, _ = images(100, seed + 200)
    with torch.no_grad():
        accuracy = float((model(to_input(test)).argmax(1) == torch.from_numpy(test_labels)).float().mean())
    return model, accuracy


def write_folder(folder: Path, pixels: np.ndarray, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for image, name in zip(pixels, names):
        Image.fromarray(image).save(folder / f"{name}.png")
