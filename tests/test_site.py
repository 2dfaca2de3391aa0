"""The built site as files: valid HTML, unique ids, relative links that resolve; the PDF as pages."""

import re
import shutil
import subprocess
from pathlib import Path

import html5lib
import pytest

from tests.test_build import local_targets


def test_every_page_is_valid_html_with_unique_ids(sample_build: Path) -> None:
    check_site(sample_build, pages=8)


def check_site(root: Path, pages: int) -> None:
    """At least `pages` pages, each valid HTML with unique ids, whose links and anchors resolve."""
    found = sorted(root.glob("*.html"))
    assert len(found) >= pages
    for page in found:
        text = page.read_text()
        parser = html5lib.HTMLParser(strict=True)
        parser.parse(text)  # raises on any parse error: unclosed or misnested tags, bad attributes
        ids = re.findall(r'\sid="([^"]+)"', text)
        assert len(ids) == len(set(ids)), f"{page.name}: duplicate ids"
        for target in local_targets(page):
            assert not re.match(r"^(https?:)?//|^/", target), f"{page.name}: {target}"
            path, _, fragment = target.partition("#")
            resolved = root / path if path else page
            assert resolved.exists(), f"{page.name}: broken {target}"
            if fragment and resolved.suffix == ".html":
                assert f'id="{fragment}"' in resolved.read_text(), f"{page.name}: no anchor {target}"


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils (pdftoppm) is not installed")
def test_pdf_pages_render_to_pictures(sample_build: Path) -> None:
    from PIL import Image

    artifacts = Path(__file__).parent.parent / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    subprocess.run(
        ["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "3", str(sample_build / "dossier.pdf"), str(artifacts / "pdf")],
        check=True,
    )
    pictures = sorted(artifacts.glob("pdf-*.png"))
    assert len(pictures) == 3
    for picture in pictures:
        grey = Image.open(picture).convert("L")
        assert grey.getextrema()[0] < 100, f"{picture.name} is blank"


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils (pdftoppm) is not installed")
def test_every_picture_in_the_pdf_decodes(sample_build: Path, tmp_path: Path) -> None:
    """Every embedded image (the sprite sheets go in as JPEG) is readable: poppler says when not."""
    rendered = subprocess.run(
        ["pdftoppm", "-png", "-r", "20", str(sample_build / "dossier.pdf"), str(tmp_path / "page")],
        capture_output=True, text=True, check=True,
    )
    assert "Error" not in rendered.stderr, rendered.stderr[:500]


def test_units_per_layer_caps_the_big_layers_first() -> None:
    from dossier.build import _units_per_layer

    # 64 + 64 + 512 units pictured; half of that is 320 = 64 + 64 + 192
    assert _units_per_layer([64, 64, 512], 512, 0.5) == 192
    assert _units_per_layer([64, 64, 512], 512, 0.0) == 1
    assert _units_per_layer([8, 8], 8, 0.99) == 7  # always fewer than before


def _pictures_referenced(root: Path) -> set[str]:
    found = set()
    for page in root.glob("*.html"):
        text = page.read_text()
        found |= set(re.findall(r"url\('(assets/img/[^']+)'\)", text))
        found |= {target for target in local_targets(page) if target.startswith("assets/img/")}
    return found


def test_a_site_over_its_size_budget_pictures_fewer_units(tiny_config: Path, cli) -> None:
    """Past output.site_mb the galleries picture fewer units and say so; the other sections'
    pictures, drawn once, are all still there."""
    full = tiny_config.parent / "full"
    assert cli("build", tiny_config, "--out", full, "--no-pdf").exit_code == 0
    written_later = {"dossier.json", "manifest.json"}  # after the site's size is taken
    size = sum(path.stat().st_size for path in full.rglob("*") if path.is_file() and path.name not in written_later)
    galleries = sum(path.stat().st_size for path in (full / "assets" / "img").glob("gallery-*"))
    assert galleries > 0
    capped = tiny_config.parent / "capped.yaml"
    budget = (size - galleries / 2) / 2**20
    capped.write_text(tiny_config.read_text() + f"output: {{site_mb: {budget:.4f}}}\n")
    out = tiny_config.parent / "out"
    result = cli("build", capped, "--out", out, "--no-pdf")
    assert result.exit_code == 0, result.output
    referenced = _pictures_referenced(out)
    assert referenced and all((out / relative).exists() for relative in referenced)
    assert any(name.startswith("assets/img/kernels-") for name in referenced)  # kept from the first drawing
    on_disk = {f"assets/img/{path.name}" for path in (out / "assets" / "img").iterdir()}
    stale = {name for name in on_disk - referenced if name.startswith("assets/img/gallery-") and "-print" not in name}
    assert not stale  # the first drawing's gallery sheets are gone
    assert any("Pictures for the" in page.read_text() for page in out.glob("layer-*.html"))
    check_site(out, pages=6)
