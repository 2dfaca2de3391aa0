"""Pictures written for the report: thumbnails as PNG files and matplotlib charts."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: charts are files
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

CLASS_COLOURS = plt.get_cmap("tab20").colors
CHART_DPI = 200  # sharp in print, small enough for the site


class PictureWriter:
    """Writes PNGs under assets/ with stable names; returns paths relative to the site root."""

    def __init__(self, site_root: Path) -> None:
        self.site_root = site_root
        (site_root / "assets" / "img").mkdir(parents=True, exist_ok=True)

    def image(self, pixels: np.ndarray, name: str) -> str:
        relative = f"assets/img/{name}.png"
        Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(
            self.site_root / relative, optimize=True
        )
        return relative

    def chart(self, figure: plt.Figure, name: str) -> str:
        relative = f"assets/img/{name}.png"
        figure.savefig(self.site_root / relative, dpi=CHART_DPI, bbox_inches="tight")
        plt.close(figure)
        return relative


def class_colour(index: int) -> str:
    r, g, b = CLASS_COLOURS[index % len(CLASS_COLOURS)]
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def type_share_chart(layer_names: list[str], shares: dict[str, list[float | None]]) -> plt.Figure:
    """Each neuron type's share of a layer's units, by depth (the seed's Tables 1–4 as a picture)."""
    width = min(11.0, max(5.5, 0.35 * len(layer_names)))
    figure, axes = plt.subplots(figsize=(width, 3.2))
    depth = np.arange(len(layer_names))
    for (label, values), marker in zip(shares.items(), "os^vD"):
        y = [np.nan if v is None else 100 * v for v in values]
        axes.plot(depth, y, marker=marker, label=label, markersize=4)
    _layer_axis(axes, layer_names)
    axes.set_ylabel("% of the layer's units")
    axes.set_ylim(bottom=0)
    axes.legend(fontsize=7, ncols=2)
    figure.tight_layout()
    return figure


def _layer_axis(axes: plt.Axes, layer_names: list[str]) -> None:
    many = len(layer_names) > 6
    axes.set_xticks(np.arange(len(layer_names)), layer_names, rotation=60 if many else 0, ha="right" if many else "center", fontsize=7)
    axes.set_xlabel("layer (network order)")
    axes.grid(alpha=0.3)


def signed_heatmap(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Relevance as colours: scaled by its largest magnitude to 0–255, red positive, blue negative."""
    limit = float(np.abs(values).max()) or 1.0
    rgb = plt.get_cmap("bwr")((values / limit + 1) / 2)[..., :3]
    return _resize_nearest(np.round(rgb * 255).astype(np.uint8), size)


def overlay(thumbnail: np.ndarray, values: np.ndarray, signed: bool = True) -> np.ndarray:
    """A heatmap blended over the grey image, at the thumbnail's size."""
    size = thumbnail.shape[:2]
    grey = thumbnail.mean(axis=2, keepdims=True).repeat(3, axis=2)
    if signed:
        colours = signed_heatmap(values, size).astype(float)
        strength = np.abs(values) / (float(np.abs(values).max()) or 1.0)
    else:
        colours = np.round(plt.get_cmap("jet")(values)[..., :3] * 255)
        colours = _resize_nearest(colours.astype(np.uint8), size).astype(float)
        strength = values
    alpha = 0.25 + 0.6 * _resize_nearest(strength[..., None], size)
    return np.round(grey * (1 - alpha) + colours * alpha).astype(np.uint8)


def grey_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return _resize_nearest(values.astype(np.uint8)[..., None], size)


def _resize_nearest(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = pixels.shape[:2]
    rows = (np.arange(size[0]) * height // size[0]).clip(0, height - 1)
    cols = (np.arange(size[1]) * width // size[1]).clip(0, width - 1)
    return pixels[rows][:, cols]


def lines_by_depth(
    layer_names: list[str], series: dict[str, list[float]], chance: float | None, ylabel: str, xlabel: str
) -> plt.Figure:
    """One line per series over the layers in network order, with chance level marked."""
    width = min(11.0, max(5.5, 0.35 * len(layer_names)))
    figure, axes = plt.subplots(figsize=(width, 3.2))
    depth = np.arange(len(layer_names))
    for (label, values), marker in zip(series.items(), "os^vDP"):
        axes.plot(depth, values, marker=marker, label=label, markersize=4)
    if chance is not None:
        axes.axhline(chance, color="grey", linewidth=1, linestyle="-.", label="chance")
    _layer_axis(axes, layer_names)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_ylim(0, 1.02)
    axes.legend(fontsize=7, loc="best")
    figure.tight_layout()
    return figure


def strip(pictures: np.ndarray, gap: int = 2) -> np.ndarray:
    """Pictures side by side on white, one file instead of many."""
    height = max(p.shape[0] for p in pictures)
    channels = pictures[0].shape[2]
    parts = []
    for picture in pictures:
        padded = np.full((height, picture.shape[1] + gap, channels), 255, dtype=np.uint8)
        padded[: picture.shape[0], : picture.shape[1]] = picture
        parts.append(padded)
    return np.concatenate(parts, axis=1)[:, :-gap]
