"""The comparison's charts: both models' numbers by depth, unit matching by depth, and layer
similarity as an A layer × B layer map."""

from __future__ import annotations

import numpy as np

from dossier.compare.changes import METRICS, SHARES, LayerChange
from dossier.compare.comparison import LayerMatching, LayerSimilarity
from dossier.report.pictures import lines_by_depth, plt  # pictures selects matplotlib's file-only backend

UNIT_INTERVAL = ("purity", "nmi", "ari", "linear_probe")  # scores between 0 and 1 (ARI can dip below)
STYLE = {"A": dict(marker="o", linestyle="-", color="#1f77b4"), "B": dict(marker="s", linestyle="--", color="#d62728")}


def metrics_by_depth(layers: list[LayerChange], keys: list[str]) -> plt.Figure:
    """One panel per metric, A's line and B's, each over its own layers in network order. When
    both models have the same layers the axis names them; otherwise it counts each one's depth."""
    same = all(layer.depth_a == layer.depth_b for layer in layers)
    columns = 2 if len(keys) in (2, 4) else min(3, len(keys))
    rows = -(-len(keys) // columns)
    figure, grid = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.6 * rows), squeeze=False)
    for axes, key in zip(grid.flat, keys):
        label, _ = METRICS[key]
        scale = 100 if key in SHARES else 1
        for side in ("A", "B"):
            points = [
                (getattr(layer, f"depth_{side.lower()}"), getattr(layer.metrics[key], side.lower()))
                for layer in layers
                if getattr(layer, f"depth_{side.lower()}") is not None
            ]
            x = [depth for depth, _ in points]
            y = [np.nan if value is None else scale * value for _, value in points]
            axes.plot(x, y, label=side, markersize=4, **STYLE[side])
        axes.set_title(f"{label} (%)" if key in SHARES else label, fontsize=9)
        if key in SHARES or key in UNIT_INTERVAL:
            axes.set_ylim(-0.02 * scale, 1.02 * scale)
        _depth_axis(axes, layers, same)
    for axes in list(grid.flat)[len(keys):]:
        axes.axis("off")
    grid.flat[0].legend(fontsize=7)
    figure.tight_layout()
    return figure


def _depth_axis(axes: plt.Axes, layers: list[LayerChange], same: bool) -> None:
    if same:
        names = [layer.layer for layer in layers]
        axes.set_xticks(range(1, len(names) + 1), names, rotation=60, ha="right", fontsize=6)
    else:
        axes.set_xlabel("depth (each model's layer number)", fontsize=7)
        axes.tick_params(labelsize=6)
    axes.grid(alpha=0.3)


def matching_by_depth(matching: list[LayerMatching], threshold: float) -> plt.Figure:
    """Share of A's units with a partner, mean partner correlation and linear CKA, by depth."""
    def nan(value: float | None) -> float:
        return np.nan if value is None else value

    series = {
        f"units with a partner ≥ {threshold:g}": [m.partnered / m.units_a if m.units_a else np.nan for m in matching],
        "mean correlation of assigned pairs": [nan(m.mean_correlation) for m in matching],
        "linear CKA": [nan(m.cka) for m in matching],
    }
    return lines_by_depth([m.layer for m in matching], series, None, "share / similarity", "layer (same name in A and B)")


def similarity_map(similarity: LayerSimilarity) -> plt.Figure:
    """Linear CKA of every A layer with every B layer; blank where not computed."""
    values = np.array([[np.nan if v is None else v for v in row] for row in similarity.cka], dtype=float)
    rows, columns = values.shape
    figure, axes = plt.subplots(figsize=(min(11.0, 2.5 + 0.45 * columns), min(11.0, 1.8 + 0.4 * rows)))
    image = axes.imshow(values, vmin=0, vmax=1, cmap="viridis")
    axes.set_xticks(range(columns), similarity.layers_b, rotation=60, ha="right", fontsize=7)
    axes.set_yticks(range(rows), similarity.layers_a, fontsize=7)
    axes.set_xlabel("B's layers")
    axes.set_ylabel("A's layers")
    if rows * columns <= 144:  # numbers stay readable
        for (r, c), value in np.ndenumerate(values):
            if not np.isnan(value):
                axes.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=6, color="white" if value < 0.6 else "black")
    figure.colorbar(image, ax=axes, label="linear CKA", shrink=0.8)
    figure.tight_layout()
    return figure
