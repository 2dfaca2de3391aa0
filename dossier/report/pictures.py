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
    return lines_by_depth(
        layer_names, {"purity": purity, "NMI": nmi, "ARI": ari}, chance, "score",
        "layer (network order; 'input' = raw pixels)",
    )


# The seed's kernel colour map (001, Figure 33): negative values lilac to black, positive red to white.
KERNEL_COLOURS = matplotlib.colors.LinearSegmentedColormap.from_list(
    "dossier_kernel",
    [(0.0, "#000000"), (0.3, "#5b2a86"), (0.499, "#d7b8f0"), (0.501, "#8b0000"), (0.75, "#ff4040"), (1.0, "#ffffff")],
)


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


def dendrogram_and_scatter(
    linkage: np.ndarray, clusters: int, embedding: np.ndarray, labels: np.ndarray, method: str
) -> plt.Figure:
    """Ward dendrogram with the chosen cut, beside the 2-D embedding coloured by cluster."""
    from scipy.cluster.hierarchy import dendrogram

    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    units = len(linkage) + 1
    dendrogram(
        linkage, ax=left, no_labels=True, color_threshold=0, above_threshold_color="#555555",
        truncate_mode="lastp" if units > 64 else None, p=48,
    )
    heights = linkage[:, 2]
    cut = (heights[units - clusters - 1] + heights[units - clusters]) / 2 if clusters < units else heights[-1]
    left.axhline(cut, color="#d62728", linestyle="--", linewidth=1, label=f"cut: {clusters} clusters")
    left.set_title("Ward dendrogram", fontsize=9)
    left.set_ylabel("merge height")
    left.legend(fontsize=7)
    for cluster in np.unique(labels):
        points = embedding[labels == cluster]
        right.scatter(points[:, 0], points[:, 1], s=14, color=CLASS_COLOURS[(2 * cluster) % 20], label=f"cluster {cluster + 1}")
    right.set_title(method, fontsize=9)
    right.set_xticks([])
    right.set_yticks([])
    right.legend(fontsize=6, markerscale=0.8, loc="best")
    figure.tight_layout()
    return figure


def kernel_grid(rows: list[tuple[str, list[np.ndarray], np.ndarray]]) -> plt.Figure:
    """Per cluster: its representative channel-averaged kernels, then its sign-majority kernel."""
    columns = max(len(kernels) for _, kernels, _ in rows) + 1
    figure, axes = plt.subplots(len(rows), columns, figsize=(1.1 * columns + 0.6, 1.1 * len(rows) + 0.3), squeeze=False)
    for r, (label, kernels, signs) in enumerate(rows):
        for c in range(columns):
            axis = axes[r][c]
            axis.set_xticks([])
            axis.set_yticks([])
            if c < len(kernels):
                limit = float(np.abs(kernels[c]).max()) or 1.0
                axis.imshow(kernels[c], cmap=KERNEL_COLOURS, vmin=-limit, vmax=limit)
            elif c == columns - 1:
                axis.imshow(signs, cmap=KERNEL_COLOURS, vmin=-1, vmax=1)
            else:
                axis.axis("off")
        axes[r][0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    axes[0][-1].set_title("sign majority", fontsize=7)
    figure.tight_layout(pad=0.3)
    return figure


def mapper_picture(nodes: list[tuple[str, int, np.ndarray]], edges: list[tuple[str, str]], seed: int) -> plt.Figure:
    """The Mapper graph with each node drawn as its mean kernel, sized by its members (001 Fig. 37)."""
    import networkx as nx
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    graph = nx.Graph()
    graph.add_nodes_from(name for name, _, _ in nodes)
    graph.add_edges_from(edges)
    positions = nx.spring_layout(graph, seed=seed, k=1.5 / max(1, np.sqrt(len(nodes))))
    figure, axes = plt.subplots(figsize=(6.5, 4.8))
    for a, b in edges:
        (x0, y0), (x1, y1) = positions[a], positions[b]
        axes.plot([x0, x1], [y0, y1], color="#999999", linewidth=0.8, zorder=1)
    largest = max(size for _, size, _ in nodes)
    for name, size, kernel in nodes:
        side = 10 + 22 * np.sqrt(size / largest)  # on-screen pixels of the node's picture
        image = OffsetImage(kernel, cmap="gray", zoom=side / max(kernel.shape), interpolation="nearest")
        axes.add_artist(AnnotationBbox(image, positions[name], frameon=True, pad=0.05, zorder=2))
    xs = [p[0] for p in positions.values()]
    ys = [p[1] for p in positions.values()]
    axes.set_xlim(min(xs) - 0.15, max(xs) + 0.15)
    axes.set_ylim(min(ys) - 0.15, max(ys) + 0.15)
    axes.axis("off")
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


def cumulative_curve(cumulative: list[float], layer: str) -> plt.Figure:
    """Share of the layer's relevance carried by its top-n filters (004 Fig. 4.23)."""
    figure, axes = plt.subplots(figsize=(4.6, 2.6))
    ranks = np.arange(1, len(cumulative) + 1)
    axes.plot(ranks, np.array(cumulative) * 100, color="#1f77b4")
    axes.axhline(50, color="grey", linewidth=0.8, linestyle=":")
    axes.axhline(90, color="grey", linewidth=0.8, linestyle=":")
    axes.set_xlabel(f"top-n filters of {layer}, most relevant first")
    axes.set_ylabel("% of relevance")
    axes.set_ylim(0, 102)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


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


def translation_curves(curves: list[tuple[str, list[int], list[float], list[float]]]) -> plt.Figure:
    """Probability of the true class and accuracy against the shift, per axis."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(8, 2.8))
    for axis, shifts, truth, accuracy in curves:
        left.plot(shifts, truth, marker="o", markersize=4, label=f"shift along {axis}")
        right.plot(shifts, accuracy, marker="o", markersize=4, label=f"shift along {axis}")
    for axes, label in ((left, "P(true class)"), (right, "accuracy")):
        axes.set_xlabel("shift (pixels, circular)")
        axes.set_ylabel(label)
        axes.set_ylim(0, 1.02)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    figure.tight_layout()
    return figure


def translation_heatmap(layer_names: list[str], columns: list[str], values: np.ndarray) -> plt.Figure:
    """Cosine distance of each layer's code to the unshifted one: layers × shifts."""
    figure, axes = plt.subplots(figsize=(min(10, 1.2 + 0.55 * len(columns)), 0.9 + 0.3 * len(layer_names)))
    image = axes.imshow(values, cmap="magma", aspect="auto", vmin=0)
    axes.set_xticks(np.arange(len(columns)), columns, fontsize=7)
    axes.set_yticks(np.arange(len(layer_names)), layer_names, fontsize=7)
    axes.set_xlabel("shift")
    figure.colorbar(image, ax=axes, label="cosine distance", shrink=0.9)
    figure.tight_layout()
    return figure


def embedding_picture(
    points: np.ndarray, labels: np.ndarray, mistakes: list[int], pictures: np.ndarray, class_names: list[str]
) -> plt.Figure:
    """The embedding coloured by class; misclassified points crossed, the first ones as pictures."""
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    figure, axes = plt.subplots(figsize=(7.5, 5.5))
    for c, name in enumerate(class_names):
        chosen = labels == c
        if chosen.any():
            axes.scatter(points[chosen, 0], points[chosen, 1], s=8, color=CLASS_COLOURS[c % 20], label=name, alpha=0.8)
    if mistakes:
        axes.scatter(points[mistakes, 0], points[mistakes, 1], s=30, marker="x", color="black", label="misclassified")
    for position, picture in zip(mistakes, pictures):
        image = OffsetImage(picture[..., 0] if picture.shape[2] == 1 else picture, zoom=24 / picture.shape[0], cmap="gray")
        axes.add_artist(AnnotationBbox(image, points[position], frameon=True, pad=0.1, alpha=0.9))
    axes.set_xticks([])
    axes.set_yticks([])
    if len(class_names) <= 20:
        axes.legend(fontsize=6, markerscale=1.5, loc="best", ncols=2)
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
