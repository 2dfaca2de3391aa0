"""Probes per layer (METHODS §7; seed 003): how well simple "interpreters" read the class from a
layer's code vectors. Cross-validated accuracy of logistic regression (the linear probe), a linear
SVM and a random forest, by depth, against chance."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from pydantic import Field
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from dossier.analyses.base import Analysis, BuildContext, register
from dossier.analyses.commute import ACTIVATION_SPACE
from dossier.analyses.purity import INPUT_LAYER, FeatureCollector, balanced_count, code_sizes
from dossier.plan import Cost, Probe, Reduction, random_codes, side_by_side
from dossier.report.kit import Column, SectionView, ViewKit
from dossier.report.pictures import lines_by_depth
from dossier.results import ByLayer
from dossier.sampling import balanced_sample
from dossier.settings import SectionSettings

PROBES = ("logistic regression", "linear SVM", "random forest")
# A layer within this much of the best layer's linear-probe accuracy counts as "readable".
READABLE_MARGIN = 0.05


class ProbesSettings(SectionSettings):
    sample: int = Field(2000, ge=10, description="class-balanced images")
    folds: int = Field(5, ge=2, description="cross-validation folds")
    max_features: int = Field(2048, gt=0, description="flatten up to this size, else avg-pool")
    max_dim: int = Field(256, ge=2, description="PCA components the probes read at most")
    trees: int = Field(50, ge=1, description="random-forest trees")


@dataclass(frozen=True)
class LayerProbes:
    layer: str
    features: int
    reduced_to: int  # PCA components the probes read (≤ features)
    accuracy: dict[str, float]  # probe -> mean cross-validated accuracy
    spread: dict[str, float]  # probe -> standard deviation over the folds


@dataclass(frozen=True)
class ProbesResult(ByLayer):
    images: int
    folds: int
    chance: float
    layers: list[LayerProbes]  # the input first


def make_probes(seed: int, trees: int) -> dict[str, object]:
    return {
        "logistic regression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
        "linear SVM": make_pipeline(StandardScaler(), LinearSVC(C=0.1, dual="auto", max_iter=1000)),
        "random forest": RandomForestClassifier(n_estimators=trees, random_state=seed, n_jobs=1),
    }


def probe_layer(name: str, vectors: np.ndarray, labels: np.ndarray, folds: int, max_dim: int, trees: int, seed: int) -> LayerProbes:
    """Cross-validated accuracy of each probe; vectors above max_dim are reduced by PCA first
    (unsupervised, so no label leaks into it)."""
    reduced = vectors
    if vectors.shape[1] > max_dim:
        reduced = PCA(n_components=min(max_dim, len(vectors) - 1), random_state=seed).fit_transform(vectors)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    accuracy, spread = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for probe, model in make_probes(seed, trees).items():
            fold_scores = cross_val_score(model, reduced, labels, cv=splitter)
            accuracy[probe], spread[probe] = float(fold_scores.mean()), float(fold_scores.std())
    return LayerProbes(name, int(vectors.shape[1]), int(reduced.shape[1]), accuracy, spread)


@register
class Probes(Analysis):
    name = "probes"
    title = "Probes"
    order = 80
    result_type = ProbesResult
    settings_type = ProbesSettings
    page = ACTIVATION_SPACE
    reductions = (
        Reduction("sample", (1000, 500), "probes read a smaller class-balanced sample", rank=3),
        Reduction("trees", (20,), "a smaller random forest", rank=3),
    )

    def applies(self, ctx: BuildContext) -> str | None:
        counts = np.bincount(ctx.dataset.labels)
        if counts[counts > 0].min() < 2:  # the class-balanced sample then holds one image per class
            return "a class has a single image, so the class-balanced sample has one per class: too few to cross-validate"
        return None

    def consumer(self, ctx: BuildContext) -> FeatureCollector:
        settings = self.settings(ctx.config)
        keep = balanced_sample(ctx.dataset.labels, settings.sample, ctx.config.seed)
        return FeatureCollector([layer.name for layer in ctx.recorded_layers], settings.max_features, keep)

    def cost(self, ctx: BuildContext, probe: Probe, settings: ProbesSettings) -> Cost:
        images = balanced_count(ctx.dataset.labels, settings.sample)
        classes = len(ctx.dataset.class_names)
        sizes = code_sizes(ctx, settings.max_features)
        folds = max(2, min(settings.folds, images // max(1, classes)))
        codes, labels = random_codes(images, max(sizes), classes, ctx.config.seed)
        widest = probe.cpu_seconds(("probes", images, max(sizes), settings.trees, folds), lambda: probe_layer(
            "probe", codes, labels, folds, settings.max_dim, settings.trees, ctx.config.seed
        ))
        tasks = [widest * min(1.0, max(size, 16) / min(max(sizes), settings.max_dim)) for size in sizes]
        work = f"{len(sizes)} layers × 3 probes × {folds} folds on {images:,} images"
        return Cost(work, side_by_side(tasks, ctx.executor.workers), shrink="analyses.probes.sample, .trees")

    def finish(self, ctx: BuildContext, consumer: FeatureCollector) -> ProbesResult:
        settings = self.settings(ctx.config)
        labels = np.concatenate(consumer.labels)
        folds = max(2, min(settings.folds, int(np.bincount(labels).min())))
        jobs = [
            (name, np.concatenate(consumer.features[name]), labels, folds)
            for name in [INPUT_LAYER, *consumer.layer_names]
            if consumer.features[name]
        ]
        layers = ctx.map(_layer_probes, jobs, cpu=True, desc="probes")
        return ProbesResult(
            images=len(labels), folds=folds, chance=float(np.bincount(labels).max() / len(labels)), layers=layers
        )

    def view(self, result: ProbesResult, kit: ViewKit) -> SectionView:
        layers = {entry.layer: entry for entry in result.layers if kit.slug(entry.layer) is not None}
        chart = None
        if result.layers:
            series = {probe: [e.accuracy[probe] for e in result.layers] for probe in PROBES}
            intervals = {probe: [1.96 * e.spread[probe] / result.folds**0.5 for e in result.layers] for probe in PROBES}
            figure = lines_by_depth(
                [e.layer for e in result.layers], series, result.chance, "cross-validated accuracy",
                "layer ('input' = raw pixels)", errors=intervals,
            )
            chart = kit.pictures.chart(figure, "probes-by-depth")
        return SectionView(layers=layers, overview=ProbesOverview(result, chart))

    def columns(self, view: SectionView, kit: ViewKit) -> list[Column]:
        return [Column("linear probe", {n: f"{e.accuracy[PROBES[0]]:.3f}" for n, e in view.layers.items()})]

    def finding(self, result: ProbesResult) -> str | None:
        if len(result.layers) < 2:
            return None
        linear = [(entry.layer, entry.accuracy[PROBES[0]]) for entry in result.layers]
        best_layer, best = max(linear[1:], key=lambda item: item[1])  # the first of ties
        pixels = linear[0][1]
        if best < result.chance + READABLE_MARGIN:
            return (
                f"No recorded layer makes the class linearly readable: the logistic-regression probe's best "
                f"accuracy, {best:.1%} at {best_layer}, is close to chance ({result.chance:.1%})."
            )
        if best < pixels + READABLE_MARGIN:
            return (
                f"No recorded layer makes the class more linearly readable than the raw pixels: the "
                f"logistic-regression probe reads {pixels:.1%} from the pixels and at most {best:.1%} "
                f"from a layer ({best_layer}; chance {result.chance:.1%})."
            )
        first, readable = next((layer, value) for layer, value in linear[1:] if value >= best - READABLE_MARGIN)
        return (
            f"The class becomes linearly readable at {first}: the logistic-regression probe's accuracy rises from "
            f"{pixels:.1%} on the raw pixels to {readable:.1%} there (best {best:.1%}; chance {result.chance:.1%})."
        )


def _layer_probes(ctx: BuildContext, job: tuple) -> LayerProbes:
    name, vectors, labels, folds = job
    settings = ctx.config.analyses.probes
    return probe_layer(name, vectors, labels, folds, settings.max_dim, settings.trees, ctx.config.seed)


@dataclass(frozen=True)
class ProbesOverview:
    result: ProbesResult
    chart: str | None
