"""TDA rings per conv layer (METHODS §8; seed 001 §4.2.3.2, Algorithm 6 and appendix parameters).

Every k×k kernel is a sample (mean-centred, scaled, flattened); a k-NN density filter drops the
sparsest; Mapper (kepler-mapper) with a PCA(3) lens, 5 cubes, 10% overlap and DBSCAN builds the
graph. The seed judged "ring" by eye; here it is a number: the lifetime of the most persistent H1
class of the filtered cloud (ripser) and the number of independent cycles of the Mapper graph.
"""

from __future__ import annotations

import base64
import io
import re
import warnings
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
from PIL import Image
from pydantic import Field
from sklearn.cluster import DBSCAN
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from dossier.analyses.base import Analysis, BuildContext, register
from dossier.analyses.kernel_clusters import ONE_BY_ONE_REASON, affine_estimate, spatial_kernels_reason, views_with_control
from dossier.plan import Cost, Probe, Reduction, side_by_side
from dossier.report.kit import Column, SectionView, ViewKit
from dossier.results import NOT_EXPORTED, ByLayer
from dossier.settings import SectionSettings
from dossier.weights import control_weights, conv_layer_weights

_TOOLTIP_PIXELS = 24
# kepler-mapper's page loads D3, FileSaver, a web font and an icon from the internet; a dossier
# must work offline, so those tags are replaced by the vendored copies or dropped.
_MAPPER_REMOTE = {
    re.compile(r'<script src="https://cdnjs\.cloudflare\.com/ajax/libs/d3/[^"]+"></script>'):
        '<script src="../vendor/d3.v6.min.js"></script>',
    re.compile(r'<script src="https://cdn\.jsdelivr\.net/npm/file-saver@[^"]+"></script>'):
        '<script src="../vendor/FileSaver.min.js"></script>',
    re.compile(r"<link href='https://fonts\.googleapis\.com[^>]*>"): "",
    re.compile(r'<link rel="icon"[^>]*>'): "",
}
_MAPPER_VENDOR = ("d3.v6.min.js", "d3.LICENSE.txt", "FileSaver.min.js")


class TdaRingsSettings(SectionSettings):
    max_kernels: int = Field(4000, ge=50, description="deterministic subsample of a layer's kernels above this")
    density_neighbors: int = Field(100, ge=2, description="k of the k-NN density filter")
    density_drop: float = Field(0.2, ge=0, lt=1, description="share of the sparsest kernels dropped")
    cubes: int = Field(5, ge=1, description="Mapper cover: intervals per PCA(3) lens dimension")
    overlap: float = Field(0.1, gt=0, lt=1, description="Mapper cover overlap")
    eps: dict[int, float] = Field(
        default_factory=lambda: {3: 0.5, 5: 2.0},
        description="DBSCAN eps by kernel size (seed); derived from the data if empty",
    )
    min_samples: int = Field(3, ge=1, description="DBSCAN min_samples")
    homology_points: int = Field(400, ge=20, description="ripser's greedy-permutation subsample")


@dataclass(frozen=True)
class MapperNode:
    node: str
    size: int
    mean_kernel: list[list[float]]


@dataclass(frozen=True)
class LayerRings:
    layer: str
    kernel: tuple[int, int]
    skipped: str | None
    kernels_total: int
    kernels_sampled: int  # after the deterministic subsample
    kernels_kept: int  # after the density filter
    eps: float
    eps_source: str
    nodes: list[MapperNode]
    edges: list[tuple[str, str]]
    components: int
    graph_cycles: int  # independent cycles of the Mapper graph: E − V + components
    ring_score: float  # lifetime of the most persistent H1 class
    second_lifetime: float
    homology_points: int
    explanation: str  # what an empty or trivial graph means, when it is one
    mapper_html: str = field(default="", metadata=NOT_EXPORTED)


@dataclass(frozen=True)
class TdaRingsResult(ByLayer):
    layers: list[LayerRings]
    control: LayerRings | None  # first conv layer, same architecture, random initialisation


def kernel_samples(weight: np.ndarray) -> np.ndarray:
    """Every k×k slice of every unit, mean-centred and scaled to unit variance, flattened.

    Constant kernels have no shape to place and are left out."""
    flat = weight.reshape(-1, weight.shape[2] * weight.shape[3])
    centred = flat - flat.mean(axis=1, keepdims=True)
    scale = centred.std(axis=1, keepdims=True)
    keep = scale[:, 0] > 1e-12
    return centred[keep] / scale[keep]


def density_filter(samples: np.ndarray, neighbors: int, drop: float) -> np.ndarray:
    """Drop the `drop` share of samples whose k-th neighbour is farthest (the sparsest)."""
    k = min(neighbors, len(samples) - 1)
    if k < 1 or drop <= 0:
        return samples
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(samples).kneighbors(samples)
    order = np.argsort(distances[:, -1], kind="stable")
    return samples[np.sort(order[: max(1, int(round(len(samples) * (1 - drop))))])]


def ring_lifetimes(samples: np.ndarray, points: int, seed: int) -> tuple[float, float, int]:
    """(longest, second longest) H1 lifetime, and the points used (greedy permutation subsample)."""
    from ripser import ripser

    used = min(points, len(samples))
    if used < 4:
        return 0.0, 0.0, used
    np.random.seed(seed)  # ripser's greedy permutation starts from a random point
    diagram = ripser(samples, maxdim=1, n_perm=used)["dgms"][1]
    lifetimes = np.sort(diagram[:, 1] - diagram[:, 0])[::-1] if len(diagram) else np.zeros(0)
    lifetimes = lifetimes[np.isfinite(lifetimes)]
    first = float(lifetimes[0]) if len(lifetimes) else 0.0
    second = float(lifetimes[1]) if len(lifetimes) > 1 else 0.0
    return first, second, used


def derived_eps(samples: np.ndarray, min_samples: int) -> float:
    """Median distance to the min_samples-th neighbour: half the kernels are DBSCAN core points."""
    k = min(min_samples, len(samples) - 1)
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(samples).kneighbors(samples)
    return float(np.median(distances[:, -1]))


def mapper_graph(samples: np.ndarray, eps: float, settings, seed: int) -> dict:
    import kmapper

    lens = PCA(n_components=min(3, samples.shape[1]), random_state=seed).fit_transform(samples)
    mapper = kmapper.KeplerMapper(verbose=0)
    cover = kmapper.Cover(n_cubes=settings.cubes, perc_overlap=settings.overlap)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mapper.map(lens, samples, cover=cover, clusterer=DBSCAN(eps=eps, min_samples=settings.min_samples))


def graph_cycles(nodes: list[str], edges: list[tuple[str, str]]) -> tuple[int, int]:
    """(connected components, independent cycles) of an undirected graph."""
    graph = nx.Graph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from(edges)
    components = nx.number_connected_components(graph) if nodes else 0
    return components, graph.number_of_edges() - graph.number_of_nodes() + components


def analyse_rings(name: str, weight: np.ndarray, settings, seed: int, interactive: bool = True) -> LayerRings:
    """Algorithm 6 on one layer's weights, plus the ring score."""
    height, width = weight.shape[2:]
    all_samples = kernel_samples(weight)
    base = dict(layer=name, kernel=(height, width), kernels_total=int(weight.shape[0] * weight.shape[1]))
    if height * width == 1:
        return _skipped(base, ONE_BY_ONE_REASON)
    if len(all_samples) < 10:
        return _skipped(base, f"only {len(all_samples)} non-constant kernels: too few for a shape")
    rng = np.random.default_rng(seed)
    sampled = all_samples
    if len(all_samples) > settings.max_kernels:
        sampled = all_samples[np.sort(rng.choice(len(all_samples), settings.max_kernels, replace=False))]
    kept = density_filter(sampled, settings.density_neighbors, settings.density_drop)
    eps, eps_source, graph = _graph_with_eps(kept, height, settings, seed)
    nodes = [
        MapperNode(node, len(members), kept[members].mean(axis=0).reshape(height, width).tolist())
        for node, members in sorted(graph["nodes"].items())
    ]
    edges = sorted({tuple(sorted((a, b))) for a, linked in graph["links"].items() for b in linked})
    components, cycles = graph_cycles([n.node for n in nodes], edges)
    score, second, points = ring_lifetimes(kept, settings.homology_points, seed)
    return LayerRings(
        **base,
        skipped=None,
        kernels_sampled=len(sampled),
        kernels_kept=len(kept),
        eps=eps,
        eps_source=eps_source,
        nodes=nodes,
        edges=[(a, b) for a, b in edges],
        components=components,
        graph_cycles=cycles,
        ring_score=score,
        second_lifetime=second,
        homology_points=points,
        explanation=_explain(nodes, edges),
        mapper_html=_mapper_html(graph, kept, name, height, width) if interactive and nodes else "",
    )


def _graph_with_eps(samples: np.ndarray, size: int, settings, seed: int) -> tuple[float, str, dict]:
    seed_eps = settings.eps.get(size)
    if seed_eps is not None:
        graph = mapper_graph(samples, seed_eps, settings, seed)
        if len(graph["nodes"]) >= 2:
            return seed_eps, f"seed default for {size}×{size} kernels", graph
        why = f"the seed's eps = {seed_eps} gave {len(graph['nodes'])} node(s)"
    else:
        why = f"the seed gives no eps for {size}×{size} kernels"
    eps = derived_eps(samples, settings.min_samples)
    source = f"derived from the data (median {settings.min_samples}-NN distance), because {why}"
    return eps, source, mapper_graph(samples, eps, settings, seed)


def _explain(nodes: list[MapperNode], edges: list) -> str:
    if not nodes:
        return ("DBSCAN found no cluster in any cube: the kernels are spread too thinly for this eps, "
                "so the Mapper graph is empty. The ring score still measures the cloud itself.")
    if len(nodes) == 1:
        return "All kernels fell into one cluster: the graph is a single node, with no structure to read."
    if not edges:
        return "The clusters share no kernels, so the graph has no edges: separate groups, no loop."
    return ""


def _mapper_html(graph: dict, samples: np.ndarray, name: str, height: int, width: int) -> str:
    import kmapper

    tooltips = np.array([_kernel_img_tag(s.reshape(height, width)) for s in samples])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return kmapper.KeplerMapper(verbose=0).visualize(
            graph,
            title=f"{name}: channel-wise kernels",
            custom_tooltips=tooltips,
            save_file=False,
            X_names=[f"w{i}" for i in range(samples.shape[1])],
        )


def _kernel_img_tag(kernel: np.ndarray) -> str:
    low, high = kernel.min(), kernel.max()
    grey = np.zeros_like(kernel) if high <= low else (kernel - low) / (high - low)
    image = Image.fromarray(np.round(grey * 255).astype(np.uint8)).resize(
        (_TOOLTIP_PIXELS, _TOOLTIP_PIXELS), Image.Resampling.NEAREST
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f'<img src="data:image/png;base64,{encoded}" width="{_TOOLTIP_PIXELS}" height="{_TOOLTIP_PIXELS}">'


def _skipped(base: dict, reason: str) -> LayerRings:
    return LayerRings(
        **base, skipped=reason, kernels_sampled=0, kernels_kept=0, eps=0.0, eps_source="", nodes=[],
        edges=[], components=0, graph_cycles=0, ring_score=0.0, second_lifetime=0.0, homology_points=0,
        explanation="",
    )


@register
class TdaRings(Analysis):
    name = "tda_rings"
    title = "TDA rings"
    order = 40
    result_type = TdaRingsResult
    settings_type = TdaRingsSettings
    reductions = (Reduction("max_kernels", (2000, 1000), "TDA rings on a smaller deterministic sample of kernels", rank=3),)

    def applies(self, ctx: BuildContext) -> str | None:
        return spatial_kernels_reason(ctx)

    def cost(self, ctx: BuildContext, probe: Probe, settings: TdaRingsSettings) -> Cost:
        weights = [w for _, w in conv_layer_weights(ctx.model.module, [layer.name for layer in ctx.layers])]
        spatial = [w for w in weights if w.shape[2] * w.shape[3] > 1]

        def kernels(w: np.ndarray) -> int:
            return min(w.shape[0] * w.shape[1], settings.max_kernels)

        # the k-NN density filter grows with kernels²; ripser's fixed subsample adds about a constant
        tasks = affine_estimate(probe, ("tda rings", settings.max_kernels), spatial, lambda w: kernels(w) ** 2,
                                lambda w: analyse_rings("probe", w, settings, ctx.config.seed, interactive=True))
        tasks += tasks[:1]  # the random-init control of the first layer
        work = f"{len(spatial)} layers, {sum(kernels(w) for w in spatial):,} kernels"
        return Cost(work, side_by_side(tasks, ctx.executor.workers), shrink="analyses.tda_rings.max_kernels")

    def finish(self, ctx: BuildContext, consumer: None) -> TdaRingsResult:
        names = [layer.name for layer in ctx.layers]
        control = control_weights(ctx.model.module, names, ctx.config.seed)
        jobs = [(name, weight, True) for name, weight in conv_layer_weights(ctx.model.module, names)]
        jobs += [(*control, False)] if control else []  # the control needs no interactive page
        layers = ctx.map(_layer_rings, jobs, cpu=True, desc="TDA rings")
        return TdaRingsResult(layers[: len(layers) - bool(control)], layers[-1] if control else None)

    def view(self, result: TdaRingsResult, kit: ViewKit) -> SectionView:
        return SectionView(layers=views_with_control(result.layers, result.control, _rings_view, kit))

    def columns(self, view: SectionView, kit: ViewKit) -> list[Column]:
        return [
            Column("ring score", {n: f"{v.result.ring_score:.3f}" for n, v in view.layers.items() if not v.result.skipped})
        ]


def _layer_rings(ctx: BuildContext, job: tuple[str, np.ndarray, bool]) -> LayerRings:
    name, weight, interactive = job
    return analyse_rings(name, weight, ctx.config.analyses.tda_rings, ctx.config.seed, interactive)


@dataclass(frozen=True)
class RingsView:
    result: LayerRings
    picture: str | None  # the static Mapper graph
    mapper_page: str | None  # the interactive kepler-mapper page
    control: "RingsView | None" = None  # the same layer at random initialisation


def _rings_view(entry: LayerRings, slug: str, kit: ViewKit, control: RingsView | None = None) -> RingsView:
    if entry.skipped or not entry.nodes:
        return RingsView(entry, None, None, control)
    nodes = [(n.node, n.size, np.array(n.mean_kernel)) for n in entry.nodes]
    picture = kit.pictures.chart(mapper_picture(nodes, entry.edges, seed=0), f"mapper-{slug}")
    page = None
    if entry.mapper_html:
        for name in _MAPPER_VENDOR:
            kit.vendor(name)
        page = kit.text_asset(f"assets/mapper/{slug}.html", offline_mapper_html(entry.mapper_html))
    return RingsView(entry, picture, page, control)


def offline_mapper_html(html: str) -> str:
    """kepler-mapper's page with every remote resource replaced by a vendored file or removed."""
    for pattern, replacement in _MAPPER_REMOTE.items():
        html = pattern.sub(replacement, html)
    if re.search(r"""(src|href)=["']https?://""", html):
        raise ValueError("kepler-mapper's page still loads a remote resource")
    return html


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
