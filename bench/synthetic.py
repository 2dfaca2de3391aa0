"""Synthetic image folders for the benchmarks (nothing can be downloaded): per class, a coloured
shape of its own on a noisy background, at any size, as JPEG files like a user's photos.

    python bench/synthetic.py OUT --classes 10 --per-class 200 --size 224
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def image_folder(root: Path, classes: int, per_class: int, size: int, seed: int = 0) -> Path:
    """root/class_k/img_i.jpg; class k draws shape k % 4 in hue k / classes, placed at random."""
    rng = np.random.default_rng(seed)
    for k in range(classes):
        folder = root / f"class_{k:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        hue = np.array([np.cos(2 * np.pi * k / classes), np.cos(2 * np.pi * (k / classes + 1 / 3)),
                        np.cos(2 * np.pi * (k / classes + 2 / 3))]) * 100 + 150
        for i in range(per_class):
            path = folder / f"img_{i:04d}.jpg"
            if path.exists():
                continue
            background = rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8)
            image = Image.fromarray(background)
            draw = ImageDraw.Draw(image)
            r = rng.uniform(0.15, 0.35) * size
            x, y = rng.uniform(r, size - r, size=2)
            colour = tuple(int(c) for c in np.clip(hue + rng.normal(0, 20, 3), 0, 255))
            box = (x - r, y - r, x + r, y + r)
            [draw.ellipse, draw.rectangle, lambda b, fill: draw.polygon([(b[0], b[3]), ((b[0] + b[2]) / 2, b[1]), (b[2], b[3])], fill=fill),
             lambda b, fill: draw.line([(b[0], b[1]), (b[2], b[3])], fill=fill, width=max(2, size // 16))][k % 4](box, fill=colour)
            image.save(path, quality=90)
    return root


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(image_folder(args.out, args.classes, args.per_class, args.size, args.seed))
