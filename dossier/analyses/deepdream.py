"""DeepDream per conv layer (METHODS §3; seed 004 §3.2, §4.1.5): a few data-set images whose
layer activations are amplified by gradient ascent in the image, the original beside the dream.

The same machinery as the feature galleries: the image lives in a parameterisation (Fourier with
colour decorrelation for RGB, as the seed did "to achieve more natural colours"), the forward pass
stops at the layer, the model's weights are frozen, and every step jitters the image. Unlike the
galleries the optimisation starts from a real image, fitted into the parameterisation first, and
runs over octaves: small to full size, the detail dreamed at one scale carried up to the next.
The objective is the classic one: the mean square of the layer's activations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from dossier.analyses.base import HOOKS_UNSUPPORTED, NO_CONV_LAYERS, Analysis, BuildContext, register
from dossier.capture import truncated_forward
from dossier.plan import Cost, Probe, Reduction
from dossier.featurevis import ImageParameterisation, Transforms, frozen
from dossier.report.kit import SectionView, ViewKit
from dossier.report.pictures import Sprite
from dossier.results import NOT_EXPORTED, ByLayer
from dossier.sampling import round_robin
from dossier.settings import SectionSettings
from dossier.thumbnails import thumbnail

# Fitting the parameterisation to the starting image: a linear least-squares problem in the
# sigmoid's input, which Adam solves to a few 1/255 in this many steps (tests/test_deepdream.py).
_FIT_STEPS = 300
_FIT_LEARNING_RATE = 0.3
_PIXEL_MARGIN = 0.01  # keeps pure black and white finite in the sigmoid's input


class DeepDreamSettings(SectionSettings):
    images: int = Field(3, ge=1, description="data-set images dreamed per layer (one per class in turn)")
    octaves: int = Field(3, ge=1, description="scales dreamed at, smallest first")
    octave_scale: float = Field(1.4, gt=1, description="size ratio between successive octaves")
    steps: int = Field(10, ge=1, description="Adam steps per octave")
    learning_rate: float = Field(0.05, gt=0, description="Adam step size in the parameterisation")
    jitter: int = Field(8, ge=0, description="random shift per step, in pixels at 224 px (scaled to the image)")
    parameterisation: Literal["fourier", "pixel", "laplacian"] = Field(
        "fourier", description="fourier (colour-decorrelated for RGB) | pixel | laplacian"
    )


@dataclass(frozen=True)
class Dream:
    index: int  # data-set index of the original
    name: str
    before: float  # the objective (mean square of the layer's activations) on the original
    after: float  # on the dream
    dream: np.ndarray = field(metadata=NOT_EXPORTED)

    @property
    def gain(self) -> float | None:
        return self.after / self.before if self.before > 0 else None


@dataclass(frozen=True)
class LayerDreams:
    layer: str
    dreams: list[Dream]


@dataclass(frozen=True)
class DeepDreamResult(ByLayer):
    octaves: int
    octave_scale: float
    steps: int
    parameterisation: str
    sizes: list[list[int]]  # height, width of each octave
    layers: list[LayerDreams]
    originals: dict[int, np.ndarray] = field(metadata=NOT_EXPORTED)  # data-set index -> thumbnail


def octave_sizes(height: int, width: int, octaves: int, scale: float) -> list[tuple[int, int]]:
    """Image sizes from the smallest octave to the full size."""
    return [
        (max(8, round(height / scale**k)), max(8, round(width / scale**k))) for k in reversed(range(octaves))
    ]


def fit_parameterisation(kind: str, images: torch.Tensor, generator: torch.Generator) -> ImageParameterisation:
    """A parameterisation whose image is `images` (N×C×H×W in [0, 1]), fitted in the sigmoid's input."""
    batch, channels, height, width = images.shape
    image = ImageParameterisation(kind, batch, channels, (height, width), generator).to(images.device)
    target = torch.logit(images.clamp(_PIXEL_MARGIN, 1 - _PIXEL_MARGIN))
    optimiser = torch.optim.Adam(image.parameters(), lr=_FIT_LEARNING_RATE)
    for _ in range(_FIT_STEPS):
        loss = (torch.logit(image(), eps=1e-6) - target).pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return image


def dream_objective(model: torch.nn.Module, layer: str, pixels: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Per image: the mean square of the layer's activations (classic DeepDream)."""
    return truncated_forward(model, [layer], (pixels - shift) / scale)[layer].pow(2).flatten(1).mean(dim=1)


def dream(
    model: torch.nn.Module,
    layer: str,
    images: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    settings: DeepDreamSettings,
    seed: int,
) -> torch.Tensor:
    """The dreamed images (N×C×H×W in [0, 1]) of `images` at `layer`, over octaves."""
    generator = torch.Generator().manual_seed(seed)
    shift = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    scale = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    transforms = Transforms(pad=settings.jitter, jitter=settings.jitter, scale=(1.0, 1.0), rotate=0.0, jitter_after=0)
    detail = None
    sizes = octave_sizes(*images.shape[2:], settings.octaves, settings.octave_scale)
    with frozen(model):
        for size in sizes:
            base = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
            start = base if detail is None else (base + F.interpolate(detail, size=size, mode="bilinear", align_corners=False))
            image = fit_parameterisation(settings.parameterisation, start.clamp(0, 1).detach(), generator)
            optimiser = torch.optim.Adam(image.parameters(), lr=settings.learning_rate)
            for _ in range(settings.steps):
                loss = -dream_objective(model, layer, transforms.apply(image(), generator), shift, scale).sum()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            with torch.no_grad():
                detail = image() - base
    return (base + detail).clamp(0, 1).detach()


@register
class DeepDream(Analysis):
    name = "deepdream"
    title = "DeepDream"
    order = 25
    result_type = DeepDreamResult
    settings_type = DeepDreamSettings
    reductions = (
        Reduction("steps", (5, 3), "fewer DeepDream steps per octave: weaker dreams", rank=2),
        Reduction("octaves", (2, 1), "fewer DeepDream octaves: the dream at fewer scales", rank=2),
        Reduction("images", (2, 1), "fewer images dreamed per layer", rank=3),
    )

    def applies(self, ctx: BuildContext) -> str | None:
        if not ctx.hookable:
            return HOOKS_UNSUPPORTED
        return None if ctx.conv_layers else NO_CONV_LAYERS

    def finish(self, ctx: BuildContext, consumer: None) -> DeepDreamResult:
        settings: DeepDreamSettings = self.settings(ctx.config)
        spec = ctx.config.model
        chosen = [int(i) for i in round_robin(ctx.dataset.labels, settings.images)]
        originals = {i: pixels for i in chosen if (pixels := ctx.dataset.image(i)) is not None}
        indices = list(originals)
        images = torch.stack(
            [torch.from_numpy(np.array(originals[i], copy=True)).permute(2, 0, 1).float() / 255 for i in indices]
        )  # on the CPU: it may travel to a worker
        layers = ctx.map(_layer_dreams, [(info.name, images, indices) for info in ctx.conv_layers], desc="deepdream")
        height, width = spec.input_size[1:]
        return DeepDreamResult(
            octaves=settings.octaves,
            octave_scale=settings.octave_scale,
            steps=settings.steps,
            parameterisation=settings.parameterisation,
            sizes=[list(size) for size in octave_sizes(height, width, settings.octaves, settings.octave_scale)],
            layers=layers,
            originals={i: thumbnail(pixels) for i, pixels in originals.items()},
        )

    def cost(self, ctx: BuildContext, probe: Probe, settings: DeepDreamSettings) -> Cost:
        # One-octave dreams at the anchor layers, at the smallest and the full size, at 1 and 3
        # steps, give what fitting an octave and a step cost there; other layers are interpolated
        # between the anchors, octaves between the two sizes by their pixels.
        spec = ctx.config.model
        height, width = spec.input_size[1:]
        sizes = octave_sizes(height, width, settings.octaves, settings.octave_scale)
        shares = [h * w / (height * width) for h, w in sizes]

        def timed(layer: str) -> tuple[float, ...]:
            def dreamt(size: tuple[int, int], steps: int) -> float:
                images = torch.rand(settings.images, spec.input_size[0], *size, device=ctx.device)
                changed = settings.model_copy(update={"steps": steps, "octaves": 1})
                key = ("dream", layer, settings.images, settings.parameterisation, size, steps)
                run = lambda: dream(ctx.model.module, layer, images, spec.channel_mean, spec.channel_std, changed, 0)  # noqa: E731
                return probe.seconds(key, run, warm_up=steps == 1, repeats=2)

            timings = []
            for size in (sizes[0], sizes[-1]):
                one, three = dreamt(size, 1), dreamt(size, 3)
                step = max(0.0, (three - one) / 2)
                timings += [max(0.0, one - step), step]
            return tuple(timings)

        seconds = 0.0
        for info in ctx.conv_layers:
            fit_small, step_small, fit_full, step_full = probe.across_layers(info.name, timed)
            for share in shares:
                fit, step = (np.interp(share, [shares[0], 1.0], [small, full]) for small, full in ((fit_small, fit_full), (step_small, step_full)))
                seconds += float(fit + settings.steps * step)
        work = f"{len(ctx.conv_layers)} layers × {settings.images} images × {settings.octaves} octaves × {settings.steps} steps"
        return Cost(work, seconds, shrink="analyses.deepdream.steps, .octaves, .images")

    def view(self, result: DeepDreamResult, kit: ViewKit) -> SectionView:
        layers = {}
        for layer in result.layers:
            group = f"deepdream-{kit.slug(layer.layer)}"
            pairs = [
                DreamPair(d, kit.pictures.sprite(result.originals[d.index], group), kit.pictures.sprite(d.dream, group))
                for d in layer.dreams
            ]
            layers[layer.layer] = DreamsView(pairs, result)
        return SectionView(layers=layers)


def _layer_dreams(ctx: BuildContext, job: tuple[str, torch.Tensor, list[int]]) -> LayerDreams:
    layer, images, indices = job
    spec, model = ctx.config.model, ctx.model.module
    shift = torch.tensor(spec.channel_mean, device=ctx.device).view(1, -1, 1, 1)
    scale = torch.tensor(spec.channel_std, device=ctx.device).view(1, -1, 1, 1)
    images = images.to(ctx.device)
    dreamed = dream(model, layer, images, spec.channel_mean, spec.channel_std, ctx.config.analyses.deepdream, ctx.config.seed)
    with torch.no_grad():
        before = dream_objective(model, layer, images, shift, scale)
        after = dream_objective(model, layer, dreamed, shift, scale)
    return LayerDreams(
        layer,
        [
            Dream(index, ctx.dataset.names[index], float(before[n]), float(after[n]), _thumbnail(dreamed[n]))
            for n, index in enumerate(indices)
        ],
    )


@dataclass(frozen=True)
class DreamPair:
    dream: Dream
    original: Sprite
    picture: Sprite


@dataclass(frozen=True)
class DreamsView:
    pairs: list[DreamPair]
    run: DeepDreamResult


def _thumbnail(image: torch.Tensor) -> np.ndarray:
    pixels = np.round(image.permute(1, 2, 0).cpu().numpy() * 255).clip(0, 255).astype(np.uint8)
    return thumbnail(pixels)
