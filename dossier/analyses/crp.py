"""Concept relevance (METHODS §9; Achtibat et al. 2023, CRP): per class, the units of one layer
that carry most of the class's relevance, the part of the image each unit's relevance points to
(its conditional heatmap), and the images where the unit is most relevant for the class beside
those where it is most active (the feature galleries' top exemplars).

The relevance is the relevance section's: deep Taylor decomposition with the same composite,
explaining each image's own class. A conditional heatmap is that relevance stopped at the layer,
masked to one channel and sent on to the input from there, so only relevance that flows through
the channel arrives; relevance that bypasses the layer (a residual connection around it) is left
out, and the heatmaps of all channels add up to the heatmap of the relevance that passes the
layer: on a layer every path crosses, the image's whole heatmap (tests/test_crp.py).

Why not the zennit-crp package: its 0.6.0 requires zennit<=0.4.6 and dossier uses zennit 0.5,
so pip cannot install the two together. Its CondAttribution does run on zennit 0.5.1 when
installed without its dependencies (checked), but a dependency that only installs that way
would break `pip install dossier`; the part dossier needs, the masked backward pass from a
layer, is conditional_relevance() below.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from dossier.analyses.base import HOOKS_UNSUPPORTED, NO_CONV_LAYERS, Analysis, BuildContext, register
from dossier.analyses.concepts import class_sample, readable, sample_size
from dossier.analyses.relevance import deep_taylor_composite, relevance_graph, relevance_pass
from dossier.capture import hooks
from dossier.errors import ConfigError
from dossier.plan import Cost, Probe, Reduction
from dossier.report.kit import CrossPage, SectionView, ViewKit
from dossier.report.pictures import Sprite, overlay
from dossier.results import NOT_EXPORTED
from dossier.settings import SectionSettings
from dossier.thumbnails import thumbnails

log = logging.getLogger(__name__)

_MAP_PIXELS = 64  # stored conditional heatmaps are at most this large
PAGE = CrossPage("concept-relevance.html", "Concept relevance (CRP)")


class CrpSettings(SectionSettings):
    enabled: bool = Field(True, description="false turns the section off")
    layer: str | None = Field(None, description="the conv layer whose units are explained; null: the last conv layer")
    per_class: int = Field(50, ge=1, description="images per class explained (for their own class)")
    units: int = Field(4, ge=1, description="most relevant units shown per class")
    exemplars: int = Field(4, ge=1, description="images per unit where it is most relevant for the class")


@dataclass(frozen=True)
class RelevantImage:
    index: int  # data-set index
    share: float  # the unit's share of the layer's relevance in this image
    heatmap: np.ndarray = field(metadata=NOT_EXPORTED)  # input relevance through the unit (CRP), ≤ 64 px


@dataclass(frozen=True)
class ClassUnit:
    unit: int
    share: float  # its mean share of the layer's relevance over the class's images
    relevant: list[RelevantImage]  # the class's images where it is most relevant, most first
    active: list[int]  # the data-set images that excite it most (feature galleries), most first
    active_values: list[float]


@dataclass(frozen=True)
class ClassRelevance:
    class_index: int
    images: int  # images explained
    through: float  # mean share of the explained logit whose relevance passes the layer
    units: list[ClassUnit]


@dataclass(frozen=True)
class CrpResult:
    layer: str
    per_class: int
    active_source: str | None  # where the most-active images come from; None when not computed
    class_names: list[str]
    classes: list[ClassRelevance]
    pictures: dict[int, np.ndarray] = field(metadata=NOT_EXPORTED)  # data-set index -> thumbnail


@contextmanager
def explaining(ctx: BuildContext) -> Iterator[nn.Module]:
    """The model with the relevance section's composite registered once for every batch (on its
    traced copy, relevance_graph, which that section's page describes)."""
    example = torch.zeros(1, *ctx.config.model.input_size, device=ctx.device)
    try:
        model, _ = relevance_graph(ctx.model.module, example)
    except Exception as exc:  # torch.fx cannot trace every model (data-dependent control flow)
        log.warning("the model cannot be traced (%s); additions and gates keep autograd's rule", exc)
        model = ctx.model.module
    spec = ctx.config.model
    composite = deep_taylor_composite(
        model, [layer.name for layer in ctx.conv_layers], spec.input_size, spec.channel_mean, spec.channel_std, ctx.device
    )
    with composite.context(model) as modified:
        yield modified


def explain_seconds(ctx: BuildContext, probe: Probe, batch: int) -> tuple[float, float]:
    """(setting up `explaining` once, one batch of `batch` images explained in it: a forward and
    a relevance pass to the input), timed on the build's device: what CRP and SpRAy do."""
    images = torch.randn(batch, *ctx.config.model.input_size, device=ctx.device)
    targets = torch.zeros(batch, dtype=torch.long, device=ctx.device)

    def set_up() -> None:
        with explaining(ctx):
            pass

    with explaining(ctx) as model:
        per_batch = probe.seconds(("explain", batch), lambda: relevance_pass(model, images, targets, []))
    return probe.seconds("explaining", set_up, warm_up=False), per_batch


def _relevance_at(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, layer: str, keep_graph: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input, logits, the layer's output, its relevance) of a forward pass and the backward pass
    from the targets' logits down to the layer only. Call with gradients enabled."""
    kept: dict[str, torch.Tensor] = {}

    def keep(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        kept["output"] = output

    with hooks(model, {layer: keep}):
        x = images.clone().requires_grad_(True)
        logits = model(x)
    chosen = F.one_hot(targets, logits.shape[1]).to(logits) * logits
    (relevance,) = torch.autograd.grad(logits, kept["output"], grad_outputs=chosen.detach(), retain_graph=keep_graph)
    return x, logits, kept["output"], relevance


def layer_relevance(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(the targets' logits, the relevance at the layer's output). Only the part of the network
    above the layer is run backwards. The composite must be registered."""
    with torch.enable_grad():
        _, logits, _, relevance = _relevance_at(model, images, targets, layer, keep_graph=False)
    return logits.gather(1, targets[:, None])[:, 0].detach(), relevance.detach()


def conditional_relevance(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, layer: str, channels: torch.Tensor | None
) -> torch.Tensor:
    """Input relevance of each image (N×C×H×W) that flows through channel channels[n] of `layer`
    (CRP); with channels None, through the whole layer. The composite must be registered.

    Two backward passes: from the logit to the layer's output, which gives the layer's relevance,
    and from there, masked, to the input. Starting the second at the layer keeps out the relevance
    of paths that bypass it, so the channels' maps add up to the layer's."""
    with torch.enable_grad():
        x, _, output, relevance = _relevance_at(model, images, targets, layer, keep_graph=True)
        if channels is not None:
            mask = F.one_hot(channels, output.shape[1]).to(relevance).view(len(x), -1, *[1] * (output.dim() - 2))
            relevance = relevance * mask
        (through,) = torch.autograd.grad(output, x, grad_outputs=relevance)
    return through.detach()


def small_map(relevance: torch.Tensor) -> np.ndarray:
    """An H×W map summed over pixels into at most _MAP_PIXELS a side (sums are kept)."""
    height, width = relevance.shape[-2:]
    factor = max(1, -(-max(height, width) // _MAP_PIXELS))
    if factor > 1:
        relevance = F.avg_pool2d(relevance[None, None], factor, ceil_mode=True)[0, 0] * factor * factor
    return relevance.float().cpu().numpy()


@register
class Crp(Analysis):
    name = "crp"
    title = "Concept relevance (CRP)"
    order = 55
    result_type = CrpResult
    settings_type = CrpSettings
    page = PAGE
    after = ("galleries",)  # the most-active images beside the most-relevant ones
    reductions = (Reduction("per_class", (25, 10), "concept relevance from fewer images per class", rank=3),)

    def applies(self, ctx: BuildContext) -> str | None:
        settings: CrpSettings = self.settings(ctx.config)
        if not settings.enabled:
            return "it is turned off in the config (analyses.crp.enabled: false)"
        if not ctx.hookable:
            return HOOKS_UNSUPPORTED
        if not ctx.conv_layers:
            return NO_CONV_LAYERS
        if settings.layer is not None and settings.layer not in {layer.name for layer in ctx.conv_layers}:
            raise ConfigError(f"analyses.crp.layer: '{settings.layer}' is not a recorded Conv2d layer")
        return None

    def cost(self, ctx: BuildContext, probe: Probe, settings: CrpSettings) -> Cost:
        explained = sample_size(ctx.dataset.labels, settings.per_class)
        heatmaps = len(np.unique(ctx.dataset.labels)) * settings.units * settings.exemplars
        batch = max(1, min(explained, ctx.options.batch_size))
        set_up, per_batch = explain_seconds(ctx, probe, batch)
        per_image = per_batch / batch + probe.image_seconds()
        # a conditional heatmap is one more backward pass than the explanation
        seconds = set_up + per_image * (explained + 1.5 * heatmaps) + probe.image_seconds() * heatmaps * 2  # thumbnails
        return Cost(f"{explained:,} images explained, {heatmaps:,} conditional heatmaps", seconds,
                    shrink="analyses.crp.per_class")

    def finish(self, ctx: BuildContext, consumer: None) -> CrpResult:
        settings: CrpSettings = self.settings(ctx.config)
        layer = settings.layer or ctx.conv_layers[-1].name
        indices = np.concatenate(list(class_sample(ctx.dataset.labels, settings.per_class, ctx.config.seed).values()))
        active = _most_active(ctx, layer)
        with explaining(ctx) as model:
            images, shares, through = self._shares(ctx, model, indices, layer)
            labels = ctx.dataset.labels[images]
            chosen = {int(c): _chosen(shares[labels == c], settings) for c in np.unique(labels)}
            pairs = [
                (images[np.flatnonzero(labels == c)[row]], int(unit), c)
                for c, (_, exemplars) in chosen.items() for unit, rows in exemplars for row in rows
            ]
            heatmaps = dict(zip(pairs, self._heatmaps(ctx, model, layer, pairs)))
        classes = []
        for c, (top, exemplars) in chosen.items():
            rows = np.flatnonzero(labels == c)
            units = [
                ClassUnit(
                    unit=int(unit), share=float(shares[rows, unit].mean()),
                    relevant=[RelevantImage(images[rows[r]], float(shares[rows[r], unit]), heatmaps[(images[rows[r]], int(unit), c)])
                              for r in picked],
                    active=active[int(unit)][0] if active else [], active_values=active[int(unit)][1] if active else [],
                )
                for unit, picked in exemplars
            ]
            classes.append(ClassRelevance(c, len(rows), float(through[rows].mean()), units))
        shown = sorted({i for c in classes for u in c.units for i in [*(r.index for r in u.relevant), *u.active]})
        kept, pictures = thumbnails(ctx.dataset, shown)
        return CrpResult(
            layer=layer, per_class=settings.per_class,
            active_source=ACTIVE_SOURCE if active is not None else None, class_names=list(ctx.dataset.class_names),
            classes=classes, pictures=dict(zip(kept, pictures)),
        )

    def _shares(self, ctx: BuildContext, model: nn.Module, indices: np.ndarray, layer: str) -> tuple[list[int], np.ndarray, np.ndarray]:
        """(readable images, each unit's share of the layer's relevance in each, the share of each
        image's explained logit whose relevance passes the layer)."""
        images, shares, through = [], [], []
        for start in range(0, len(indices), ctx.options.batch_size):
            kept, x = readable(ctx.dataset, indices[start : start + ctx.options.batch_size])
            if not kept:
                continue
            targets = torch.from_numpy(ctx.dataset.classes.true_outputs(ctx.dataset.labels[kept])).to(ctx.device)
            logits, relevance = layer_relevance(model, x.to(ctx.device), targets, layer)
            # Summed in one layout: after a residual Sum autograd hands back a strided tensor, whose
            # sums round differently (the same model saved with torch.export gave 6e-8 apart).
            units = relevance.contiguous().flatten(2).sum(dim=2)
            total = units.sum(dim=1, keepdim=True)
            images += kept
            shares.append(torch.where(total != 0, units / total, torch.zeros_like(units)).cpu().numpy())
            through.append(torch.where(logits != 0, total[:, 0] / logits, torch.zeros_like(logits)).cpu().numpy())
        return images, np.concatenate(shares), np.concatenate(through)

    def _heatmaps(
        self, ctx: BuildContext, model: nn.Module, layer: str, pairs: list[tuple[int, int, int]]
    ) -> list[np.ndarray]:
        """The conditional heatmap of each (image, unit, class)."""
        maps = []
        for start in range(0, len(pairs), ctx.options.batch_size):
            batch = pairs[start : start + ctx.options.batch_size]
            _, images = readable(ctx.dataset, [index for index, _, _ in batch])
            channels = torch.tensor([unit for _, unit, _ in batch], device=ctx.device)
            targets = torch.from_numpy(ctx.dataset.classes.true_outputs(np.array([label for _, _, label in batch]))).to(ctx.device)
            relevance = conditional_relevance(model, images.to(ctx.device), targets, layer, channels)
            maps += [small_map(r.sum(dim=0)) for r in relevance]
        return maps

    def view(self, result: CrpResult, kit: ViewKit) -> SectionView:
        group = "crp"
        pictures = {index: kit.pictures.sprite(pixels, group, key=index) for index, pixels in result.pictures.items()}
        classes = []
        for c in result.classes:
            units = []
            for unit in c.units:
                relevant = [
                    (image, kit.pictures.sprite(overlay(result.pictures[image.index], image.heatmap), group))
                    for image in unit.relevant if image.index in result.pictures
                ]
                active = [(pictures[i], value) for i, value in zip(unit.active, unit.active_values) if i in pictures]
                units.append(UnitView(result.layer, unit, relevant, active))
            classes.append(ClassView(c, units))
        overview = CrpOverview(result, classes)
        layers = {result.layer: overview} if kit.slug(result.layer) is not None else {}
        return SectionView(layers=layers, overview=overview)

    def finding(self, result: CrpResult) -> str | None:
        if not result.classes:
            return None
        carried = {c.class_index: sum(u.share for u in c.units) for c in result.classes}
        least = min(carried, key=carried.__getitem__)
        name = result.class_names[least] if least < len(result.class_names) else str(least)
        count = len(result.classes[0].units)
        return (
            f"Concept relevance at {result.layer}: each class's {count} most relevant units carry on average "
            f"{np.mean(list(carried.values())):.0%} of its relevance there (least: class {name}, {carried[least]:.0%})."
        )


def _chosen(shares: np.ndarray, settings: CrpSettings) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """A class's most relevant units (by mean share over its images) and, for each, the rows of
    the images where its share is largest (relevance maximisation)."""
    top = np.argsort(-shares.mean(axis=0), kind="stable")[: settings.units]
    return top, [(int(unit), np.argsort(-shares[:, unit], kind="stable")[: settings.exemplars]) for unit in top]


ACTIVE_SOURCE = "the feature galleries: the data-set images with the largest spatial-mean activation, after the layer's BatchNorm"


def _most_active(ctx: BuildContext, layer: str) -> dict[int, tuple[list[int], list[float]]] | None:
    """Per unit of the layer, the images that excite it most and their activations, from the
    feature galleries' result (computed before this one: `after`); None when it was not computed."""
    galleries = ctx.results.get("galleries")
    entry = galleries.for_layer(layer) if galleries is not None else None
    if entry is None:
        return None
    return {card.unit: (list(card.top), list(card.top_values)) for card in entry.units}


@dataclass(frozen=True)
class UnitView:
    layer: str
    unit: ClassUnit
    relevant: list[tuple[RelevantImage, Sprite]]  # the image with its conditional heatmap over it
    active: list[tuple[Sprite, float]]


@dataclass(frozen=True)
class ClassView:
    result: ClassRelevance
    units: list[UnitView]


@dataclass(frozen=True)
class CrpOverview:
    result: CrpResult
    classes: list[ClassView]
