"""Pictures written for the report: small pictures packed into sprite sheets, and charts.

A dossier of a real-size model shows tens of thousands of small pictures (a GoogLeNet has 7,280
units, each with optimised images, exemplars and patches). One file each would be tens of
thousands of files and hundreds of megabytes; instead the pictures of one group (a layer's
gallery page, its relevance maps) are packed into one WebP sheet and shown as clipped
backgrounds, which browsers and WeasyPrint both draw, each sheet fetched or embedded once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: charts are files
# Class and layer names are the user's text: "$x$" must print as typed, and "$\\" must not crash.
matplotlib.rcParams["text.parse_math"] = False
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

CLASS_COLOURS = plt.get_cmap("tab20").colors
CHART_DPI = 200  # sharp in print, small enough for the site
SHEET_WIDTH = 1024  # pixels; sprites are laid out in rows
SHEET_MAX_HEIGHT = 4096  # a fuller group continues in a second sheet
SPRITE_GAP = 2  # keeps lossy compression from bleeding one picture into the next
SHEET_QUALITY = 85  # lossy WebP: thumbnails of photos and optimised images


@dataclass
class Sheet:
    """One sprite sheet being filled row by row; written by PictureWriter.finish()."""

    relative: str
    section: str  # whose pictures: the bytes are counted by section
    width: int = 0
    height: int = 0
    pictures: list[tuple[int, int, np.ndarray]] = field(default_factory=list)
    _row_x: int = 0
    _row_y: int = 0
    _row_height: int = 0

    def place(self, pixels: np.ndarray) -> tuple[int, int] | None:
        """Where the picture goes, or None when the sheet is full."""
        height, width = pixels.shape[:2]
        if self._row_x and self._row_x + width > SHEET_WIDTH:
            self._row_x, self._row_y, self._row_height = 0, self._row_y + self._row_height + SPRITE_GAP, 0
        if self._row_y + height > SHEET_MAX_HEIGHT and self.pictures:
            return None
        x, y = self._row_x, self._row_y
        self.pictures.append((x, y, pixels))
        self._row_x += width + SPRITE_GAP
        self._row_height = max(self._row_height, height)
        self.width, self.height = max(self.width, x + width), max(self.height, y + height)
        return x, y


@dataclass(frozen=True)
class Sprite:
    """A picture inside a sheet: where, and how large (pixels)."""

    sheet: Sheet
    x: int
    y: int
    width: int
    height: int


class PictureWriter:
    """Writes pictures under assets/img/ with stable names; returns paths relative to the site root."""

    def __init__(self, site_root: Path) -> None:
        self.site_root = site_root
        (site_root / "assets" / "img").mkdir(parents=True, exist_ok=True)
        self._sheets: dict[str, list[Sheet]] = {}
        self._packed: dict[tuple[str, object], Sprite] = {}
        self.section = ""  # the section whose views are being built: its pictures are counted to it
        self.bytes: dict[str, int] = {}  # section -> bytes of pictures written
        self.files: dict[str, list[str]] = {}  # section -> the pictures' paths, relative to the site root

    def image(self, pixels: np.ndarray, name: str) -> str:
        """A picture as a file of its own (for the site's scripts, which load them one by one)."""
        relative = f"assets/img/{name}.png"
        _as_image(pixels).save(self.site_root / relative, optimize=True)
        self._count(self.section, relative)
        return relative

    def sprite(self, pixels: np.ndarray, group: str, key: object = None) -> Sprite:
        """A picture packed into the sheet of its group (one page's pictures: a group per page).
        A picture shown several times on a page (a data-set image that excites several units)
        is packed once when it is given the same key."""
        if key is not None and (group, key) in self._packed:
            return self._packed[(group, key)]
        sheets = self._sheets.setdefault(group, [])
        place = sheets[-1].place(pixels) if sheets else None
        if place is None:
            sheets.append(Sheet(f"assets/img/{group}{'-' + str(len(sheets) + 1) if sheets else ''}.webp", self.section))
            place = sheets[-1].place(pixels)
        sprite = Sprite(sheets[-1], *place, pixels.shape[1], pixels.shape[0])
        if key is not None:
            self._packed[(group, key)] = sprite
        return sprite

    def chart(self, figure: plt.Figure, name: str) -> str:
        relative = f"assets/img/{name}.png"
        figure.savefig(self.site_root / relative, dpi=CHART_DPI, bbox_inches="tight")
        plt.close(figure)
        self._count(self.section, relative)
        return relative

    def _count(self, section: str, relative: str) -> None:
        self.bytes[section] = self.bytes.get(section, 0) + (self.site_root / relative).stat().st_size
        self.files.setdefault(section, []).append(relative)

    def finish(self) -> None:
        """Write every sprite sheet."""
        for sheets in self._sheets.values():
            for sheet in sheets:
                canvas = np.full((sheet.height, sheet.width, 3), 255, dtype=np.uint8)
                for x, y, pixels in sheet.pictures:
                    height, width = pixels.shape[:2]
                    canvas[y : y + height, x : x + width] = pixels if pixels.shape[2] == 3 else pixels.repeat(3, axis=2)
                Image.fromarray(canvas).save(self.site_root / sheet.relative, quality=SHEET_QUALITY, method=4)
                self._count(sheet.section, sheet.relative)
        self._sheets.clear()
        self._packed.clear()


def _as_image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)


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
    layer_names: list[str], series: dict[str, list[float]], chance: float | None, ylabel: str, xlabel: str,
    errors: dict[str, list[float]] | None = None,
) -> plt.Figure:
    """One line per series over the layers in network order, with chance level marked and, for
    the series given `errors`, an interval of ± that much at each point."""
    width = min(11.0, max(5.5, 0.35 * len(layer_names)))
    figure, axes = plt.subplots(figsize=(width, 3.2))
    depth = np.arange(len(layer_names))
    for (label, values), marker in zip(series.items(), "os^vDP"):
        line = axes.plot(depth, values, marker=marker, label=label, markersize=4)[0]
        if errors and label in errors:
            axes.errorbar(depth, values, yerr=errors[label], fmt="none", ecolor=line.get_color(), capsize=2, linewidth=0.8)
    if chance is not None:
        axes.axhline(chance, color="grey", linewidth=1, linestyle="-.", label="chance")
    _layer_axis(axes, layer_names)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_ylim(0, 1.02)
    axes.legend(fontsize=7, loc="best")
    figure.tight_layout()
    return figure
