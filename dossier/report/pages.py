"""The structure of a dossier: pages assembled by walking the registry, shared by the site and
the PDF.

Each section builds its own views (and writes its pictures) from its result; this module only
orders them: one page per layer with every section that has something for it, the cross-layer
pages the sections declare, the index's layer table from their columns, and a stated reason for
every section that did not apply or failed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from dossier.analyses import ordered
from dossier.analyses.base import Analysis
from dossier.layers import LayerInfo
from dossier.plan import Plan
from dossier.provenance import Provenance, Stopwatch
from dossier.report.kit import (
    CheckResult,
    Column,
    CrossPage,
    ExtraPage,
    SearchEntry,
    SectionView,
    UnitLabel,
    ViewKit,
    layer_filename,
)

GROUP_LIMIT = 12  # layers a navigation group may hold before it splits by the next name part


@dataclass
class SectionEntry:
    """One section as the report shows it: its view, or why there is none."""

    name: str
    title: str
    template: str
    page: CrossPage | None
    status: str  # "shown", "not applicable" or "failed"
    reason: str | None = None
    view: SectionView | None = None
    finding: str | None = None  # its sentence of the finding paragraph
    warning: str | None = None  # see Analysis.warning

    def layer(self, name: str) -> Any:
        return self.view.layers.get(name) if self.view else None


@dataclass
class LayerPage:
    info: LayerInfo
    depth: int
    filename: str
    previous: "LayerPage | None" = None
    next: "LayerPage | None" = None


@dataclass
class Report:
    """Everything both renderings show."""

    title: str
    author: str | None
    provenance: Provenance
    class_names: list[str]
    layers: list[LayerPage]
    sections: list[SectionEntry]
    columns: list[Column]  # the sections' columns in the index's layer table
    search: list[SearchEntry]  # the sections' search entries
    labels: dict[tuple[str, int], list[UnitLabel]]
    finding: str | None
    unit_owner: dict[str, str] = field(default_factory=dict)  # layer -> section whose card is `#unit-N`
    plan: Plan | None = None  # the estimate the build was made with, and what the budget reduced
    checks: list[CheckResult] = field(default_factory=list)
    pdf_name: str | None = "dossier.pdf"
    size_mb: float = 0.0  # the site as written
    print_units: int | None = None  # pictures per layer section in the PDF, when its size budget says so

    @property
    def untrained(self) -> bool:
        return not self.provenance.trained

    @property
    def warnings(self) -> list[str]:
        return [s.warning for s in self.sections if s.warning]

    @property
    def model_card(self) -> Any:
        return self.section("model_card").view.overview

    @property
    def pages(self) -> list[CrossPage]:
        """The cross-layer pages, in the order of the first section showing on each."""
        return list(dict.fromkeys(s.page for s in self.sections if s.page is not None and s.status == "shown"))

    @property
    def unavailable(self) -> list[SectionEntry]:
        return [s for s in self.sections if s.status != "shown"]

    def section(self, name: str) -> SectionEntry:
        return next(s for s in self.sections if s.name == name)

    def sections_on(self, page: CrossPage) -> list[SectionEntry]:
        return [s for s in self.sections if s.page == page]

    def finding_on(self, page: CrossPage) -> str | None:
        """The finding sentences of the sections on a cross-layer page."""
        return " ".join(s.finding for s in self.sections_on(page) if s.finding) or None

    def scripts_on(self, page: CrossPage) -> list[str]:
        return [src for s in self.sections_on(page) if s.view for src in s.view.scripts]

    def class_name(self, index: int | None) -> str:
        if index is None:
            return "—"
        return self.class_names[index] if 0 <= index < len(self.class_names) else str(index)

    def labels_for(self, layer: str, unit: int, exclude: str | None = None) -> list[UnitLabel]:
        return [label for label in self.labels.get((layer, unit), []) if label.section != exclude]

    def unit_id(self, section: str, layer: str, unit: int) -> str:
        """`unit-N` for the section owning a layer's unit anchors, `<section>-unit-N` for the others."""
        return f"unit-{unit}" if self.unit_owner.get(layer) == section else f"{section}-unit-{unit}"

    def unit_href(self, layer: str, unit: int) -> str | None:
        """Where a unit of a layer is shown (page and anchor); None when nowhere."""
        owner = self.unit_owner.get(layer)
        if owner is None:
            return None
        view = self.section(owner).layer(layer)
        page = view.unit_page(unit) if hasattr(view, "unit_page") else self.layer_page(layer).filename
        return f"{page}#unit-{unit}"

    def layer_page(self, name: str) -> LayerPage:
        return next(page for page in self.layers if page.info.name == name)

    @property
    def extra_pages(self) -> list[tuple[ExtraPage, SectionEntry]]:
        return [(page, s) for s in self.sections if s.view for page in s.view.pages]

    @property
    def layer_groups(self) -> list[tuple[str | None, list[LayerPage]]]:
        """Layers grouped by their parent module, in network order; None for a layer on its own.
        A model with few layers is listed flat."""
        if len(self.layers) <= GROUP_LIMIT:
            return [(None, [page]) for page in self.layers]
        return layer_groups(self.layers)


def build_report(
    *,
    title: str,
    author: str | None,
    provenance: Provenance,
    class_names: list[str],
    layers: list[LayerInfo],
    results: dict[str, Any],
    failures: dict[str, str],
    not_applicable: dict[str, str],
    kit: ViewKit,
    plan: Plan | None = None,
    watch: Stopwatch | None = None,
    checks: list[CheckResult] | None = None,
    reuse: dict[str, SectionEntry] | None = None,
) -> Report:
    """Turn results into page views, writing every picture the pages show; the sections in
    `reuse` keep the views (and pictures) of an earlier rendering."""
    analyses = [cls() for cls in ordered()]
    present = [a for a in analyses if a.name in results]
    for analysis in present:  # first what sections say about units: views may show each other's
        kit.add_labels(analysis.unit_labels(results[analysis.name], kit))
        kit.rankings[analysis.name] = analysis.unit_rankings(results[analysis.name])
    stage = watch.stage if watch else (lambda _name: contextlib.nullcontext())
    sections, columns, search = [], [], []
    for analysis in analyses:
        kit.pictures.section = analysis.name
        if reuse and analysis.name in reuse:
            entry = reuse[analysis.name]
        else:
            with stage(f"render: {analysis.name} views"):
                entry = _entry(analysis, results, failures, not_applicable, kit)
        if entry is None:
            continue
        sections.append(entry)
        if entry.view is not None:
            columns += analysis.columns(entry.view, kit)
            search += analysis.search_entries(entry.view, kit)
    with stage("render: sprite sheets"):
        kit.pictures.finish()
    kit.pictures.section = ""
    pages = [LayerPage(info, depth, layer_filename(info.slug)) for depth, info in enumerate(layers, start=1)]
    for before, after in zip(pages, pages[1:]):
        before.next, after.previous = after, before
    return Report(
        title=title,
        author=author,
        provenance=provenance,
        class_names=class_names,
        layers=pages,
        sections=sections,
        columns=columns,
        search=search,
        labels=dict(kit.labels),
        finding=" ".join(s.finding for s in sections if s.finding) or None,
        unit_owner=_unit_owners(analyses, sections),
        plan=plan,
        checks=checks or [],
    )


def layer_groups(pages: list[LayerPage], depth: int = 1) -> list[tuple[str | None, list[LayerPage]]]:
    """Consecutive layers sharing the first `depth` parts of their names form a group (inception4a,
    layer2.1); a group larger than GROUP_LIMIT splits by the next part; a lone layer stands alone."""
    groups: list[tuple[str | None, list[LayerPage]]] = []
    for page in pages:
        parts = page.info.name.split(".")
        key = ".".join(parts[:depth]) if len(parts) > depth else None
        if groups and key is not None and groups[-1][0] == key:
            groups[-1][1].append(page)
        else:
            groups.append((key, [page]))
    result: list[tuple[str | None, list[LayerPage]]] = []
    for key, members in groups:
        if key is None or len(members) == 1:
            result += [(None, [member]) for member in members]
        elif len(members) > GROUP_LIMIT:
            result += layer_groups(members, depth + 1)
        else:
            result.append((key, members))
    return result


def _entry(
    analysis: Analysis, results: dict[str, Any], failures: dict[str, str], not_applicable: dict[str, str], kit: ViewKit
) -> SectionEntry | None:
    common = dict(name=analysis.name, title=analysis.title, template=analysis.template, page=analysis.page)
    if analysis.name in results:
        result = results[analysis.name]
        return SectionEntry(
            **common, status="shown", view=analysis.view(result, kit),
            finding=analysis.finding(result), warning=analysis.warning(result),
        )
    if analysis.name in not_applicable:
        return SectionEntry(**common, status="not applicable", reason=not_applicable[analysis.name])
    if analysis.name in failures:
        return SectionEntry(**common, status="failed", reason=failures[analysis.name])
    return None  # not selected (--only)


def _unit_owners(analyses: list[Analysis], sections: list[SectionEntry]) -> dict[str, str]:
    """Per layer, the section whose cards or rows carry the `#unit-N` anchors: the lowest rank."""
    rank = {a.name: a.unit_anchor_rank for a in analyses if a.unit_anchor_rank is not None}
    owners: dict[str, str] = {}
    for section in sorted((s for s in sections if s.name in rank and s.view), key=lambda s: rank[s.name], reverse=True):
        for layer in section.view.layers:
            owners[layer] = section.name
    return owners
