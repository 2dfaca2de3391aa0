"""The README's screenshots of a built dossier: its overview and a layer's feature gallery.

    python scripts/screenshots.py build/digits docs

Drives Debian's chromium through Playwright (no browser download), as the browser tests do.
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 960, "height": 937}
SHOTS = {  # file -> (page, element scrolled to the top, or None)
    "sample-index.png": ("index.html", None),
    "sample-layer.png": ("layer-conv3.html", "#gallery"),
    "sample-deepdream.png": ("layer-conv3.html", "#deepdream"),
}


def main(site: Path, docs: Path) -> None:
    docs.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport=VIEWPORT, color_scheme="light")
        for filename, (html, anchor) in SHOTS.items():
            page.goto((site / html).resolve().as_uri())
            if anchor:  # below the sticky top bar
                page.evaluate(
                    "a => window.scrollTo(0, document.querySelector(a).getBoundingClientRect().top + window.scrollY"
                    " - document.querySelector('.topbar').offsetHeight - 8)",
                    anchor,
                )
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(docs / filename))
            print(docs / filename)
        browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
