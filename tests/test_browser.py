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
        page.wait_for_load_state("networkidle")  # leaving earlier would abort lazy images
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


def _first_border_unit(sample_build: Path) -> tuple[str, int]:
    import json

    export = json.loads((sample_build / "dossier.json").read_text())
    slugs = {layer["name"]: layer["slug"] for layer in export["layers"]}
    for layer in export["analyses"]["neuron_types"]["layers"]:
        for row in layer["rows"]:
            if row["border_weights"]:
                return slugs[layer["layer"]], row["unit"]
    raise AssertionError("the sample has no border-aware unit")


def test_search_finds_a_border_aware_unit_and_jumps_to_it(sample_build: Path, browser) -> None:
    slug, unit = _first_border_unit(sample_build)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto((sample_build / "index.html").as_uri())
    page.fill("#search", f"border-aware {slug}")
    target = page.locator(f'#search-results a[href="layer-{slug}.html#unit-{unit}"]')
    target.wait_for(timeout=10_000)  # the units' index loads on the first keystroke
    results = page.locator("#search-results a")
    assert results.count() >= 1
    assert target.count() == 1, results.all_inner_texts()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "search.png"))
    target.click()
    page.wait_for_load_state()
    assert page.url.endswith(f"layer-{slug}.html#unit-{unit}")
    assert page.locator(f"#unit-{unit}").is_visible()  # the unit's gallery card
    page.fill("#search", "zzzz-nothing")
    assert page.locator("#search-results .summary-line").inner_text() == "no match"


def test_site_works_from_a_server_sub_path(sample_build: Path, browser) -> None:
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(sample_build.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/{sample_build.name}/"
        page = browser.new_page()
        failures: list[str] = []
        page.on("requestfailed", lambda r: failures.append(r.url))
        page.on("response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.on("request", lambda r: failures.append(f"outside: {r.url}") if not r.url.startswith(base) else None)
        for name in ("index.html", "model.html", "relevance.html", "layer-conv2.html", "assets/mapper/conv2.html"):
            page.goto(base + name)
            page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
            page.wait_for_load_state("networkidle")  # leaving earlier would abort lazy images
        assert not failures, failures
    finally:
        server.shutdown()


def test_phone_and_dark_theme_render(sample_build: Path, browser) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    phone = browser.new_page(viewport={"width": 390, "height": 844}, color_scheme="dark")
    phone.goto((sample_build / "layer-conv3.html").as_uri())
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390 + 1, "the page must not scroll sideways on a phone"
    background = phone.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(18, 22, 29)", background  # the dark theme followed the system
    phone.screenshot(path=str(ARTIFACTS / "phone-dark.png"))
