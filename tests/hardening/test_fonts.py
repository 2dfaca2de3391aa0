"""Titles and class names in any script come out of the PDF as glyphs, not empty boxes: every
character is drawn with a font that fontconfig says covers it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from pypdf import PdfReader

from tests.conftest import TINY_CONFIG, make_image_folder, write_config

TITLE = "Модель 模型 نموذج 🧪 मॉडल"
AUTHOR = "… — 監査"


def _normal(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _fonts_covering(char: str) -> set[str]:
    listing = subprocess.run(["fc-list", f":charset={ord(char):x}", "family"], capture_output=True, text=True).stdout
    return {_normal(family) for line in listing.splitlines() for family in line.split(",")}


def drawn_with(pdf: Path) -> dict[str, set[str]]:
    """Each character of the PDF's text -> the fonts it is drawn with (their ToUnicode maps)."""
    found: dict[str, set[str]] = {}
    for page in PdfReader(pdf).pages:
        fonts = page["/Resources"]["/Font"]
        for key in fonts:
            font = fonts[key].get_object()
            name = _normal(str(font["/BaseFont"]).split("+", 1)[-1])
            cmap = font["/ToUnicode"].get_object().get_data().decode("latin-1")
            for block in re.findall(r"beginbfchar(.*?)endbfchar", cmap, re.S):
                for _, code in re.findall(r"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
                    for char in bytes.fromhex(code).decode("utf-16-be", "replace"):
                        found.setdefault(char, set()).add(name)
    return found


@pytest.mark.skipif(not _fonts_covering("模"), reason="needs scripts/install-system-deps.sh (fonts-noto-cjk)")
def test_a_cover_in_several_scripts_has_a_glyph_for_every_character(project: Path, cli) -> None:
    make_image_folder(project / "names", ["猫", "dog", "ثعبان"], per_class=6)
    text = TINY_CONFIG.replace("title: Tiny test model", f"title: {TITLE}\nauthor: {AUTHOR}")
    text = text.replace("imagefolder: data", "imagefolder: names")
    out = project / "out"
    assert cli("build", write_config(project, text), "--out", out, "--only", "probes").exit_code == 0
    drawn = drawn_with(out / "dossier.pdf")
    for char in {c for c in TITLE + AUTHOR + "猫ثعبان" if not c.isspace()}:
        fonts = drawn.get(char)
        assert fonts, f"{char!r} is not in the PDF"
        covering = _fonts_covering(char)
        assert any(font.startswith(family) for font in fonts for family in covering), (
            f"{char!r} (U+{ord(char):04X}) is drawn with {fonts}, none of which has a glyph for it"
        )


def test_the_check_catches_an_empty_box(tmp_path: Path) -> None:
    """A character no installed font covers is drawn with a font that lacks it: the check fails."""
    from weasyprint import HTML

    HTML(string='<p style="font-family: DejaVu Sans">A \U00013000</p>').write_pdf(tmp_path / "box.pdf")
    drawn = drawn_with(tmp_path / "box.pdf")
    assert "\U00013000" in drawn and not _fonts_covering("\U00013000")
