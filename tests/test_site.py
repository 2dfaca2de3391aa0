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
