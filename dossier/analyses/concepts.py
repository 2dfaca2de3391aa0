"""User concepts (METHODS §9; Kim et al. 2018, TCAV) and the concept labels of units.

A concept is a folder of example images the user gives (`analyses.concepts.folders`). In a layer's
activations, the concept activation vector (CAV) is the direction in which the concept's images
differ from random counterexamples: the difference of their mean activation vectors (the
"pattern" CAV of Pahde et al. 2022). TCAV's original CAV, the normal of a linear classifier, is
a filter: with correlated features it points away from the concept's own direction, and on the
planted shortcut of tests/test_concepts.py it missed the mark the model relies on, which the
pattern finds in every layer. The CAV's accuracy is how well it sorts held-out images (a third of
each set) by projecting them on it, as balanced accuracy (chance is 0.5 whatever the set sizes).

A class's TCAV score is the share of its images whose class logit grows along the CAV (a positive
directional derivative). One CAV is a noisy thing, so each concept gets one per random
counterexample set, and random "concepts" (one random set against the next) give the scores a
concept without meaning gets; a two-sided Welch t-test of the two lists, Bonferroni-corrected for
every concept × class × layer tested, decides what is significant, for a concept whose CAVs reach
`min_accuracy` in that layer. The gate matters: the runs share the concept's images, so a set of
random images, which by chance leans one way, gets consistent scores the t-test alone can mistake
for an effect; its CAVs, though, sort held-out images no better than chance. Insignificant scores
are shown as such and never reported as findings.

Concept labels: every unit of every conv layer is compared on the concept images and on the random
ones (its spatial mean, after its BatchNorm, as the galleries rank exemplars). The concept whose
images excite it most relative to random ones (Cohen's d) labels it when that concept's images
outrank random ones often enough (AUROC ≥ `label_auroc`).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from scipy import stats
from torch import nn

from dossier.analyses.base import HOOKS_UNSUPPORTED, NO_CONV_LAYERS, Analysis, BuildContext, register
from dossier.analyses.purity import reduce_activation
from dossier.capture import hooks
from dossier.classes import ClassMap
from dossier.data import ImageSet, files_sha256, image_files
from dossier.errors import ConfigError, DataError
from dossier.plan import Cost, Probe, Reduction
from dossier.report.kit import Column, CrossPage, SearchEntry, SectionView, UnitLabel, ViewKit
from dossier.report.pictures import CLASS_COLOURS, Sprite
from dossier.results import NOT_EXPORTED, ByLayer
from dossier.settings import SectionSettings
from dossier.thumbnails import thumbnail

AUTO_LAYERS = 4  # `layers: auto` tests the ends of the deepest this many stages
MIN_IMAGES = 4  # a concept or random set needs this many images: a CAV is fitted on 2/3 of them
_HELD_OUT = 1 / 3  # share of a CAV's images kept to measure its accuracy
_SHOWN_PICTURES = 8  # example images shown per concept
_CHART_CLASSES = 30  # past this many classes, a chart shows only the classes with a significant score
PAGE = CrossPage("concepts.html", "Concepts (TCAV)")


class ConceptsSettings(SectionSettings):
    folders: dict[str, str] = Field(
        default_factory=dict,
        description="concept name: folder of its example images; none by default (the section is off)",
        json_schema_extra={"example": {"stripes": "concepts/stripes"}},
    )
    random: str | None = Field(None, description="a folder of random counterexamples; null: drawn from the data set")
    layers: Literal["auto"] | list[str] = Field(
        "auto", description=f"or module names; auto: the last conv layer of each of the deepest {AUTO_LAYERS} stages"
    )
    runs: int = Field(30, ge=2, description="random counterexample sets: one CAV per concept and set, one random CAV each")
    random_images: int = Field(30, ge=MIN_IMAGES, description="images per random counterexample set")
    class_images: int = Field(50, ge=1, description="images per class whose directional derivatives are counted")
    min_accuracy: float = Field(0.7, ge=0.5, le=1, description="held-out accuracy a concept's CAVs need in a layer for its scores to count")
    alpha: float = Field(0.05, gt=0, lt=1, description="significance level, Bonferroni-corrected for every test made")
    max_features: int = Field(2048, gt=0, description="flatten a layer's activations up to this size, else avg-pool")
    label_auroc: float = Field(0.9, gt=0.5, le=1, description="how often a concept image must outrank a random one to label a unit")


@dataclass(frozen=True)
class Concept:
    name: str
    folder: str  # as configured
    images: int  # readable example images
    skipped: list[str]  # files that could not be read
    pictures: np.ndarray = field(metadata=NOT_EXPORTED)  # the first few, as thumbnails


@dataclass(frozen=True)
class TcavScore:
    concept: str
    class_index: int
    images: int  # the class's images whose directional derivatives were counted
    scores: list[float]  # per run: share of the images whose class logit grows along the concept's CAV
    random_scores: list[float]  # per run: the same along a random CAV
    p_value: float  # two-sided Welch t-test of scores against random_scores
    corrected: float  # Bonferroni: p × the number of tests, at most 1
    significant: bool  # corrected < alpha and the concept's CAVs reach min_accuracy in the layer

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def random_mean(self) -> float:
        return float(np.mean(self.random_scores))

    @property
    def direction(self) -> str:
        """What the concept does to the class, read only when significant."""
        return "raises" if self.mean > self.random_mean else "lowers"


@dataclass(frozen=True)
class LayerConcepts:
    layer: str
    representation: str  # how activations became vectors
    accuracy: dict[str, list[float]]  # concept -> held-out balanced accuracy of its CAV in each run
    random_accuracy: list[float]  # the same for the random CAVs
    represented: dict[str, bool]  # concept -> its mean accuracy reaches min_accuracy
    scores: list[TcavScore]

    def score(self, concept: str, class_index: int) -> TcavScore | None:
        return next((s for s in self.scores if s.concept == concept and s.class_index == class_index), None)


@dataclass(frozen=True)
class UnitConcept:
    layer: str
    unit: int
    concept: str
    score: float  # Cohen's d of the unit's activation on the concept's images against random ones
    auroc: float  # how often a concept image excites it more than a random one


@dataclass(frozen=True)
class ConceptsResult(ByLayer):
    concepts: list[Concept]
    random_source: str
    runs: int
    random_images: int  # in the smallest random set
    class_images: int
    class_names: list[str]
    min_accuracy: float
    alpha: float
    tests: int  # concept × class × layer tests the correction counts
    label_auroc: float
    layers: list[LayerConcepts]
    labelled_layers: list[str]  # conv layers whose units were compared with the concepts
    labels: list[UnitConcept]
    dead_skipped: int | None  # dead units (neuron types) never labelled; None: neuron types not computed

    @property
    def significant(self) -> list[tuple[LayerConcepts, TcavScore]]:
        return [(layer, s) for layer in self.layers for s in layer.scores if s.significant]


# Choosing and loading ------------------------------------------------------------------------


def stage_ends(layers: list, count: int = AUTO_LAYERS) -> list[str]:
    """The last conv layer before each change of output resolution (the end of each stage), the
    deepest `count` of them: where a network's representations settle before it downsamples."""
    ends: list[str] = []
    for layer, following in zip(layers, [*layers[1:], None]):
        if following is None or following.output_shape[1:] != layer.output_shape[1:]:
            ends.append(layer.name)
    return ends[-count:]


def image_folder(folder: Path, name: str, ctx: BuildContext) -> ImageSet:
    """A folder of images prepared like the data set (resized, converted, normalised)."""
    paths = image_files(folder)
    spec = ctx.config.model
    return ImageSet(
        classes=ClassMap([name], [0], [name], "a concept folder"), labels=np.zeros(len(paths), dtype=np.int64),
        names=[str(p.relative_to(folder)) for p in paths],
        input_size=spec.input_size, mean=spec.channel_mean, std=spec.channel_std, fingerprint=_folder_sha256(paths),
        source=str(folder), _paths=paths,
    )


def _folder_sha256(paths: list[Path]) -> str:
    """A concept folder's fingerprint: its files' names and bytes."""
    return files_sha256([path.name for path in paths], paths)


def readable(images: ImageSet, indices: list[int] | np.ndarray | range) -> tuple[list[int], torch.Tensor]:
    """The readable images among indices: (their indices, N×C×H×W normalised)."""
    kept, tensors = [], []
    for index in indices:
        item = images[int(index)]
        if item is not None:
            kept.append(int(index))
            tensors.append(item[0])
    return kept, torch.stack(tensors) if tensors else torch.zeros(0, *images.input_size)


def class_sample(labels: np.ndarray, per_class: int, seed: int) -> dict[int, np.ndarray]:
    """Up to per_class data-set indices of each class, drawn at random, in data-set order."""
    rng = np.random.default_rng(seed)
    sample = {}
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        sample[int(c)] = np.sort(rng.choice(members, min(per_class, len(members)), replace=False))
    return sample


def sample_size(labels: np.ndarray, per_class: int) -> int:
    """How many images class_sample draws."""
    return int(np.minimum(np.unique(labels, return_counts=True)[1], per_class).sum())


# Activations and gradients -------------------------------------------------------------------


@dataclass
class Codes:
    """What a set of images does in the model: per tested layer their activation vectors, per conv
    layer each unit's spatial mean (after its BatchNorm where one reads the layer)."""

    indices: list[int]  # the readable images, in order
    vectors: dict[str, np.ndarray]
    representation: dict[str, str]
    means: dict[str, np.ndarray]


def layer_codes(
    model: nn.Module, images: ImageSet, indices: list[int] | np.ndarray | range, tested: list[str], convs: list[str],
    max_features: int, norms: dict, batch: int,
) -> Codes:
    """The Codes of images[indices], read and run in batches."""
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in tested}
    means: dict[str, list[np.ndarray]] = {name: [] for name in convs}
    how: dict[str, str] = {}
    kept: list[int] = []
    device = next(model.parameters()).device
    indices = list(indices)
    with torch.no_grad():
        for start in range(0, len(indices), batch):
            readable_here, x = readable(images, indices[start : start + batch])
            if not readable_here:
                continue
            kept += readable_here
            outputs = _outputs(model, x.to(device), list(dict.fromkeys([*tested, *convs])))
            for name in tested:
                reduced, how[name] = reduce_activation(outputs[name], max_features)
                vectors[name].append(reduced.cpu().numpy().astype(np.float64))
            for name in convs:
                unit = norms[name][1](outputs[name]) if name in norms else outputs[name]
                means[name].append(unit.flatten(2).mean(dim=2).cpu().numpy().astype(np.float64))
    return Codes(
        kept,
        {name: np.concatenate(parts) for name, parts in vectors.items() if parts},
        how,
        {name: np.concatenate(parts) for name, parts in means.items() if parts},
    )


def _outputs(model: nn.Module, images: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    """Each layer's output, copied before anything after it changes it in place (ReLU(inplace))."""
    outputs: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            outputs[name] = output.detach().clone()

        return hook

    with hooks(model, {name: keep(name) for name in layers}):
        model(images)
    return outputs


def class_gradients(
    model: nn.Module, images: torch.Tensor, outputs: torch.Tensor, layers: list[str], max_features: int
) -> dict[str, np.ndarray]:
    """Per layer: the gradient of each image's own class logit (model output `outputs[n]`) with
    respect to the layer's output,
    reduced like the activations. reduce_activation is linear (flatten or average-pool), so the
    reduced gradient · a CAV is the directional derivative along the CAV taken back to the layer."""
    gradients: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            # A tensor hook sees the gradient of the output as it was, even when changed in place later.
            output.register_hook(lambda grad: gradients.__setitem__(name, grad.detach()))

        return hook

    with hooks(model, {name: keep(name) for name in layers}), torch.enable_grad():
        x = images.clone().requires_grad_(True)
        logits = model(x)
        chosen = F.one_hot(outputs, logits.shape[1]).to(logits)
        torch.autograd.grad(logits, x, grad_outputs=chosen)
    return {name: reduce_activation(gradients[name], max_features)[0].cpu().numpy().astype(np.float64) for name in layers}


# CAVs and their statistics -------------------------------------------------------------------


def train_cav(positive: np.ndarray, negative: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    """The unit-length difference of the mean activation vectors of positive (concept) and
    negative (random) images, fitted on 2/3 of each; and its balanced accuracy on the other third,
    each held-out vector projected on it and split at the midpoint of the two fitted means."""
    rng = np.random.default_rng(seed)
    (fit_pos, test_pos), (fit_neg, test_neg) = _split(positive, rng), _split(negative, rng)
    direction = fit_pos.mean(axis=0) - fit_neg.mean(axis=0)
    length = np.linalg.norm(direction)
    if length == 0:  # the two sets look the same to the layer (a dead layer): no direction, chance accuracy
        return direction, 0.5
    cav = direction / length
    threshold = (fit_pos.mean(axis=0) + fit_neg.mean(axis=0)) @ cav / 2
    return cav, float(((test_pos @ cav > threshold).mean() + (test_neg @ cav <= threshold).mean()) / 2)


def _split(vectors: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random 2/3 to fit on and the held-out rest (at least one of each)."""
    order = rng.permutation(len(vectors))
    held_out = max(1, round(len(vectors) * _HELD_OUT))
    return vectors[order[held_out:]], vectors[order[:held_out]]


def positive_counts(gradients: np.ndarray, labels: np.ndarray, cavs: np.ndarray, classes: list[int]) -> np.ndarray:
    """CAVs × classes: how many of each class's images have a class logit that grows along each
    CAV (divided by the class's images, the TCAV scores)."""
    positive = gradients @ cavs.T > 0  # images × CAVs
    return np.stack([positive[labels == c].sum(axis=0) for c in classes], axis=1).astype(np.float64)


def welch_p(scores: list[float] | np.ndarray, random_scores: list[float] | np.ndarray) -> float:
    """Two-sided Welch t-test of the two lists; two constant lists (TCAV scores often are) are
    equal (p = 1) or apart (p = 0), where the t statistic is undefined."""
    a, b = np.asarray(scores, dtype=float), np.asarray(random_scores, dtype=float)
    if a.var() + b.var() == 0:
        return 1.0 if a.mean() == b.mean() else 0.0
    with warnings.catch_warnings():
        # scipy warns of catastrophic cancellation on near-constant lists; its p is still right.
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def concept_labels(
    concept_means: dict[str, np.ndarray], random_means: np.ndarray, threshold: float, dead: set[int] | frozenset = frozenset()
) -> list[tuple[int, str, float, float]]:
    """(unit, concept, d, AUROC) for each unit some concept labels: of the concepts whose images
    outrank random ones with AUROC ≥ threshold, the one with the largest Cohen's d. Dead units
    get none: a unit the data never excites does not stand for a concept in this model, however
    a concept folder's images move it."""
    best: dict[int, tuple[str, float, float]] = {}
    for name, means in concept_means.items():
        d, auroc = effect_sizes(means, random_means)
        for unit in np.flatnonzero(auroc >= threshold):
            if int(unit) in dead:
                continue
            if unit not in best or d[unit] > best[unit][1]:
                best[int(unit)] = (name, float(d[unit]), float(auroc[unit]))
    return [(unit, *best[unit]) for unit in sorted(best)]


def effect_sizes(concept: np.ndarray, random: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per unit (column): Cohen's d of concept against random activations, and the AUROC (the
    Mann–Whitney U over both counts: how often a concept image outranks a random one)."""
    n, m = len(concept), len(random)
    pooled = np.sqrt(((n - 1) * concept.var(axis=0, ddof=1) + (m - 1) * random.var(axis=0, ddof=1)) / (n + m - 2))
    difference = concept.mean(axis=0) - random.mean(axis=0)
    d = np.divide(difference, pooled, out=np.zeros_like(difference), where=pooled > 0)
    ranks = stats.rankdata(np.concatenate([concept, random]), axis=0)
    auroc = (ranks[:n].sum(axis=0) - n * (n + 1) / 2) / (n * m)
    return d, auroc


@register
class Concepts(Analysis):
    name = "concepts"
    title = "Concepts (TCAV)"
    order = 65
    result_type = ConceptsResult
    settings_type = ConceptsSettings
    page = PAGE
    after = ("neuron_types",)  # its dead units are never labelled
    reductions = (
        Reduction("runs", (20, 10), "fewer random counterexample sets: TCAV's t-tests see fewer runs", rank=3),
        Reduction("class_images", (25,), "TCAV scores counted on fewer images per class", rank=3),
    )

    def applies(self, ctx: BuildContext) -> str | None:
        settings: ConceptsSettings = self.settings(ctx.config)
        if not settings.folders:
            return "no concepts are configured (analyses.concepts.folders names a folder of example images per concept)"
        if not ctx.hookable:
            return HOOKS_UNSUPPORTED
        if not ctx.conv_layers:
            return NO_CONV_LAYERS
        self._check(ctx, settings)
        return None

    def _check(self, ctx: BuildContext, settings: ConceptsSettings) -> None:
        """Bad folders or layer names stop the build before any work, naming the key."""
        keys = {f"analyses.concepts.folders.{name}": folder for name, folder in settings.folders.items()}
        if settings.random is not None:
            keys["analyses.concepts.random"] = settings.random
        for key, folder in keys.items():
            path = ctx.config.resolve(folder)
            if not path.is_dir():
                raise ConfigError(f"{key}: folder '{path}' not found")
            if len(image_files(path)) < MIN_IMAGES:
                raise DataError(f"{key}: '{path}' has fewer than {MIN_IMAGES} images (a CAV is fitted on 2/3 of them)")
        recorded = {layer.name for layer in ctx.recorded_layers}
        for layer in [] if settings.layers == "auto" else settings.layers:
            if layer not in recorded:
                raise ConfigError(f"analyses.concepts.layers: '{layer}' is not a recorded layer")

    def inputs(self, ctx: BuildContext) -> dict[str, str]:
        """The concept (and random) images, by their settings' keys: editing a folder recomputes the result."""
        settings: ConceptsSettings = self.settings(ctx.config)
        folders = {**{f"folders.{name}": folder for name, folder in settings.folders.items()},
                   **({"random": settings.random} if settings.random else {})}
        return {name: _folder_sha256(image_files(ctx.config.resolve(folder))) for name, folder in folders.items()}

    def cost(self, ctx: BuildContext, probe: Probe, settings: ConceptsSettings) -> Cost:
        concept_images = sum(len(image_files(ctx.config.resolve(folder))) for folder in settings.folders.values())
        pool = len(image_files(ctx.config.resolve(settings.random))) if settings.random else len(ctx.dataset)
        drawn = min(settings.random_images, pool)
        random_images = round(pool * (1 - (1 - drawn / pool) ** settings.runs))  # expected distinct images of the sets
        class_images = sample_size(ctx.dataset.labels, settings.class_images)
        forward, read = probe.forward_per_image(), probe.image_seconds()
        # a gradient pass (forward and backward) costs about three forward passes
        seconds = (concept_images + random_images) * (forward + read) + class_images * (3 * forward + read)
        return Cost(f"{concept_images + random_images:,} concept and random images, {class_images:,} class images",
                    seconds, shrink="analyses.concepts.runs, .class_images")

    def finish(self, ctx: BuildContext, consumer: None) -> ConceptsResult:
        settings: ConceptsSettings = self.settings(ctx.config)
        tested = stage_ends(ctx.conv_layers) if settings.layers == "auto" else list(settings.layers)
        convs = [layer.name for layer in ctx.conv_layers]

        def codes(images: ImageSet, indices) -> Codes:
            return layer_codes(ctx.model.module, images, indices, tested, convs, settings.max_features, ctx.conv_norms,
                               ctx.options.batch_size)

        concepts, concept_codes = [], {}
        for name, folder in settings.folders.items():
            found = image_folder(ctx.config.resolve(folder), name, ctx)
            concept_codes[name] = codes(found, range(len(found)))
            concepts.append(_concept(name, folder, found, concept_codes[name].indices))
        pool, source = self._random_pool(ctx, settings)
        random_sets = self._random_sets(pool, settings, ctx.config.seed)
        random_codes = codes(pool, np.unique(np.concatenate(random_sets)))
        rows = _rows_of(random_codes.indices, random_sets, pool.source)
        jobs = [
            (layer, {name: c.vectors[layer] for name, c in concept_codes.items()}, [random_codes.vectors[layer][r] for r in rows])
            for layer in tested
        ]
        fitted = ctx.map(_layer_cavs, jobs, cpu=True, desc="concept activation vectors")
        scores, counted = self._scores(ctx, settings, tested, fitted)
        tests = len(concepts) * len(counted) * len(tested)
        layers = [
            layer_result(layer, random_codes.representation[layer], fit, scores[layer], counted, list(concept_codes), tests,
                          settings)
            for layer, fit in zip(tested, fitted)
        ]
        dead = _dead_units(ctx)
        labels = [
            UnitConcept(layer, unit, concept, d, auroc)
            for layer in convs
            for unit, concept, d, auroc in concept_labels(
                {name: c.means[layer] for name, c in concept_codes.items()}, random_codes.means[layer], settings.label_auroc,
                (dead or {}).get(layer, frozenset()),
            )
        ]
        return ConceptsResult(
            concepts=concepts, random_source=source, runs=settings.runs, random_images=min(len(r) for r in rows),
            class_images=settings.class_images, class_names=list(ctx.dataset.class_names),
            min_accuracy=settings.min_accuracy, alpha=settings.alpha,
            tests=tests, label_auroc=settings.label_auroc, layers=layers, labelled_layers=convs, labels=labels,
            dead_skipped=None if dead is None else sum(len(dead.get(layer, ())) for layer in convs),
        )

    def _random_pool(self, ctx: BuildContext, settings: ConceptsSettings) -> tuple[ImageSet, str]:
        if settings.random is None:
            return ctx.dataset, f"drawn from the data set ({ctx.dataset.source})"
        return image_folder(ctx.config.resolve(settings.random), "random", ctx), f"the folder {settings.random}"

    def _random_sets(self, pool: ImageSet, settings: ConceptsSettings, seed: int) -> list[np.ndarray]:
        """`runs` random sets of pool indices, each without repeats (sets may share images when
        the pool is small)."""
        rng = np.random.default_rng(seed)
        size = min(settings.random_images, len(pool))
        return [np.sort(rng.choice(len(pool), size, replace=False)) for _ in range(settings.runs)]

    def _scores(
        self, ctx: BuildContext, settings: ConceptsSettings, layers: list[str], fitted: list[dict]
    ) -> tuple[dict[str, np.ndarray], dict[int, int]]:
        """Per layer: CAVs × classes TCAV scores, from the class images' gradients streamed in
        batches (only their signs along each CAV are kept); and the images counted per class."""
        sample = class_sample(ctx.dataset.labels, settings.class_images, ctx.config.seed)
        classes = sorted(sample)
        cavs = {layer: fit["cavs"] for layer, fit in zip(layers, fitted)}
        positive = {layer: np.zeros((len(cavs[layer]), len(classes))) for layer in layers}
        counted = dict.fromkeys(classes, 0)
        indices = np.concatenate([sample[c] for c in classes])
        for start in range(0, len(indices), ctx.options.batch_size):
            kept, images = readable(ctx.dataset, indices[start : start + ctx.options.batch_size])
            if not kept:
                continue
            labels = ctx.dataset.labels[kept]
            outputs = torch.from_numpy(ctx.dataset.classes.true_outputs(labels)).to(ctx.device)
            gradients = class_gradients(ctx.model.module, images.to(ctx.device), outputs, layers, settings.max_features)
            for c in classes:
                counted[c] += int((labels == c).sum())
            for layer in layers:
                positive[layer] += positive_counts(gradients[layer], labels, cavs[layer], classes)
        present = [c for c in classes if counted[c]]
        columns = [classes.index(c) for c in present]
        shares = {layer: positive[layer][:, columns] / np.array([counted[c] for c in present]) for layer in layers}
        return shares, {c: counted[c] for c in present}

    # Rendering ----------------------------------------------------------------------------

    def unit_labels(self, result: ConceptsResult, kit: ViewKit) -> list[UnitLabel]:
        return [
            UnitLabel(label.layer, label.unit, f"concept: {label.concept}", "concept", self.name, label.concept)
            for label in result.labels
        ]

    def view(self, result: ConceptsResult, kit: ViewKit) -> SectionView:
        charts = {layer.layer: kit.pictures.chart(tcav_chart(layer, result, kit), f"tcav-{kit.slug(layer.layer)}") for layer in result.layers}
        concepts = [
            ConceptView(concept, concept_anchor(concept.name), [kit.pictures.sprite(p, "concepts") for p in concept.pictures])
            for concept in result.concepts
        ]
        by_layer = {name: [label for label in result.labels if label.layer == name] for name in result.labelled_layers}
        layers = {
            name: ConceptsLayerView(result.for_layer(name), charts.get(name), by_layer.get(name, []), result)
            for name in dict.fromkeys([*result.labelled_layers, *(layer.layer for layer in result.layers)])
            if kit.slug(name) is not None
        }
        return SectionView(layers=layers, overview=ConceptsOverview(result, charts, concepts, by_layer))

    def columns(self, view: SectionView, kit: ViewKit) -> list[Column]:
        cells = {name: str(len(v.labels)) for name, v in view.layers.items() if name in view.overview.result.labelled_layers}
        return [Column("concept units", cells)]

    def search_entries(self, view: SectionView, kit: ViewKit) -> list[SearchEntry]:
        return [
            SearchEntry(f"concept {concept.name}", "page", f"{PAGE.filename}#{concept_anchor(concept.name)}", f"concept tcav {concept.name}")
            for concept in view.overview.result.concepts
        ]

    def finding(self, result: ConceptsResult) -> str | None:
        significant = result.significant
        if not significant:
            return (
                f"TCAV: none of the {result.tests} concept × class × layer tests is significant "
                f"(Bonferroni, α = {result.alpha:g}): no configured concept measurably drives a class."
            )
        significant.sort(key=lambda found: (found[1].direction != "raises", -abs(found[1].mean - found[1].random_mean)))
        shown = "; ".join(
            f"{s.concept} {s.direction} class {_class(result, s.class_index)} at {layer.layer} "
            f"({s.mean:.2f} against {s.random_mean:.2f} for random CAVs)"
            for layer, s in significant[:3]
        )
        more = f", and {len(significant) - 3} more" if len(significant) > 3 else ""
        return f"TCAV: {len(significant)} of {result.tests} concept × class × layer tests are significant (Bonferroni, α = {result.alpha:g}): {shown}{more}."


def _dead_units(ctx: BuildContext) -> dict[str, set[int]] | None:
    """Per conv layer, the units neuron types found dead (computed before this section: `after`);
    None when that section was not computed."""
    types = ctx.results.get("neuron_types")
    if types is None:
        return None
    return {layer.layer: {row.unit for row in layer.rows if row.dead} for layer in types.layers}


def _class(result: ConceptsResult, index: int) -> str:
    return result.class_names[index] if 0 <= index < len(result.class_names) else str(index)


def _concept(name: str, folder: str, found: ImageSet, kept: list[int]) -> Concept:
    if len(kept) < MIN_IMAGES:
        raise DataError(f"analyses.concepts.folders.{name}: fewer than {MIN_IMAGES} readable images in '{found.source}'")
    pictures = np.stack([thumbnail(found.image(i)) for i in kept[:_SHOWN_PICTURES]])
    return Concept(name, folder, len(kept), sorted(found.skipped), pictures)


def _rows_of(kept: list[int], sets: list[np.ndarray], source: str) -> list[np.ndarray]:
    """Each random set as rows of the readable images' codes."""
    row = {index: r for r, index in enumerate(kept)}
    rows = [np.array([row[int(i)] for i in chosen if int(i) in row], dtype=np.int64) for chosen in sets]
    if min(len(r) for r in rows) < MIN_IMAGES:
        raise DataError(f"analyses.concepts: fewer than {MIN_IMAGES} readable random counterexamples in a set drawn from {source}")
    return rows


def _layer_cavs(ctx: BuildContext, job: tuple[str, dict[str, np.ndarray], list[np.ndarray]]) -> dict:
    _layer, concepts, randoms = job
    return fit_cavs(concepts, randoms, ctx.config.seed)


def fit_cavs(concepts: dict[str, np.ndarray], randoms: list[np.ndarray], seed: int) -> dict:
    """One layer's CAVs (rows): each concept against each random set, then each random set
    against the next (the random CAVs); with their held-out accuracies."""
    cavs, accuracy = [], {}
    for name, vectors in concepts.items():
        accuracy[name] = []
        for k, negative in enumerate(randoms):
            cav, acc = train_cav(vectors, negative, seed + k)
            cavs.append(cav)
            accuracy[name].append(acc)
    random_accuracy = []
    for k, negative in enumerate(randoms):
        cav, acc = train_cav(randoms[(k + 1) % len(randoms)], negative, seed + k)
        cavs.append(cav)
        random_accuracy.append(acc)
    return {"cavs": np.stack(cavs), "accuracy": accuracy, "random_accuracy": random_accuracy}


def layer_result(
    layer: str, representation: str, fit: dict, shares: np.ndarray, counted: dict[int, int], concepts: list[str],
    tests: int, settings: ConceptsSettings,
) -> LayerConcepts:
    """The layer's TCAV scores (shares: CAVs × classes, rows as fit_cavs made them), each tested
    against the random CAVs' and corrected for `tests` tests."""
    runs = len(fit["random_accuracy"])
    random_rows = shares[len(concepts) * runs :]
    represented = {name: bool(np.mean(fit["accuracy"][name]) >= settings.min_accuracy) for name in concepts}
    scores = []
    for n, concept in enumerate(concepts):
        rows = shares[n * runs : (n + 1) * runs]
        for column, (c, images) in enumerate(counted.items()):
            p = welch_p(rows[:, column], random_rows[:, column])
            corrected = min(1.0, p * tests)
            scores.append(TcavScore(
                concept, c, images, rows[:, column].tolist(), random_rows[:, column].tolist(), p, corrected,
                represented[concept] and corrected < settings.alpha,
            ))
    return LayerConcepts(layer, representation, fit["accuracy"], fit["random_accuracy"], represented, scores)


def concept_anchor(name: str) -> str:
    return "concept-" + (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unnamed")


def tcav_chart(layer: LayerConcepts, result: ConceptsResult, kit: ViewKit) -> plt.Figure:
    """Mean TCAV score per class and concept (± spread over the runs); pale and hatched: not
    significant. A dark tick over each class: the random CAVs' mean."""
    concepts = [c.name for c in result.concepts]
    classes = sorted({s.class_index for s in layer.scores})
    if len(classes) > _CHART_CLASSES:
        classes = sorted({s.class_index for s in layer.scores if s.significant})
    width = min(11.0, max(5.5, 0.45 * len(classes) * max(1, len(concepts))))
    figure, axes = plt.subplots(figsize=(width, 3.0))
    bar = 0.8 / max(1, len(concepts))
    colours = [CLASS_COLOURS[(2 * n) % len(CLASS_COLOURS)] for n in range(len(concepts))]
    for x, c in enumerate(classes):
        for n, concept in enumerate(concepts):
            s = layer.score(concept, c)
            if s is not None:
                axes.bar(x - 0.4 + bar * (n + 0.5), s.mean, bar, yerr=np.std(s.scores), color=colours[n],
                         alpha=1.0 if s.significant else 0.3, hatch=None if s.significant else "//",
                         edgecolor=colours[n], ecolor="#555", capsize=2)
        random_mean = next((s.random_mean for s in layer.scores if s.class_index == c), None)
        if random_mean is not None:
            axes.plot([x - 0.42, x + 0.42], [random_mean] * 2, color="#222", linewidth=1.8)
    axes.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    axes.set_xticks(np.arange(len(classes)), [kit.class_name(c) for c in classes], fontsize=7,
                    rotation=60 if len(classes) > 12 else 0, ha="right" if len(classes) > 12 else "center")
    axes.set_ylim(0, 1.02)
    axes.set_ylabel("TCAV score")
    axes.set_xlabel(f"class ({layer.layer})")
    legend = [Patch(color=colour, label=concept) for concept, colour in zip(concepts, colours)]
    legend += [Patch(facecolor="white", edgecolor="#888", hatch="//", label="not significant"),
               Line2D([], [], color="#222", linewidth=1.8, label="random CAVs")]
    axes.legend(handles=legend, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    return figure


@dataclass(frozen=True)
class ConceptsLayerView:
    tcav: LayerConcepts | None  # None on a layer whose units were labelled but that was not tested
    chart: str | None
    labels: list[UnitConcept]
    run: ConceptsResult


@dataclass(frozen=True)
class ConceptView:
    concept: Concept
    anchor: str
    pictures: list[Sprite]  # its first example images


@dataclass(frozen=True)
class ConceptsOverview:
    result: ConceptsResult
    charts: dict[str, str]  # layer -> chart
    concepts: list[ConceptView]
    labels: dict[str, list[UnitConcept]]  # layer -> its labelled units
