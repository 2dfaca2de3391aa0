"""Long class names (and markup shown as text) keep the layout intact, on a wide and a narrow screen."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TINY_CONFIG, make_image_folder, write_config

CHROMIUM = "/usr/bin/chromium"
LONG_NAMES = [
    "an_extraordinarily_long_class_name_without_spaces",
    "<b>markup shown as text</b> & a rather long tail",
    "Oncorhynchus mykiss (rainbow trout), freshwater",
]

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")

OVERLAPS = """() => {
  const boxes = el => el.getBoundingClientRect();
  const inside = (a, b) => a.left >= b.left - 1 && a.right <= b.right + 1;
  const cross = (a, b) => !(a.right <= b.left || b.right <= a.left || a.bottom <= b.top || b.bottom <= a.top);
  const problems = [];
  for (const item of document.querySelectorAll('.top5 li')) {
    const [name, percent] = item.querySelectorAll('span');
    const card = boxes(item.closest('.sample'));
    // per line box: a wrapped inline name's bounding box spans the whole card
    if ([...name.getClientRects()].some(line => cross(line, boxes(percent)))) problems.push('overlap: ' + name.textContent);
    if (!inside(boxes(name), card) || !inside(boxes(percent), card)) problems.push('outside: ' + name.textContent);
  }
  return problems;
}"""


def test_long_class_names_keep_the_top5_cards_intact(project: Path, cli) -> None:
    make_image_folder(project / "long", LONG_NAMES, per_class=4)
    config = write_config(project, TINY_CONFIG.replace("imagefolder: data", "imagefolder: long"))
    out = project / "out"
    assert cli("build", config, "--out", out, "--no-pdf", "--only", "probes").exit_code == 0
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        for width in (1280, 420):
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto((out / "model.html").as_uri())
            assert page.locator(".top5 li").count() >= 3
            assert page.evaluate(OVERLAPS) == [], f"at {width} px"
            assert page.locator("b", has_text="markup shown as text").count() == 0
        browser.close()
