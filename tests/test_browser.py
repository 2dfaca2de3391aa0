"""The sample site in Debian's Chromium driven by Playwright, from file://."""

from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Debian's chromium is not installed (scripts/install-system-deps.sh --browser installs it)",
)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()


def test_every_page_loads_without_errors_or_broken_resources(sample_build: Path, browser) -> None:
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
    page.on("request", lambda r: problems.append(f"remote: {r.url}") if not r.url.startswith("file://") else None)
    pages = sorted(sample_build.glob("*.html"))
    assert len(pages) >= 8
    for html in pages:
        page.goto(html.as_uri())
        # lazy images below the fold are not loaded yet: scroll them in, then look again
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        page.wait_for_timeout(100)
        broken = page.eval_on_selector_all(
            "img", "imgs => imgs.filter(i => i.complete && i.naturalWidth === 0).map(i => i.src)"
        )
        assert not broken, f"{html.name}: {broken}"
    assert not problems, problems


def test_summary_table_sorts_and_links_to_layers(sample_build: Path, browser) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    page.goto((sample_build / "index.html").as_uri())
    header = page.locator("table.summary thead th", has_text="purity").first
    header.click()
    header.click()  # descending: the purest layer first
    first = page.locator("table.summary tbody tr").first.locator("td").nth(1).inner_text()
    headers = page.locator("table.summary thead th").all_inner_texts()
    column = [h.strip() for h in headers].index("purity") + 1
    cells = page.locator(f"table.summary tbody tr td:nth-child({column})").all_inner_texts()
    values = [float(v) for v in cells]
    assert values == sorted(values, reverse=True)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "index.png"), full_page=True)
    page.locator("table.summary tbody tr").first.locator("a").click()
    assert page.locator("h1").inner_text().endswith(first)
    page.screenshot(path=str(ARTIFACTS / "layer.png"), full_page=True)
