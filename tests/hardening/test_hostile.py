"""Markup in class names, layer names, titles and file names is text everywhere: pages, search
index, Mapper graphs, SVG, charts and the PDF."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from pypdf import PdfReader

from dossier.build import build
from dossier.config import load_config
from tests.conftest import make_image_folder, write_config

ATTACKS = ["<img src=x onerror=alert(1)>", "<svg onload=alert(2)>", "\"q' & $x$ {{7*7}}"]

HOSTILE_FACTORY = f'''
from torch import nn

LAYER = {ATTACKS[0]!r}


def build(num_classes=3):
    model = nn.Sequential()
    model.add_module(LAYER, nn.Conv2d(3, 4, 3, padding=1))
    model.add_module("relu", nn.ReLU())
    model.add_module({ATTACKS[2]!r}, nn.Conv2d(4, 4, 3, padding=1))
    model.add_module("pool", nn.AdaptiveAvgPool2d(2))
    model.add_module("flat", nn.Flatten())
    model.add_module("fc", nn.Linear(16, num_classes))
    return model
'''

CONFIG = f"""\
title: {json.dumps(ATTACKS[1] + " </script><script>alert(4)</script>")}
author: {json.dumps(ATTACKS[2])}
model:
  factory: models.py:build
  input_size: [3, 12, 12]
data:
  imagefolder: data
batch_size: 8
budget: none
analyses:
  galleries: {{steps: 2}}
  deepdream: {{steps: 2, octaves: 2}}
  probes: {{folds: 2, trees: 5}}
"""


class _Markup(HTMLParser):
    """Every element and attribute of a page, to look for markup that would run."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        handlers = [name for name, _ in attrs if name.startswith("on")]
        if handlers:
            self.problems.append(f"<{tag}> with {handlers}")
        if tag == "img" and dict(attrs).get("src") == "x":
            self.problems.append("<img src=x>")
        self._in_script = tag == "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and "alert(" in data:
            self.problems.append("inline script from a name")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("hostile")
    (project / "models.py").write_text(HOSTILE_FACTORY)
    make_image_folder(project / "data", ATTACKS, per_class=5)
    (project / "data" / ATTACKS[1] / "img0.png").rename(project / "data" / ATTACKS[1] / "<b onmouseover=alert(3)>.png")
    out = project / "out"
    build(load_config(write_config(project, CONFIG)), out, device="cpu")
    return out


def test_no_markup_from_a_name_runs_in_any_page(hostile: Path) -> None:
    pages = [*hostile.glob("*.html"), *hostile.glob("assets/**/*.html")]
    assert len(pages) > 5
    for page in pages:
        parser = _Markup()
        parser.feed(page.read_text(encoding="utf-8"))
        assert parser.problems == [], page.name
    index = (hostile / "index.html").read_text()
    assert "&lt;svg onload=alert(2)&gt; &lt;/script&gt;&lt;script&gt;alert(4)&lt;/script&gt;" in index
    assert "{{7*7}}" in (hostile / "model.html").read_text().replace("&#34;", '"')  # not a template


def test_script_data_stays_json(hostile: Path) -> None:
    """Search shards and page data are `window.X = JSON;` files: a quote in a name must not end
    the string, and the names come back out unchanged."""
    scripts = [p for p in hostile.glob("assets/**/*.js") if p.name not in {"site.js"} and "vendor" not in p.parts]
    assert scripts
    found = ""
    for script in scripts:
        for match in re.finditer(r"^window\.\w+ = (?:\(window\.\w+ \|\| \[\]\)\.concat\()?(.*?)\)?;$", script.read_text(), re.M):
            found += json.dumps(json.loads(match.group(1)), ensure_ascii=False)
    for attack in ATTACKS:
        assert json.dumps(attack, ensure_ascii=False)[1:-1] in found


def test_svg_and_mapper_graphs_carry_names_as_text(hostile: Path) -> None:
    for svg in hostile.glob("assets/**/*.svg"):
        text = svg.read_text()
        assert "<img" not in text and "onload=" not in text.replace("onload=alert(2)&gt;", ""), svg.name
    mappers = list(hostile.glob("assets/**/*mapper*.html"))
    for mapper in mappers:
        assert "<h1> &lt;img src=x onerror=alert(1)&gt;" in mapper.read_text()


def test_the_pdf_prints_the_names_as_typed(hostile: Path) -> None:
    text = "".join(page.extract_text() for page in PdfReader(hostile / "dossier.pdf").pages)
    flat = re.sub(r"\s+", "", text)
    for attack in [*ATTACKS, "</script><script>alert(4)</script>"]:
        assert re.sub(r"\s+", "", attack) in flat, attack
