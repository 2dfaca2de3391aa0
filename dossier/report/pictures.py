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


def purity_by_depth_chart(
    layer_names: list[str], purity: list[float], nmi: list[float], ari: list[float], chance: float
) -> plt.Figure:
    width = min(11.0, max(5.5, 0.35 * len(layer_names)))
    figure, axes = plt.subplots(figsize=(width, 3.4))
    depth = np.arange(len(layer_names))
    axes.plot(depth, purity, "o-", label="purity", color="#1f77b4")
    axes.plot(depth, nmi, "s--", label="NMI", color="#2ca02c", markersize=4)
    axes.plot(depth, ari, "^:", label="ARI", color="#d62728", markersize=4)
    axes.axhline(chance, color="grey", linewidth=1, linestyle="-.", label="chance purity")
    axes.set_xticks(depth, layer_names, rotation=60 if len(layer_names) > 6 else 0, ha="right" if len(layer_names) > 6 else "center", fontsize=7)
    axes.set_ylim(0, 1.02)
    axes.set_ylabel("score")
    axes.set_xlabel("layer (network order; 'input' = raw pixels)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, ncols=4, loc="lower right")
    figure.tight_layout()
    return figure
