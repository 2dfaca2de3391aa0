"""Write the sample's concept folders (examples/concepts/), deterministically.

The concepts of examples/digits.yaml, drawn in the style of the sample data (dossier/sample.py):
stroke maps painted with a random foreground on a random background, as the builtin digits are.

- thick-strokes: digits of the training split (the dossier analyses the held-out split), every
  class in turn, their strokes dilated to about twice their width.
- loops: rings of random size, shape and place, as thick as a digit's strokes; no digit.

Usage: .venv/bin/python scripts/make_sample_concepts.py [OUT_DIR]   (default: examples/concepts)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from dossier.sample import IMAGE_SIZE, colourise, digit_strokes

IMAGES = 24  # per concept
SEED = 14  # issue #14
DILATION = 5  # px: the max filter that thickens a stroke of ~4 px to ~8 px
SUPERSAMPLE = 4  # rings are drawn this much larger and averaged down, for soft edges like the digits'


def thick_strokes(rng: np.random.Generator) -> np.ndarray:
    strokes, labels = digit_strokes("train")
    chosen = [int(rng.choice(np.flatnonzero(labels == n % 10))) for n in range(IMAGES)]
    return np.stack([ndimage.grey_dilation(strokes[i], size=(DILATION, DILATION)) for i in chosen])


def ring(rng: np.random.Generator) -> np.ndarray:
    """One ring's stroke map in [0, 1]: an ellipse outline about 4 px thick."""
    size = IMAGE_SIZE * SUPERSAMPLE
    y, x = np.mgrid[0:size, 0:size] / SUPERSAMPLE
    centre = rng.uniform(11, IMAGE_SIZE - 11, size=2)
    radii = rng.uniform(5, 10, size=2)
    distance = np.sqrt(((y - centre[0]) / radii[0]) ** 2 + ((x - centre[1]) / radii[1]) ** 2)
    outline = np.abs(distance - 1) * radii.mean() < 2.0
    return outline.reshape(IMAGE_SIZE, SUPERSAMPLE, IMAGE_SIZE, SUPERSAMPLE).mean(axis=(1, 3))


def write(folder: Path, strokes: np.ndarray, rng: np.random.Generator) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for n, pixels in enumerate(colourise(strokes, rng)):
        Image.fromarray(pixels).save(folder / f"{n:02d}.png", optimize=True)


def main(out: Path) -> None:
    rng = np.random.default_rng(SEED)
    write(out / "thick-strokes", thick_strokes(rng), rng)
    write(out / "loops", np.stack([ring(rng) for _ in range(IMAGES)]), rng)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "examples" / "concepts")
