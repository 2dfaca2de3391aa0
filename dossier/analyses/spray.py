"""Shortcut search (METHODS §9; Lapuschkin et al. 2019, SpRAy): per class, the strategies the
model uses, found by clustering the relevance maps of the class's images; a strategy whose
relevance sits off the object (on the image border or in a corner, where a watermark or a frame
would be) is flagged as a Clever-Hans candidate.

Each image is explained for its own class with the relevance section's composite (see crp.py's
`explaining`); its input heatmap is summed into at most `map_size` cells a side and divided by its
total absolute relevance, so that the clustering compares where the relevance lies, not how much
there is. Spectral clustering on the symmetric k-nearest-neighbour graph of these maps; the number
of strategies is the eigengap of the graph's normalised Laplacian (the largest gap among its
smallest eigenvalues). Per strategy, of its mean map's positive relevance: the share in the border
frame (`border` of the side wide) and in the fullest corner square (`corner` of the side); either
past its threshold flags the strategy. A patch away from the border (a logo in the middle) is not
caught by these numbers; it still shows as a strategy of its own with its mean heatmap.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from scipy.sparse.csgraph import laplacian
from sklearn.cluster import SpectralClustering
from sklearn.neighbors import kneighbors_graph

from dossier.analyses.base import HOOKS_UNSUPPORTED, Analysis, BuildContext, register
from dossier.analyses.concepts import class_sample, readable, sample_size
from dossier.analyses.crp import explain_seconds, explaining
from dossier.analyses.relevance import relevance_pass, vanished
from dossier.plan import Cost, Probe, Reduction
from dossier.report.kit import CheckResult, CrossPage, SectionView, ViewKit, judged
from dossier.report.pictures import Sprite, overlay, signed_heatmap
from dossier.results import NOT_EXPORTED
from dossier.settings import SectionSettings, StrictModel
from dossier.thumbnails import thumbnails

_VANISHED = 0.01  # a map whose Σ|R| is below this share of its logit carries no strategy (relevance.vanished)
_EXAMPLES = 6  # members shown per strategy: those nearest its mean map
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
PAGE = CrossPage("shortcuts.html", "Shortcut search (SpRAy)")


class SprayChecks(StrictModel):
    shortcut_fails: bool = Field(
        False, description="a strategy SpRAy flags (relevance off the object) fails the check; false: it warns"
    )


class SpraySettings(SectionSettings):
    enabled: bool = Field(True, description="false turns the section off")
    per_class: int = Field(50, ge=2, description="images per class explained (for their own class) and clustered")
    map_size: int = Field(16, ge=2, description="heatmaps are summed into at most this many cells a side")
    neighbors: int = Field(8, ge=1, description="k of the symmetric k-nearest-neighbour graph")
    max_strategies: int = Field(6, ge=1, description="most strategies (clusters) the eigengap may choose")
    border: float = Field(0.0625, gt=0, lt=0.5, description="width of the border frame, as a share of the image side")
    corner: float = Field(0.25, gt=0, le=0.5, description="side of a corner square, as a share of the image side")
    border_share: float = Field(0.5, gt=0, le=1, description="flag a strategy with this share of its relevance in the border frame")
    corner_share: float = Field(0.3, gt=0, le=1, description="flag a strategy with this share of its relevance in one corner square")
    min_images: int = Field(3, ge=1, description="a smaller strategy is shown but never flagged")


@dataclass(frozen=True)
class Strategy:
    members: list[int]  # data-set indices
    border_share: float  # of the mean map's positive relevance, in the border frame
    corner_share: float  # in the fullest corner square
    corner: str  # which corner that is
    flagged: bool
    examples: list[int]  # the members nearest the mean map
    mean_map: np.ndarray = field(metadata=NOT_EXPORTED)  # h×w, normalised relevance
    example_maps: np.ndarray = field(metadata=NOT_EXPORTED)


@dataclass(frozen=True)
class ClassStrategies:
    class_index: int
    images: int  # clustered
    vanished: int  # left out: their relevance vanished on the way to the input
    eigenvalues: list[float]  # the smallest of the graph's normalised Laplacian
    strategies: list[Strategy]  # largest first


@dataclass(frozen=True)
class SprayResult:
    per_class: int
    map_size: list[int]  # cells of the clustered maps, height and width
    neighbors: int
    border: float
    corner: float
    border_threshold: float
    corner_threshold: float
    min_images: int
    class_names: list[str]
    classes: list[ClassStrategies]
    warnings: list[str]  # one per flagged strategy
    pictures: dict[int, np.ndarray] = field(metadata=NOT_EXPORTED)  # data-set index -> thumbnail


def relevance_batches(
    ctx: BuildContext, model: torch.nn.Module, indices: np.ndarray
) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """(readable indices, logits, input relevance) per batch of the data set's images at indices,
    each explained for its own class; `model` has the composite on."""
    for start in range(0, len(indices), ctx.options.batch_size):
        kept, images = readable(ctx.dataset, indices[start : start + ctx.options.batch_size])
        if kept:
            targets = torch.from_numpy(ctx.dataset.classes.true_outputs(ctx.dataset.labels[kept])).to(ctx.device)
            logits, relevance, _ = relevance_pass(model, images.to(ctx.device), targets, [])
            yield kept, logits, relevance


def downsized(maps: torch.Tensor, size: int) -> np.ndarray:
    """N×H×W relevance summed into at most size cells a side."""
    height, width = maps.shape[-2:]
    factor = max(1, -(-max(height, width) // size))
    if factor > 1:
        maps = F.avg_pool2d(maps[:, None], factor, ceil_mode=True)[:, 0] * factor * factor
    return maps.float().cpu().numpy()


def normalised(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its total absolute relevance."""
    totals = np.abs(maps).reshape(len(maps), -1).sum(axis=1)
    return maps / np.where(totals > 0, totals, 1.0)[:, None, None]


def strategies(vectors: np.ndarray, neighbors: int, most: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(cluster of each vector, the smallest eigenvalues of the k-NN graph's normalised Laplacian):
    spectral clustering into as many clusters as the largest eigengap says."""
    count = len(vectors)
    if count < 3:
        return np.zeros(count, dtype=np.int64), np.zeros(count)
    graph = kneighbors_graph(vectors, min(neighbors, count - 1), include_self=False).toarray()
    affinity = np.maximum(graph, graph.T)
    # A normalised Laplacian's eigenvalues are ≥ 0; rounding makes the first -1e-16 at times.
    eigenvalues = np.linalg.eigvalsh(laplacian(affinity, normed=True))[: min(most, count - 1) + 1].clip(min=0)
    k = int(np.argmax(np.diff(eigenvalues))) + 1  # the gap after the k-th smallest: k clusters
    if k == 1:
        return np.zeros(count, dtype=np.int64), eigenvalues
    clustering = SpectralClustering(k, affinity="precomputed", assign_labels="cluster_qr", random_state=seed)
    with warnings.catch_warnings():
        # A graph in several pieces is the clearest case of several strategies, not a problem.
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        return clustering.fit_predict(affinity), eigenvalues


def off_object(mean_map: np.ndarray, border: float, corner: float) -> tuple[float, float, str]:
    """(share of the map's positive relevance in the border frame, in the fullest corner square,
    which corner)."""
    positive = np.clip(mean_map, 0, None)
    total = positive.sum()
    if total == 0:
        return 0.0, 0.0, CORNERS[0]
    height, width = positive.shape
    frame_h, frame_w = max(1, round(border * height)), max(1, round(border * width))
    inner = positive[frame_h : height - frame_h, frame_w : width - frame_w].sum()
    side_h, side_w = max(1, round(corner * height)), max(1, round(corner * width))
    corners = [
        positive[:side_h, :side_w].sum(), positive[:side_h, -side_w:].sum(),
        positive[-side_h:, :side_w].sum(), positive[-side_h:, -side_w:].sum(),
    ]
    fullest = int(np.argmax(corners))
    return float((total - inner) / total), float(corners[fullest] / total), CORNERS[fullest]


@register
class Spray(Analysis):
    name = "spray"
    title = "Shortcut search (SpRAy)"
    order = 57
    result_type = SprayResult
    settings_type = SpraySettings
    page = PAGE
    check_settings = SprayChecks
    reductions = (Reduction("per_class", (25,), "shortcut search among fewer images per class", rank=3),)

    def applies(self, ctx: BuildContext) -> str | None:
        if not self.settings(ctx.config).enabled:
            return "it is turned off in the config (analyses.spray.enabled: false)"
        return None if ctx.hookable else HOOKS_UNSUPPORTED

    def cost(self, ctx: BuildContext, probe: Probe, settings: SpraySettings) -> Cost:
        explained = sample_size(ctx.dataset.labels, settings.per_class)
        classes = len(np.unique(ctx.dataset.labels))
        batch = max(1, min(explained, ctx.options.batch_size))
        set_up, per_batch = explain_seconds(ctx, probe, batch)
        per_image = per_batch / batch + probe.image_seconds()
        size = min(settings.per_class, explained)
        maps = np.random.default_rng(0).random((size, settings.map_size**2))
        cluster = probe.cpu_seconds(("spray", size, settings.map_size), lambda: strategies(
            maps, settings.neighbors, settings.max_strategies, 0))
        return Cost(f"{explained:,} images explained, {classes} classes clustered",
                    set_up + per_image * explained + cluster * classes, shrink="analyses.spray.per_class")

    def finish(self, ctx: BuildContext, consumer: None) -> SprayResult:
        settings: SpraySettings = self.settings(ctx.config)
        indices = np.concatenate(list(class_sample(ctx.dataset.labels, settings.per_class, ctx.config.seed).values()))
        members, maps, lost = [], [], []
        with explaining(ctx) as model:
            for kept, logits, relevance in relevance_batches(ctx, model, indices):
                members += kept
                maps.append(downsized(relevance.sum(dim=1), settings.map_size))
                lost.append(vanished(relevance, logits, _VANISHED).cpu().numpy())
        labels, maps, lost = ctx.dataset.labels[members], normalised(np.concatenate(maps)), np.concatenate(lost)
        classes = [
            self._class(int(c), np.array(members)[(labels == c) & ~lost], maps[(labels == c) & ~lost],
                        int(((labels == c) & lost).sum()), settings, ctx.config.seed)
            for c in np.unique(labels)
        ]
        names = list(ctx.dataset.class_names)
        shown = sorted({i for c in classes for s in c.strategies for i in s.examples})
        kept, pictures = thumbnails(ctx.dataset, shown)
        return SprayResult(
            per_class=settings.per_class, map_size=list(maps.shape[1:]), neighbors=settings.neighbors,
            border=settings.border, corner=settings.corner, border_threshold=settings.border_share,
            corner_threshold=settings.corner_share, min_images=settings.min_images, class_names=names,
            classes=classes,
            warnings=[_warning(c, n, s, names, settings) for c in classes for n, s in enumerate(c.strategies) if s.flagged],
            pictures=dict(zip(kept, pictures)),
        )

    def _class(
        self, label: int, members: np.ndarray, maps: np.ndarray, vanished: int, settings: SpraySettings, seed: int
    ) -> ClassStrategies:
        """The strategies of one class: its images' maps clustered (none when every map vanished)."""
        if len(members) == 0:
            return ClassStrategies(label, 0, vanished, [], [])
        clusters, eigenvalues = strategies(maps.reshape(len(maps), -1), settings.neighbors, settings.max_strategies, seed)
        found = [_strategy(np.flatnonzero(clusters == k), members.tolist(), maps, settings) for k in np.unique(clusters)]
        found.sort(key=lambda s: -len(s.members))
        return ClassStrategies(label, len(members), vanished, eigenvalues.tolist(), found)

    def checks(self, result: SprayResult, thresholds: SprayChecks, ctx: BuildContext) -> list[CheckResult]:
        if not result.classes:
            return []
        flagged = len(result.warnings)
        return [CheckResult(
            "shortcut strategies (SpRAy)", judged(flagged > 0 and thresholds.shortcut_fails, flagged > 0),
            f"{flagged} flagged", "none flagged",
            f"{result.warnings[0]}" + (f"; and {flagged - 1} more" if flagged > 1 else "") if flagged
            else f"{sum(len(c.strategies) for c in result.classes)} strategies in {len(result.classes)} classes",
            PAGE.filename,
        )]

    def view(self, result: SprayResult, kit: ViewKit) -> SectionView:
        classes = [ClassView(c, [_strategy_view(s, result, kit) for s in c.strategies]) for c in result.classes]
        flagged = [(c, n) for c in classes for n, s in enumerate(c.strategies) if s.strategy.flagged]
        return SectionView(overview=SprayOverview(result, classes, flagged))

    def finding(self, result: SprayResult) -> str | None:
        if not result.classes:
            return None
        if result.warnings:
            shown = "; ".join(result.warnings[:3]) + (f"; and {len(result.warnings) - 3} more" if len(result.warnings) > 3 else "")
            return (
                f"SpRAy flags {len(result.warnings)} strateg{'y' if len(result.warnings) == 1 else 'ies'} whose relevance sits "
                f"off the object, a Clever-Hans candidate: {shown}."
            )
        counts = sorted({len(c.strategies) for c in result.classes})
        found = f"{counts[0]}–{counts[-1]} strategies" if len(counts) > 1 else f"{counts[0]} strateg{'y' if counts[0] == 1 else 'ies'}"
        return f"SpRAy finds {found} per class; none has its relevance on the image border or in a corner."


def _strategy(rows: np.ndarray, members: list[int], maps: np.ndarray, settings: SpraySettings) -> Strategy:
    mean = maps[rows].mean(axis=0)
    border, corner, where = off_object(mean, settings.border, settings.corner)
    flagged = len(rows) >= settings.min_images and (border >= settings.border_share or corner >= settings.corner_share)
    nearest = rows[np.argsort(((maps[rows] - mean) ** 2).reshape(len(rows), -1).sum(axis=1), kind="stable")[:_EXAMPLES]]
    return Strategy(
        members=[members[r] for r in rows], border_share=border, corner_share=corner, corner=where, flagged=flagged,
        examples=[members[r] for r in nearest], mean_map=mean, example_maps=maps[nearest],
    )


def _warning(c: ClassStrategies, n: int, s: Strategy, names: list[str], settings: SpraySettings) -> str:
    name = names[c.class_index] if c.class_index < len(names) else str(c.class_index)
    where = (
        f"{s.corner_share:.0%} of its relevance in the {s.corner} corner" if s.corner_share >= settings.corner_share
        else f"{s.border_share:.0%} of its relevance on the image border"
    )
    return f"class {name}, strategy {n + 1} ({len(s.members)} of {c.images} images): {where}"


@dataclass(frozen=True)
class StrategyView:
    strategy: Strategy
    mean: Sprite  # the mean heatmap
    examples: list[Sprite]  # members with their heatmaps over them


@dataclass(frozen=True)
class ClassView:
    result: ClassStrategies
    strategies: list[StrategyView]


@dataclass(frozen=True)
class SprayOverview:
    result: SprayResult
    classes: list[ClassView]
    flagged: list[tuple[ClassView, int]]  # class and strategy position of each flagged strategy


def _strategy_view(s: Strategy, result: SprayResult, kit: ViewKit) -> StrategyView:
    group = "spray"
    examples = [
        kit.pictures.sprite(overlay(result.pictures[index], heatmap), group)
        for index, heatmap in zip(s.examples, s.example_maps) if index in result.pictures
    ]
    size = next(iter(result.pictures.values())).shape[:2] if result.pictures else s.mean_map.shape
    return StrategyView(s, kit.pictures.sprite(signed_heatmap(s.mean_map, size), group), examples)
