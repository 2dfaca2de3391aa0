"""Render a Report: the HTML site, the PDF (WeasyPrint, CSS paged media) and dossier.json."""

from __future__ import annotations

import io
import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import jinja2
from PIL import Image

from dossier.report.pages import Report
from dossier.report.search import write_search

log = logging.getLogger(__name__)

_STATIC_FILES = ("style.css", "print.css", "site.js")
PRINT_JPEG_QUALITY = 85  # sprite sheets in the PDF: no visible loss at print size


def template_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.files("dossier.templates"))),
        autoescape=True,  # class names, layer names and file names come from users
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def write_assets(report: Report, root: Path) -> None:
    """What every page of a site loads (style, script, search index), and .nojekyll."""
    assets = root / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    static = resources.files("dossier.templates")
    for name in _STATIC_FILES:
        (assets / name).write_bytes(static.joinpath(name).read_bytes())
    write_search(report, root)
    # GitHub Pages would otherwise run Jekyll, which hides files and folders starting with _.
    (root / ".nojekyll").write_text("", encoding="utf-8")


def write_site(report: Report, root: Path) -> list[Path]:
    """Write every HTML page and static asset under root; return the pages written."""
    env = template_environment()
    write_assets(report, root)
    pages: list[tuple[str, str, dict[str, Any]]] = [
        ("index.html", "index.html", {"page_title": "Overview", "breadcrumb": []}),
    ]
    for page in report.pages:
        context = {"page_title": page.title, "breadcrumb": [page.title], "page": page}
        pages.append((page.filename, "page.html", context))
    for layer in report.layers:
        context = {"page_title": layer.info.name, "breadcrumb": ["Layers", layer.info.name], "current_layer": layer}
        pages.append((layer.filename, "layer.html", context))
    for extra, section in report.extra_pages:
        layer = report.layer_page(extra.layer)
        context = {
            "page_title": extra.title, "breadcrumb": ["Layers", layer.info.name, extra.title],
            "current_layer": layer, "extra": extra, "section": section,
        }
        pages.append((extra.filename, "extra.html", context))
    written = []
    for filename, template, context in pages:
        html = env.get_template(template).render(report=report, **context)
        (root / filename).write_text(html, encoding="utf-8")
        written.append(root / filename)
    return written


def write_pdf(report: Report, root: Path, filename: str = "dossier.pdf", template: str = "print.html") -> Path:
    """Lay the report out for print and write it as a PDF next to the site."""
    import weasyprint  # imported here: loading pango costs a second that --no-pdf builds skip

    html = template_environment().get_template(template).render(report=report)
    document = weasyprint.HTML(string=html, base_url=str(root), url_fetcher=_print_fetcher())
    target = root / filename
    document.write_pdf(target, pdf_variant=None, pdf_forms=False)
    return target


def _print_fetcher():
    """Local files only (the PDF, like the site, fetches nothing from the internet), and the
    sprite sheets as JPEG: WeasyPrint stores a WebP's pixels flate-compressed, about 5× the bytes
    of a JPEG it can embed as it is."""
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    class Converted(URLFetcherResponse):
        path = None  # else WeasyPrint embeds the file at the URL's path, not this body

    class PrintFetcher(URLFetcher):
        def fetch(self, url: str, headers=None):
            if url.startswith("file:") and url.endswith(".webp"):
                buffer = io.BytesIO()
                with Image.open(unquote(urlparse(url).path)) as sheet:
                    sheet.convert("RGB").save(buffer, "JPEG", quality=PRINT_JPEG_QUALITY)
                return Converted(url, body=buffer.getvalue(), headers={"Content-Type": "image/jpeg"})
            return super().fetch(url, headers)

    return PrintFetcher(allowed_protocols=["file", "data"])


def write_export(document: dict[str, Any], root: Path, filename: str = "dossier.json") -> Path:
    target = root / filename
    target.write_text(export_text(document), encoding="utf-8")
    return target


def export_text(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, allow_nan=False, default=_json_default)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
