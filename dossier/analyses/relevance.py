"""Relevance heatmaps (METHODS §5; seed 004 §2.5.5–2.5.6, §3.3–3.5, §4.2–4.4).

Deep Taylor decomposition through zennit: z⁺ in hidden conv and dense layers (in each unit's own
orientation, so that units with negative outputs keep their relevance), z^B at the input with
bounds from the input normalisation, BatchNorm merged into the conv whose output it reads, residual
additions split in proportion to their inputs, multiplicative gates (squeeze-excitation) held
constant. Biases are left out of the z-rules, so relevance is conserved layer by layer; the
conservation ratio is reported per image, never assumed, and a map whose relevance vanished is
said to have vanished, not shown blank. Grad-CAM on the last conv layer is a second lens;
activation maps show each layer's strongest channels.
"""

from __future__ import annotations

import logging
import math
import operator
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from zennit.canonizers import NamedMergeBatchNorm
from zennit.core import Hook, ParamMod, Stabilizer
from zennit.composites import SpecialFirstLayerMapComposite, layer_map_base
from zennit.layer import Sum
from zennit.rules import ClampMod, ZBox
from zennit.types import Convolution

from dossier.analyses.base import HOOKS_UNSUPPORTED, Analysis, BuildContext, register
from dossier.capture import Batch, ForwardHook, hooks, recording
from dossier.layers import batchnorm_after
from dossier.plan import Cost, Probe
from dossier.report.kit import CheckResult, CrossPage, SectionView, ViewKit, judged
from dossier.report.pictures import Sprite, grey_map, overlay, signed_heatmap
from dossier.results import NOT_EXPORTED
from dossier.settings import SectionSettings, StrictModel
from dossier.thumbnails import thumbnails

log = logging.getLogger(__name__)

_STABILISER = 1e-6  # added to every rule's denominator: signals far below it lose their relevance
RULES = (
    "z⁺ in hidden conv and dense layers, taken in each unit's orientation (over the positive contributions where "
    "Σ x·w > 0, the negative ones where it is below 0, evenly where no input contributes; biases left out), z^B at "
    f"the input, BatchNorm merged into the conv whose output it reads, stabiliser ε = {_STABILISER:g}"
)
# Parameter modifiers of OrientedZPlus; biases are left out so that relevance is conserved.
_POSITIVE_WEIGHTS = ClampMod(min=0.0, zero_params=["bias"])
_NEGATIVE_WEIGHTS = ClampMod(max=0.0, zero_params=["bias"])
_ONES = ParamMod(lambda param, _name: torch.ones_like(param), zero_params=["bias"], require_params=False)
_MAP_PIXELS = 64  # stored heatmaps and activation maps are at most this large
# Tensor additions as torch.fx sees them in eager code and in a torch.export graph (model.export).
_ADDITIONS = (operator.add, operator.iadd, torch.add, torch.ops.aten.add.Tensor, torch.ops.aten.add_.Tensor)
_PRODUCTS = (operator.mul, operator.imul, torch.mul)
_GATES = (nn.Sigmoid, nn.Hardsigmoid)  # after _functions_as_modules, the functional ones are these too
_RESHAPES = {"view", "reshape", "unsqueeze", "expand", "expand_as", "flatten", torch.reshape, torch.unsqueeze,
             torch.flatten}
# Functions that become the module zennit has a rule for: activations pass relevance on (like a
# ReLU), average poolings split it in proportion to their inputs.
_AS_MODULES = {
    F.relu: nn.ReLU, torch.relu: nn.ReLU, F.relu6: nn.ReLU6, F.hardswish: nn.Hardswish, F.silu: nn.SiLU,
    F.gelu: nn.GELU, F.hardsigmoid: nn.Hardsigmoid, F.sigmoid: nn.Sigmoid, torch.sigmoid: nn.Sigmoid,
    F.adaptive_avg_pool2d: nn.AdaptiveAvgPool2d, F.avg_pool2d: nn.AvgPool2d,
}


BORDER_BAND = 0.1  # the outer tenth of each side: 36% of the image


class RelevanceChecks(StrictModel):
    max_border_relevance: float = Field(
        0.6, gt=0, le=1,
        description="a class whose images put more of their relevance on the border (outer tenth, 36% of the area) fails",
    )


class RelevanceSettings(SectionSettings):
    per_class: int = Field(1, ge=0, description="most confident correct images explained per class")
    mistakes: int = Field(4, ge=0, description="most confident mistakes explained (predicted and true class)")
    tolerance: float = Field(0.01, gt=0, description="flag an image whose Σ input relevance / logit is off by more")
    top_filters: int = Field(5, ge=1, description="most relevant filters listed per class")
    activation_maps: int = Field(4, ge=1, description="strongest channels shown per layer and image")


@dataclass(frozen=True)
class ActivationMaps:
    channels: list[int]
    means: list[float]
    maps: np.ndarray = field(metadata=NOT_EXPORTED)  # N × h × w, each scaled by its max to 0–255


@dataclass(frozen=True)
class ExplainedImage:
    index: int
    name: str
    label: int  # the data's class
    predicted: int  # the model output explained: the top-1 over all outputs
    true_output: int  # the true class's output, explained too for a mistake
    predicted_name: str  # a class, or "other: <output name>" when the data has no such class
    confidence: float
    logit: float  # the explained logit (predicted output)
    relevance_sum: float  # input relevance, summed
    conservation: float | None  # relevance_sum / logit; None when the logit is 0
    vanished: bool  # see vanished(): no map is shown
    border_share: float | None  # share of the positive input relevance on the border band (None: none positive)
    true_conservation: float | None  # for a mistake: the same for the true class
    true_vanished: bool | None  # for a mistake: the same for the true class
    filter_relevance: dict[str, list[float]]  # per conv layer: relevance summed over each channel
    thumbnail: np.ndarray = field(metadata=NOT_EXPORTED)
    heatmap: np.ndarray = field(metadata=NOT_EXPORTED)  # input relevance, H × W
    true_heatmap: np.ndarray | None = field(metadata=NOT_EXPORTED)
    gradcam: np.ndarray | None = field(metadata=NOT_EXPORTED)
    layer_heatmaps: dict[str, np.ndarray] = field(metadata=NOT_EXPORTED)
    activation_maps: dict[str, ActivationMaps] = field(default_factory=dict)

    @property
    def correct(self) -> bool:
        return self.predicted == self.true_output


@dataclass(frozen=True)
class LayerRanking:
    layer: str
    ranking: list[int]  # filters, most relevant first
    scores: list[float]  # mean share of the layer's relevance, in ranking order
    cumulative: list[float]  # cumulative share, in ranking order
    per_class: dict[int, list[int]]  # class -> its most relevant filters


@dataclass(frozen=True)
class RelevanceResult:  # rankings, not layers: ranking_for() looks a layer up
    rules: str
    graph: str  # what the traced copy of the model changed (additions, gates, functional ops)
    tolerance: float
    gradcam_layer: str | None
    images: list[ExplainedImage]
    rankings: list[LayerRanking]

    def ranking_for(self, layer: str) -> LayerRanking | None:
        return next((r for r in self.rankings if r.layer == layer), None)

    @property
    def outside_tolerance(self) -> int:
        return sum(
            image.conservation is None or abs(image.conservation - 1) > self.tolerance for image in self.images
        )

    @property
    def vanished(self) -> int:
        return sum(image.vanished for image in self.images)


def vanished(relevance: torch.Tensor, logit: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Per image: the input relevance is, in all, no larger than the error the conservation check
    tolerates (Σ|R| ≤ tolerance · |logit|), so its map is indistinguishable from a blank one.

    A conserved map has Σ|R| ≥ |Σ R| ≈ |logit|, so this only happens when relevance was lost on the
    way: typically when the signals reaching the logit are below the rules' stabiliser ε, as in
    an untrained googlenet whose logits (~0.01) are its biases and whose relevance sums to 1e-25.
    """
    return relevance.abs().flatten(1).sum(dim=1) <= tolerance * logit.abs()


@dataclass(frozen=True)
class GraphRewrites:
    """What relevance_graph changed in its traced copy of the model, to be stated on the page."""

    additions: int  # tensor additions made zennit Sum modules
    gates: int  # multiplicative gates made Gate modules
    functions: int  # functional activations and average poolings made modules

    def describe(self) -> str:
        return (
            f"{self.additions} tensor addition(s) split in proportion to their inputs (zennit Norm rule); "
            f"{self.gates} multiplicative gate(s) (signal × sigmoid-like gate) held constant, all relevance "
            f"to the signal; {self.functions} functional activation(s) or average pooling(s) given their module's rule"
        )


class Gate(nn.Module):
    """`signal * gate`, as a module so that a composite can give it a rule (GateAsConstant)."""

    def forward(self, signal: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return signal * gate


class GateAsConstant(Hook):
    """LRP through `signal * gate` with the gate held constant (Arras et al. 2017's rule for LSTM gates).

    With the gate fixed, `signal * gate` is a linear map with one input per output, so every rule
    gives that input all of the output's relevance; the gate's branch (squeeze-excitation's pooling
    and 1×1 convs) gets none. Autograd would instead scale the signal's relevance by the gate and
    send `relevance × signal` into the gate's branch, an amount unrelated to the logit: through
    nine such blocks mobilenet_v3_small's input relevance came to 0.0 to 39 times its logit,
    depending on the weights, efficientnet_b0's (sixteen) 0.001 to 10⁵ times.
    """

    def backward(self, module: nn.Module, grad_input: tuple, grad_output: tuple) -> tuple:
        signal, gate = grad_input
        relevance = grad_output[0].sum_to_size(signal.shape)
        return relevance, None if gate is None else torch.zeros_like(gate)


class OrientedZPlus(Hook):
    """z⁺ in each unit's own orientation: relevance in proportion to the positive contributions x·w
    for a unit whose bias-free pre-activation z = Σ x·w is positive, to the negative ones where
    z < 0, and evenly over its inputs (zennit's Flat rule) where z = 0. Biases are left out.

    DTD derives z⁺ for ReLU units with z > 0, and there nothing changes. Linear bottlenecks
    (MobileNet, EfficientNet: conv + BatchNorm with no activation) and Hardswish/SiLU pass negative
    outputs on, and the next z⁺ layer gives them relevance through their negative inputs (x⁻w⁻);
    plain z⁺ then splits a negative unit's relevance over its positive contributions, often none,
    and the relevance is lost (mobilenet_v3_small kept 87% with the gates fixed). Flipping a unit's
    sign (negating its weights, absorbed by the next layer) changes neither the network nor the
    relevance it should get, so a negative unit gets the mirror image of z⁺. The orientation
    follows z, not the output: a BatchNorm merged into the conv often gives a negative z a positive
    bias. z = 0 means no input contributes (a depthwise 3×3 window of dead ReLUs) while the bias
    keeps the unit alive: every contribution-based rule drops its relevance (1–2% of the logit in
    mobilenet_v3_small), so it goes evenly to the inputs the unit sees.
    """

    def __init__(self, stabilizer: float = _STABILISER) -> None:
        super().__init__()
        self.stabilizer = stabilizer
        self.stabilise = Stabilizer.ensure(stabilizer)

    def copy(self) -> "OrientedZPlus":
        return type(self)(self.stabilizer)

    def forward(self, module: nn.Module, input: tuple, output: torch.Tensor) -> None:
        self.stored_tensors["input"] = input
        bias = getattr(module, "bias", None)
        z = output.detach() if bias is None else output.detach() - bias.detach().view(-1, *[1] * (output.dim() - 2))
        self.stored_tensors["orientation"] = z.sign()

    def backward(self, module: nn.Module, grad_input: tuple, grad_output: tuple) -> tuple:
        relevance, orientation = grad_output[0], self.stored_tensors["orientation"]
        x = self.stored_tensors["input"][0].detach()
        positive, negative = x.clamp(min=0), x.clamp(max=0)
        contributions = {  # orientation -> (input, weights) pairs whose outputs make up the denominator
            1: [(positive, _POSITIVE_WEIGHTS), (negative, _NEGATIVE_WEIGHTS)],
            -1: [(negative, _POSITIVE_WEIGHTS), (positive, _NEGATIVE_WEIGHTS)],
            0: [(torch.ones_like(x), _ONES)],
        }
        result = torch.zeros_like(x)
        for sign, pairs in contributions.items():
            part = relevance * (orientation == sign)
            if part.any():  # in a ReLU network only z > 0 carries relevance
                result = result + self._share(module, pairs, part)
        return tuple(result if g is not None and g.shape == result.shape else None for g in grad_input)

    def _share(self, module: nn.Module, pairs: list, relevance: torch.Tensor) -> torch.Tensor:
        """Σ over pairs of input ∘ ∂/∂input [Σ_j relevance_j · out_j / Σ_pairs out_j]: each unit's
        relevance split over its inputs in proportion to their contributions (zennit's BasicHook)."""
        live = [(x, weights) for x, weights in pairs if x.any()]  # ReLU outputs have no negative part: half the work
        if not live:  # an all-zero input has nothing to give relevance to
            return torch.zeros_like(pairs[0][0])
        inputs, outputs = [], []
        for x, weights in live:
            x = x.detach().requires_grad_()
            with weights(module) as modified, torch.enable_grad():
                outputs.append(modified.forward(x))
            inputs.append(x)
        scaled = relevance / self.stabilise(sum(outputs))
        gradients = torch.autograd.grad(outputs, inputs, grad_outputs=[scaled] * len(outputs))
        return sum(x.detach() * gradient for x, gradient in zip(inputs, gradients))


def relevance_graph(model: nn.Module, example: torch.Tensor) -> tuple[fx.GraphModule, GraphRewrites]:
    """A traced copy of model whose operations that autograd would get wrong are modules with rules.

    Autograd is the relevance pass between the modules zennit hooks, so an operation left to it
    must pass relevance on unchanged; three kinds do not, and torch.fx finds them in any traceable
    model without per-architecture canonizers: functional activations and poolings (F.silu's
    gradient scales relevance, and only modules get zennit's rules), additions (autograd copies
    the relevance to both inputs) and multiplicative gates (see GateAsConstant). The copy computes
    the same function; it shares the model's parameters. Products with a number (`x * 0.5`) still
    scale relevance by it; none of the common architectures has one, and the ratio would show it.
    """
    graph_module = fx.symbolic_trace(model)
    ShapeProp(graph_module).propagate(example)
    functions = _functions_as_modules(graph_module)
    additions = _additions_as_sums(graph_module)
    gates = _gates_as_modules(graph_module)
    graph_module.graph.lint()
    graph_module.recompile()
    return graph_module, GraphRewrites(additions=additions, gates=gates, functions=functions)


def _replace(
    graph_module: fx.GraphModule, node: fx.Node, module: nn.Module, args: tuple, stem: str, count: int
) -> None:
    """Replace node by a call of module (added as dossier_<stem>_<count>) on args."""
    name = f"dossier_{stem}_{count}"
    graph_module.add_submodule(name, module)
    with graph_module.graph.inserting_before(node):
        replacement = graph_module.graph.call_module(name, args)
    replacement.meta = dict(node.meta)
    node.replace_all_uses_with(replacement)
    graph_module.graph.erase_node(node)


def _functions_as_modules(graph_module: fx.GraphModule) -> int:
    count = 0
    for node in list(graph_module.graph.nodes):
        make = _AS_MODULES.get(node.target) if node.op == "call_function" else None
        settings = (*node.args[1:], *node.kwargs.values())
        if make is None or any(isinstance(value, fx.Node) for value in settings):  # computed settings: keep it
            continue
        # The functional signatures match their modules' constructors after the input.
        _replace(graph_module, node, make(*node.args[1:], **node.kwargs), node.args[:1], "function", count)
        count += 1
    return count


def _additions_as_sums(graph_module: fx.GraphModule) -> int:
    """`a + b` of two same-shaped tensors becomes Sum(stack(a, b)), which zennit's Norm rule splits
    in proportion to a and b."""
    count = 0
    for node in list(graph_module.graph.nodes):
        if node.op != "call_function" or node.target not in _ADDITIONS or len(node.args) != 2:
            continue
        left, right = node.args
        if _shape(left) is None or _shape(left) != _shape(right):
            continue
        with graph_module.graph.inserting_before(node):
            stacked = graph_module.graph.call_function(torch.stack, ((left, right),), {"dim": -1})
        _replace(graph_module, node, Sum(dim=-1), (stacked,), "residual_sum", count)
        count += 1
    return count


def _gates_as_modules(graph_module: fx.GraphModule) -> int:
    count = 0
    for node in list(graph_module.graph.nodes):
        if node.op != "call_function" or node.target not in _PRODUCTS or len(node.args) != 2:
            continue
        gate = _gate_index(graph_module, node)
        if gate is None:
            continue
        signal = node.args[1 - gate]
        _replace(graph_module, node, Gate(), (signal, node.args[gate]), "gate", count)
        count += 1
    return count


def _gate_index(graph_module: fx.GraphModule, product: fx.Node) -> int | None:
    """Which factor of a product of two tensors is the gate: the one a sigmoid-like function
    produced (possibly reshaped), else the one broadcast over the other (a squeeze-excitation
    scale is N×C×1×1, a layer scale C×1×1); None when neither is or a factor is not a tensor."""
    shapes = [_shape(arg) for arg in product.args]
    if None in shapes:
        return None
    gated = [_is_gate(graph_module, arg) for arg in product.args]
    if gated.count(True) == 1:
        return gated.index(True)
    output = _shape(product)
    broadcast = [shape != output and shape.numel() < output.numel() for shape in shapes]
    if broadcast.count(True) == 1 and output in shapes:
        return broadcast.index(True)
    return None


def _is_gate(graph_module: fx.GraphModule, node: fx.Node) -> bool:
    while node.op in ("call_method", "call_function") and node.target in _RESHAPES:
        node = node.args[0]
    return node.op == "call_module" and isinstance(graph_module.get_submodule(node.target), _GATES)


def _shape(node: object) -> torch.Size | None:
    """The shape of a traced tensor; None for a constant or a value that is not a tensor."""
    if not isinstance(node, fx.Node) or "tensor_meta" not in node.meta:
        return None
    return getattr(node.meta["tensor_meta"], "shape", None)


def explainable(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, str]:
    """The model relevance runs through, and what was changed in it: the traced copy of
    relevance_graph, or the model itself when torch.fx cannot trace it (data-dependent control
    flow), saying what that costs."""
    try:
        traced, rewrites = relevance_graph(model, example)
    except Exception as exc:  # torch.fx cannot trace every model
        log.warning("relevance: the model cannot be traced (%s); additions and gates keep autograd's rule", exc)
        return model, (
            f"not traceable by torch.fx ({type(exc).__name__}): additions, gates and functional activations "
            "keep autograd's rule, which need not conserve relevance"
        )
    return traced, rewrites.describe()


def input_bounds(mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised values of pixel 0 and pixel 1 per channel: the z^B box."""
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (0 - m) / s, (1 - m) / s


def deep_taylor_composite(model: nn.Module, conv_names: list[str], input_size, mean, std, device) -> SpecialFirstLayerMapComposite:
    low, high = input_bounds(mean, std)
    box = ZBox(low.to(device), high.to(device), stabilizer=_STABILISER, zero_params=["bias"])
    # A dense first layer (a model without convolutions) sees the flattened image: per-pixel bounds.
    flat = [bound.expand(1, *input_size).reshape(1, -1).to(device) for bound in (low, high)]
    dense_box = ZBox(*flat, stabilizer=_STABILISER, zero_params=["bias"])
    merges = [([conv], bn) for conv, (bn, _) in batchnorm_after(model, conv_names, input_size, device).items()]
    return SpecialFirstLayerMapComposite(
        layer_map=layer_map_base(_STABILISER) + [
            (Convolution, OrientedZPlus(_STABILISER)),
            (nn.Linear, OrientedZPlus(_STABILISER)),
            (Gate, GateAsConstant()),
        ],
        # z^B belongs to whichever layer sees the pixels first, conv or dense.
        first_map=[(Convolution, box), (nn.Linear, dense_box)],
        canonizers=[NamedMergeBatchNorm(merges)] if merges else [],
    )


def relevance_pass(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, layers: list[str]
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """(explained logits, input relevance, relevance at each layer's output) for the targets.

    The composite must already be registered on model (`with composite.context(model)`)."""
    layer_relevance: dict[str, torch.Tensor] = {}

    def keep_relevance(name: str) -> ForwardHook:
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            output.register_hook(lambda grad: layer_relevance.__setitem__(name, grad.detach()))

        return hook

    with hooks(model, {name: keep_relevance(name) for name in layers}):
        x = images.clone().requires_grad_(True)
        logits = model(x)
        chosen = F.one_hot(targets, logits.shape[1]).to(logits) * logits
        (relevance,) = torch.autograd.grad(logits, x, grad_outputs=chosen.detach())
    return logits.gather(1, targets[:, None])[:, 0].detach(), relevance.detach(), layer_relevance


def logits_and_relevance_for(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if len(images) == 0:
        return torch.zeros(0), torch.zeros(0, *images.shape[1:])
    logits, relevance, _ = relevance_pass(model, images, targets, [])
    return logits, relevance


def grad_cam(model: nn.Module, layer: str, images: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017) at `layer`, upsampled to the input size, scaled to [0, 1]."""
    with recording(model, [layer], detach=False) as outputs:
        logits = model(images)
    activation = outputs[layer]
    activation.retain_grad()
    logits.gather(1, targets[:, None]).sum().backward()
    weights = activation.grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activation).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(dim=1).clamp(min=1e-12)[:, None, None]
    model.zero_grad(set_to_none=True)
    return (cam / peak).detach().cpu().numpy()


def _small(maps: torch.Tensor) -> np.ndarray:
    """N × H × W maps pooled down to at most _MAP_PIXELS on a side (relevance sums are kept)."""
    height, width = maps.shape[-2:]
    factor = max(1, -(-max(height, width) // _MAP_PIXELS))
    if factor > 1:
        maps = F.avg_pool2d(maps[:, None], factor, ceil_mode=True)[:, 0] * factor * factor
    return maps.float().cpu().numpy()


class _Predictions:
    def __init__(self) -> None:
        self.indices: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.predicted: list[np.ndarray] = []
        self.confidence: list[np.ndarray] = []

    def update(self, batch: Batch) -> None:
        probabilities = torch.softmax(batch.logits.float(), dim=1)
        confidence, predicted = probabilities.max(dim=1)
        self.indices.append(batch.indices.cpu().numpy())
        self.labels.append(batch.labels.cpu().numpy())
        self.predicted.append(predicted.cpu().numpy())
        self.confidence.append(confidence.cpu().numpy())

    def merge(self, other: "_Predictions") -> None:
        self.indices += other.indices
        self.labels += other.labels
        self.predicted += other.predicted
        self.confidence += other.confidence


def select_images(labels: np.ndarray, correct: np.ndarray, confidence: np.ndarray, per_class: int, mistakes: int) -> np.ndarray:
    """Rows: the most confident correct images of each class, then the most confident mistakes."""
    chosen = []
    for c in np.unique(labels):
        right = np.flatnonzero((labels == c) & correct)
        chosen += list(right[np.argsort(-confidence[right], kind="stable")][:per_class])
    wrong = np.flatnonzero(~correct)
    chosen += list(wrong[np.argsort(-confidence[wrong], kind="stable")][:mistakes])
    return np.array(chosen, dtype=np.int64)


@register
class Relevance(Analysis):
    name = "relevance"
    title = "Relevance heatmaps"
    order = 50
    result_type = RelevanceResult
    settings_type = RelevanceSettings
    check_settings = RelevanceChecks
    page = CrossPage("relevance.html", "Relevance heatmaps")

    def applies(self, ctx: BuildContext) -> str | None:
        return None if ctx.hookable else HOOKS_UNSUPPORTED

    def consumer(self, ctx: BuildContext) -> _Predictions:
        return _Predictions()

    def cost(self, ctx: BuildContext, probe: Probe, settings: RelevanceSettings) -> Cost:
        explained = settings.per_class * len(ctx.dataset.class_names) + settings.mistakes
        batch = max(1, min(explained, ctx.options.batch_size))
        convs = [layer.name for layer in ctx.conv_layers]
        images = torch.randn(batch, *ctx.config.model.input_size, device=ctx.device)

        def explain() -> None:
            model, _ = explainable(ctx.model.module, images[:1])
            composite = deep_taylor_composite(
                model, convs, ctx.config.model.input_size, ctx.config.model.channel_mean,
                ctx.config.model.channel_std, ctx.device,
            )
            with composite.context(model) as modified:
                relevance_pass(modified, images, torch.zeros(batch, dtype=torch.long, device=ctx.device), convs)

        seconds = probe.seconds(("relevance", batch), explain)
        # mistakes are explained twice (predicted and true class); Grad-CAM and the activation
        # maps cost about half a relevance pass more
        per_image = seconds / batch
        return Cost(f"{explained} images × {len(convs)} layers", per_image * (1.5 * explained + settings.mistakes),
                    shrink="analyses.relevance.per_class")

    def finish(self, ctx: BuildContext, consumer: _Predictions) -> RelevanceResult:
        settings = self.settings(ctx.config)
        indices = np.concatenate(consumer.indices)
        labels, predicted = np.concatenate(consumer.labels), np.concatenate(consumer.predicted)
        confidence = np.concatenate(consumer.confidence)
        correct = predicted == ctx.dataset.classes.true_outputs(labels)
        rows = select_images(labels, correct, confidence, settings.per_class, settings.mistakes)
        convs = [layer.name for layer in ctx.conv_layers]
        images = torch.stack([ctx.dataset[int(indices[r])][0] for r in rows]).to(ctx.device)
        model, graph = explainable(ctx.model.module, images[:1])
        composite = deep_taylor_composite(
            model, convs, ctx.config.model.input_size, ctx.config.model.channel_mean,
            ctx.config.model.channel_std, ctx.device,
        )
        explained = self._explain(ctx, model, composite, images, indices[rows], labels[rows], predicted[rows],
                                  confidence[rows], convs, settings)
        return RelevanceResult(
            rules=RULES,
            graph=graph,
            tolerance=settings.tolerance,
            gradcam_layer=convs[-1] if convs else None,
            images=explained,
            rankings=[_ranking(layer, explained, settings.top_filters) for layer in convs],
        )

    def checks(self, result: RelevanceResult, thresholds: Any, ctx: BuildContext) -> list[CheckResult]:
        shown = [image for image in result.images if not image.vanished]
        off = sum(abs((image.conservation or 0) - 1) > result.tolerance for image in shown)
        gone = len(result.images) - len(shown)
        conservation = CheckResult(
            "relevance conservation", judged(off > 0, gone > 0), f"{off} of {len(shown)} images off",
            f"|Σ relevance ÷ logit − 1| ≤ {result.tolerance:g}",
            f"relevance vanished on {gone} image(s)" if gone else "", "relevance.html",
        )
        by_class: dict[int, list[float]] = {}
        for image in shown:
            if image.correct and image.border_share is not None:
                by_class.setdefault(image.label, []).append(image.border_share)
        if not by_class:
            return [conservation]
        worst, shares = max(by_class.items(), key=lambda item: float(np.mean(item[1])))
        share, limit = float(np.mean(shares)), thresholds.max_border_relevance
        border = CheckResult(
            "relevance on the image border", judged(share > limit, share > 0.75 * limit), f"{share:.0%}", f"≤ {limit:.0%}",
            f"class {ctx.dataset.class_names[worst]} ({len(shares)} image(s)): a shortcut warning" if share > 0.75 * limit
            else f"highest: class {ctx.dataset.class_names[worst]}", "relevance.html",
        )
        return [conservation, border]

    def unit_rankings(self, result: RelevanceResult) -> dict[str, list[int]]:
        """Most relevant first."""
        return {ranking.layer: ranking.ranking for ranking in result.rankings}

    def view(self, result: RelevanceResult, kit: ViewKit) -> SectionView:
        explained = [_explained_view(n, image, kit) for n, image in enumerate(result.images)]
        layers = {
            ranking.layer: _layer_view(ranking, result, explained, kit)
            for ranking in result.rankings
            if kit.slug(ranking.layer) is not None
        }
        return SectionView(layers=layers, overview=RelevanceOverview(result, explained))

    def _explain(self, ctx, model, composite, images, indices, labels, predicted, confidence, convs, settings):
        batch = ctx.options.batch_size
        classes = ctx.dataset.classes
        true_outputs = classes.true_outputs(labels)
        targets = torch.from_numpy(predicted).to(ctx.device)
        truths = torch.from_numpy(true_outputs).to(ctx.device)
        parts: dict[str, list] = {"logit": [], "input": [], "vanished": [], "layers": []}
        wrong = np.flatnonzero(true_outputs != predicted)
        with composite.context(model) as modified:  # registered once for every batch of the build
            for start in range(0, len(images), batch):
                x = images[start : start + batch]
                logit, relevance, layers = relevance_pass(modified, x, targets[start : start + batch], convs)
                parts["logit"].append(logit)
                parts["input"].append(relevance.sum(dim=1))
                parts["vanished"].append(vanished(relevance, logit, settings.tolerance))
                parts["layers"].append(layers)
            # Mistakes only: the relevance for the output of the class the model should have said.
            true_logits, true_relevance = logits_and_relevance_for(modified, images[wrong], truths[wrong])
        true_vanished = vanished(true_relevance, true_logits, settings.tolerance)
        true_of = {int(row): k for k, row in enumerate(wrong)}
        cams = grad_cam(ctx.model.module, convs[-1], images, targets) if convs else None
        with torch.no_grad(), recording(ctx.model.module, convs) as outputs:
            ctx.model.module(images)
            activations = dict(outputs)
        logits, inputs, gone = torch.cat(parts["logit"]), torch.cat(parts["input"]), torch.cat(parts["vanished"])
        true_inputs = true_relevance.sum(dim=1)
        layer_maps = {name: torch.cat([p[name] for p in parts["layers"]]) for name in convs}
        _, pictures = thumbnails(ctx.dataset, [int(i) for i in indices])
        explained = []
        for n in range(len(images)):
            k = true_of.get(n)
            total = float(inputs[n].sum())
            explained.append(
                ExplainedImage(
                    index=int(indices[n]),
                    name=ctx.dataset.names[int(indices[n])],
                    label=int(labels[n]),
                    predicted=int(predicted[n]),
                    true_output=int(true_outputs[n]),
                    predicted_name=classes.prediction_name(int(predicted[n])),
                    confidence=float(confidence[n]),
                    logit=float(logits[n]),
                    relevance_sum=total,
                    conservation=_ratio(total, float(logits[n])),
                    vanished=bool(gone[n]),
                    border_share=border_share(inputs[n]),
                    true_conservation=_ratio(float(true_inputs[k].sum()), float(true_logits[k])) if k is not None else None,
                    true_vanished=bool(true_vanished[k]) if k is not None else None,
                    filter_relevance={l: layer_maps[l][n].sum(dim=(1, 2)).tolist() for l in convs},
                    thumbnail=pictures[n],
                    heatmap=inputs[n].cpu().numpy(),
                    true_heatmap=true_inputs[k].cpu().numpy() if k is not None else None,
                    gradcam=cams[n] if cams is not None else None,
                    layer_heatmaps={l: _small(layer_maps[l][n].sum(dim=0)[None])[0] for l in convs},
                    activation_maps={l: _top_channels(activations[l][n], settings.activation_maps) for l in convs},
                )
            )
        return explained


def border_share(heatmap: torch.Tensor) -> float | None:
    """The share of an H×W map's positive relevance on its border band (BORDER_BAND of each side):
    relevance on the frame rather than on the object is how a shortcut often shows."""
    positive = heatmap.clamp(min=0)
    total = float(positive.sum())
    if total <= 0:
        return None
    height, width = positive.shape
    rows, cols = max(1, math.ceil(BORDER_BAND * height)), max(1, math.ceil(BORDER_BAND * width))
    inside = positive[rows : height - rows, cols : width - cols]
    return (total - float(inside.sum())) / total


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole != 0 else None


def _top_channels(activation: torch.Tensor, count: int) -> ActivationMaps:
    means = activation.mean(dim=(1, 2))
    top = torch.argsort(means, descending=True)[:count]
    maps = activation[top].clamp(min=0)
    peak = maps.flatten(1).amax(dim=1).clamp(min=1e-12)[:, None, None]
    scaled = _small(maps / peak * 255.0).clip(0, 255).round().astype(np.uint8)
    return ActivationMaps(channels=top.tolist(), means=means[top].tolist(), maps=scaled)


def _ranking(layer: str, images: list[ExplainedImage], top: int) -> LayerRanking:
    images = [image for image in images if not image.vanished]  # their shares would be rounding noise
    if not images:
        return LayerRanking(layer=layer, ranking=[], scores=[], cumulative=[], per_class={})
    shares = []
    for image in images:
        scores = np.array(image.filter_relevance[layer])
        total = scores.sum()
        shares.append(scores / total if total != 0 else np.zeros_like(scores))
    mean = np.mean(shares, axis=0)
    order = np.argsort(-mean, kind="stable")
    per_class = {}
    for label in sorted({image.label for image in images}):
        members = [s for s, image in zip(shares, images) if image.label == label and image.correct]
        if members:
            per_class[label] = np.argsort(-np.mean(members, axis=0), kind="stable")[:top].tolist()
    return LayerRanking(
        layer=layer,
        ranking=order.tolist(),
        scores=mean[order].tolist(),
        cumulative=np.cumsum(mean[order]).tolist(),
        per_class=per_class,
    )


@dataclass(frozen=True)
class ExplainedView:
    result: ExplainedImage
    anchor: str
    picture: Sprite
    heatmap: Sprite | None  # LRP relevance over the image; None when it vanished
    gradcam: Sprite | None
    true_heatmap: Sprite | None  # for a mistake: relevance for the true class, unless it vanished


@dataclass(frozen=True)
class RelevanceOverview:
    result: RelevanceResult
    explained: list[ExplainedView]


@dataclass(frozen=True)
class LayerImageRow:
    image: ExplainedImage
    picture: Sprite
    heatmap: Sprite | None  # this layer's relevance, summed over channels; None when it vanished
    activations: list[tuple[int, Sprite]]  # (channel, picture) of the strongest channels


@dataclass(frozen=True)
class LayerRelevanceView:
    ranking: LayerRanking
    curve: str
    rows: list[LayerImageRow]
    explained: int  # images the ranking averages over (those whose relevance did not vanish)


def _explained_view(n: int, image: ExplainedImage, kit: ViewKit) -> ExplainedView:
    def picture(pixels: np.ndarray) -> Sprite:
        return kit.pictures.sprite(pixels, "relevance")

    return ExplainedView(
        result=image,
        anchor=f"image-{n}",
        picture=picture(image.thumbnail),
        heatmap=picture(overlay(image.thumbnail, image.heatmap)) if not image.vanished else None,
        gradcam=picture(overlay(image.thumbnail, image.gradcam, signed=False)) if image.gradcam is not None else None,
        true_heatmap=picture(overlay(image.thumbnail, image.true_heatmap))
        if image.true_heatmap is not None and not image.true_vanished else None,
    )


def _layer_view(ranking: LayerRanking, result: RelevanceResult, explained: list[ExplainedView], kit: ViewKit) -> LayerRelevanceView:
    layer, group = ranking.layer, f"relevance-{kit.slug(ranking.layer)}"
    rows = []
    for view in explained:
        image = view.result
        size = image.thumbnail.shape[:2]
        heatmap = None if image.vanished else kit.pictures.sprite(signed_heatmap(image.layer_heatmaps[layer], size), group)
        maps = image.activation_maps[layer]
        activations = [
            (channel, kit.pictures.sprite(grey_map(values, size), group)) for channel, values in zip(maps.channels, maps.maps)
        ]
        rows.append(LayerImageRow(image, kit.pictures.sprite(image.thumbnail, group), heatmap, activations))
    curve = kit.pictures.chart(cumulative_curve(ranking.cumulative, layer), f"relevance-{kit.slug(layer)}-curve")
    return LayerRelevanceView(ranking, curve, rows, len(result.images) - result.vanished)


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
