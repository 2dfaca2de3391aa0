"""Small pictures of data-set images for results: crisp when tiny, light when large."""

from __future__ import annotations

import numpy as np
from PIL import Image

from dossier.data import ImageSet

THUMBNAIL_PIXELS = 64


def thumbnail(pixels: np.ndarray, upscale: bool = True) -> np.ndarray:
    """Upscale small images by an integer factor (nearest) unless told not to (the page can scale
    them crisply, at a quarter of the bytes), shrink large ones to ≤ 96 px."""
    height, width = pixels.shape[:2]
    image = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    longest = max(height, width)
    if longest < THUMBNAIL_PIXELS and upscale:
        factor = THUMBNAIL_PIXELS // longest
        image = image.resize((width * factor, height * factor), Image.Resampling.NEAREST)
    elif longest > 96:
        scale = 96 / longest
        image = image.resize((round(width * scale), round(height * scale)), Image.Resampling.BILINEAR)
    array = np.asarray(image)
    return array[..., None] if array.ndim == 2 else array


def thumbnails(dataset: ImageSet, indices: list[int], upscale: bool = True) -> tuple[list[int], np.ndarray]:
    """Thumbnails of the readable images among indices: (kept indices, K×H×W×C uint8)."""
    kept, pictures = [], []
    for index in indices:
        pixels = dataset.image(index)
        if pixels is not None:
            kept.append(index)
            pictures.append(thumbnail(pixels, upscale))
    if not pictures:
        return [], np.zeros((0, 1, 1, dataset.input_size[0]), dtype=np.uint8)
    return kept, np.stack(pictures)
