"""What every analysis is: one section of the dossier, from its settings to its views.

Computing: settings (`analyses.<name>` in the config), `applies` (or the reason it does not), a
data-pass consumer and a typed result, cached by what it depends on. Rendering reads results only,
never tensors: the section's views, its template partial (`templates/analyses/<name>.html`), its
columns in the index's layer table, its search entries, what it says about units and its
sentence for the finding. The report walks the registry in `order`; nothing else names a section.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from dossier.capture import Consumer, PassOptions
from dossier.data import ImageSet
from dossier.layers import LayerInfo, batchnorm_after
from dossier.model_source import LoadedModel
from dossier.plan import Cost, Probe, Reduction
from dossier.report.kit import CheckResult, Column, CrossPage, SearchEntry, SectionView, UnitLabel, ViewKit
from dossier.settings import SectionSettings, StrictModel

if TYPE_CHECKING:
    from dossier.config import Config
    from dossier.distributed import ContextSpec, Executor


@dataclass
class BuildContext:
    """Everything an analysis may read: config, model, layers, data, the build's device and how
    its passes run, where its work runs, and the results computed before it (`after`)."""

    config: Config
    model: LoadedModel
    layers: list[LayerInfo]
    dataset: ImageSet
    device: torch.device
    options: PassOptions
    executor: Executor
    spec: ContextSpec
    results: dict[str, Any] = field(default_factory=dict)
    deadline: float | None = None  # wall-clock time (time.time()) the computing should end by, under a budget

    def reconfigure(self, config: Config) -> None:
        """Build with another config from now on (a budget's reduced settings): workers get it too."""
        from dossier.distributed import register_context

        self.config = config
        self.spec = dataclasses.replace(self.spec, config=config, token=uuid.uuid4().hex)
        register_context(self.spec, self)

    def map(self, function: Callable[[BuildContext, Any], Any], items: Sequence[Any], cpu: bool = False, desc: str = "") -> list:
        """function(ctx, item) for every item, here or on the cluster, in order. function must be
        a module-level function (it may travel to a worker, which rebuilds ctx); `cpu` marks
        numpy/scikit-learn work, run side by side with one BLAS thread each."""
        return self.executor.map(self.spec, function, items, cpu, desc)

    def imap(self, function: Callable[[BuildContext, Any], Any], items: Sequence[Any], desc: str = "") -> Iterator[Any]:
        """Like map (torch work), each result handed over in order as soon as it is there."""
        return self.executor.imap(self.spec, function, items, desc)

    @property
    def recorded_layers(self) -> list[LayerInfo]:
        return [layer for layer in self.layers if layer.recordable]

    @property
    def conv_layers(self) -> list[LayerInfo]:
        """Recorded Conv2d layers: the ones with units and kernels."""
        return [layer for layer in self.recorded_layers if layer.type == "Conv2d"]

    @property
    def classifier(self) -> str | None:
        """The last recorded layer when it is a Linear one: its input is the penultimate code."""
        recorded = self.recorded_layers
        if recorded and recorded[-1].type == "Linear" and not self.model.scripted:
            return recorded[-1].name
        return None

    @property
    def hookable(self) -> bool:
        return not self.model.scripted

    @functools.cached_property
    def conv_norms(self) -> dict[str, tuple[str, torch.nn.Module]]:
        """For each recorded conv layer, the BatchNorm reading its output (found once per build)."""
        convs = [layer.name for layer in self.conv_layers]
        return batchnorm_after(self.model.module, convs, self.config.model.input_size, self.device) if convs else {}


HOOKS_UNSUPPORTED = (
    "it records inner layers, and PyTorch cannot hook modules inside a TorchScript model "
    "(save it with torch.export and use model.export for the full analysis)"
)
NO_CONV_LAYERS = "the recorded layers include no Conv2d layer"


class Analysis(ABC):
    """One section of the dossier. Subclasses register themselves with @register."""

    name: ClassVar[str]
    title: ClassVar[str]
    order: ClassVar[int]  # position in the report: pages, PDF chapters, the layer page
    result_type: ClassVar[type]
    settings_type: ClassVar[type[SectionSettings]]
    page: ClassVar[CrossPage | None] = None  # the cross-layer page it adds a block to
    after: ClassVar[tuple[str, ...]] = ()  # analyses whose results finish() reads (ctx.results)
    reductions: ClassVar[tuple[Reduction, ...]] = ()  # cheaper settings a time budget may choose
    # Sections showing a card or row per unit; the lowest rank on a layer page owns `#unit-N`.
    unit_anchor_rank: ClassVar[int | None] = None
    # Sections whose pictures grow with the units; they show at most kit.unit_pictures per layer.
    unit_pictures: ClassVar[bool] = False
    # Thresholds of the checks it makes: fields of the config's flat `checks:` section.
    check_settings: ClassVar[type[StrictModel] | None] = None

    @property
    def template(self) -> str:
        return f"analyses/{self.name}.html"

    def settings(self, config: Config) -> Any:
        return getattr(config.analyses, self.name)

    # Computing ------------------------------------------------------------------------------

    def applies(self, ctx: BuildContext) -> str | None:
        """None when the analysis applies to this model and data, else the reason it does not."""
        return None

    def inputs(self, ctx: BuildContext) -> dict[str, str]:
        """Fingerprints of what the result reads besides the model, the data set and the settings
        (files a setting names, e.g. concept images): part of its cache key."""
        return {}

    def consumer(self, ctx: BuildContext) -> Consumer | None:
        """A running statistic fed by the single data pass; None for weight-only analyses."""
        return None

    @abstractmethod
    def finish(self, ctx: BuildContext, consumer: Any) -> Any:
        """Turn the consumer's statistic (None if it has none) into this analysis' result."""

    def cost(self, ctx: BuildContext, probe: Probe, settings: Any) -> Cost | None:
        """What finish() will take with these settings, from a few real steps the probe times
        (and remembers, so reduced settings are re-estimated for free). None: negligible."""
        return None

    # Rendering ------------------------------------------------------------------------------

    def unit_labels(self, result: Any, kit: ViewKit) -> list[UnitLabel]:
        return []

    def unit_rankings(self, result: Any) -> dict[str, list[int]]:
        """Per layer, units most important first (by this section's measure)."""
        return {}

    def view(self, result: Any, kit: ViewKit) -> SectionView:
        return SectionView()

    def columns(self, view: SectionView, kit: ViewKit) -> list[Column]:
        return []

    def search_entries(self, view: SectionView, kit: ViewKit) -> list[SearchEntry]:
        return []

    def finding(self, result: Any) -> str | None:
        """A sentence for the index's finding paragraph, written from the numbers."""
        return None

    def warning(self, result: Any) -> str | None:
        """A problem that makes the whole dossier misleading (a model guessing on this data),
        said at the top of every page and on the PDF cover."""
        return None

    def checks(self, result: Any, thresholds: Any, ctx: BuildContext) -> list[CheckResult]:
        """The release checks its result passes, warns or fails (thresholds: the config's checks)."""
        return []


REGISTRY: dict[str, type[Analysis]] = {}


def register(cls: type[Analysis]) -> type[Analysis]:
    REGISTRY[cls.name] = cls
    return cls


def ordered(names: Mapping[str, Any] | list[str] | None = None) -> list[type[Analysis]]:
    """Registered analyses in report order (only the named ones, when names are given)."""
    chosen = REGISTRY.values() if names is None else [REGISTRY[n] for n in dict.fromkeys(names) if n in REGISTRY]
    return sorted(chosen, key=lambda cls: cls.order)


def warnings(results: Mapping[str, Any]) -> list[str]:
    """The sections' warnings (Analysis.warning), in report order."""
    return [w for cls in ordered(results) if (w := cls().warning(results[cls.name]))]


def finding(results: Mapping[str, Any]) -> str | None:
    """The index's paragraph: each section's sentence, in report order."""
    sentences = [cls().finding(results[cls.name]) for cls in ordered(results)]
    return " ".join(s for s in sentences if s) or None
