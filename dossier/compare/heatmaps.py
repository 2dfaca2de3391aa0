"""Heatmaps that moved: the same images explained by both models, and how far their explanations
agree (Spearman rank correlation of the input relevance, pixel by pixel).

Both models explain the image's true class, so that a difference is a difference of reasons, not
of the question asked. Relevance is the dossier's own (deep Taylor, dossier.analyses.relevance).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.stats import spearmanr

from dossier.analyses.base import BuildContext
from dossier.analyses.relevance import deep_taylor_composite, explainable, relevance_pass, vanished
from dossier.results import NOT_EXPORTED
from dossier.sampling import round_robin
from dossier.thumbnails import thumbnails

EXPLAINED = "the true class"


@dataclass(frozen=True)
class MovedHeatmap:
    index: int  # data-set index
    name: str
    label: int
    predicted_a: int
    predicted_b: int
    rank_correlation: float | None  # Spearman of A's and B's maps; None when one vanished or is flat
    vanished_a: bool
    vanished_b: bool
    thumbnail: np.ndarray = field(metadata=NOT_EXPORTED)
    heatmap_a: np.ndarray = field(metadata=NOT_EXPORTED)  # input relevance summed over channels, H × W
    heatmap_b: np.ndarray = field(metadata=NOT_EXPORTED)


@dataclass(frozen=True)
class HeatmapChanges:
    explained: str
    images: list[MovedHeatmap]  # the explanation that changed most (lowest rank correlation) first
    mean_rank_correlation: float | None
    skipped: str | None  # why no image was explained


def chosen_rows(labels: np.ndarray, predicted_a: np.ndarray, predicted_b: np.ndarray, count: int) -> np.ndarray:
    """Positions of the images to explain: up to half of them among the images whose prediction
    changed, the rest a class-balanced sample of the others (where the change is less expected)."""
    changed = np.flatnonzero(predicted_a != predicted_b)
    unchanged = len(labels) - len(changed)
    first = changed[round_robin(labels[changed], max(count // 2, count - unchanged))]
    others = np.setdiff1d(np.arange(len(labels)), first)
    rest = others[round_robin(labels[others], count - len(first))]
    return np.concatenate([first, rest]).astype(np.int64)


def compare_heatmaps(
    ctx_a: BuildContext, ctx_b: BuildContext, indices: np.ndarray, labels: np.ndarray,
    predicted_a: np.ndarray, predicted_b: np.ndarray,
) -> HeatmapChanges:
    """Explain the images at `indices` (with their labels and both predictions) in both models."""
    reason = _not_explainable(ctx_a, "A") or _not_explainable(ctx_b, "B")
    if reason is not None or len(indices) == 0:
        return HeatmapChanges(EXPLAINED, [], None, reason or "no image was chosen (--heatmaps 0)")
    kept, pictures = thumbnails(ctx_a.dataset, [int(i) for i in indices])
    if not kept:
        return HeatmapChanges(EXPLAINED, [], None, "none of the chosen images could be read")
    row_of = {int(index): row for row, index in enumerate(indices)}
    rows = [row_of[index] for index in kept]
    maps_a, gone_a = input_relevance(ctx_a, kept, labels[rows])
    maps_b, gone_b = input_relevance(ctx_b, kept, labels[rows])
    moved = [
        MovedHeatmap(
            index=index, name=ctx_a.dataset.names[index], label=int(labels[row]),
            predicted_a=int(predicted_a[row]), predicted_b=int(predicted_b[row]),
            rank_correlation=None if gone_a[k] or gone_b[k] else rank_correlation(maps_a[k], maps_b[k]),
            vanished_a=bool(gone_a[k]), vanished_b=bool(gone_b[k]),
            thumbnail=pictures[k], heatmap_a=maps_a[k], heatmap_b=maps_b[k],
        )
        for k, (index, row) in enumerate(zip(kept, rows))
    ]
    moved.sort(key=lambda m: (m.rank_correlation is None, m.rank_correlation or 0.0))
    values = [m.rank_correlation for m in moved if m.rank_correlation is not None]
    return HeatmapChanges(EXPLAINED, moved, float(np.mean(values)) if values else None, None)


def input_relevance(ctx: BuildContext, indices: list[int], targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the input relevance for its target class summed over colour channels (N × H × W),
    and whether it vanished (dossier.analyses.relevance.vanished)."""
    spec = ctx.config.model
    images = torch.stack([ctx.dataset[i][0] for i in indices]).to(ctx.device)
    wanted = torch.from_numpy(np.asarray(targets, dtype=np.int64)).to(ctx.device)
    model, _ = explainable(ctx.model.module, images[:1])
    convs = [layer.name for layer in ctx.conv_layers]
    composite = deep_taylor_composite(model, convs, spec.input_size, spec.channel_mean, spec.channel_std, ctx.device)
    tolerance = ctx.config.analyses.relevance.tolerance
    maps, gone = [], []
    with composite.context(model) as modified:
        for start in range(0, len(images), ctx.options.batch_size):
            end = start + ctx.options.batch_size
            logit, relevance, _ = relevance_pass(modified, images[start:end], wanted[start:end], [])
            maps.append(relevance.sum(dim=1).cpu())
            gone.append(vanished(relevance, logit, tolerance).cpu())
    return torch.cat(maps).numpy(), torch.cat(gone).numpy()


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's ρ of two maps, pixel by pixel; None when one of them is flat."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a.ravel(), b.ravel()).statistic)


def _not_explainable(ctx: BuildContext, side: str) -> str | None:
    if not ctx.hookable:
        return f"model {side} is a TorchScript model, whose layers relevance cannot hook"
    return None
