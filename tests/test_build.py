"""End-to-end builds of a tiny project: pages, numbers, PDF, cache, atomic output, escaping."""

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from pypdf import PdfReader

from dossier.analyses import REGISTRY
from dossier.config import load_config
from dossier.data import load_dataset
from tests.conftest import TINY_CONFIG, make_image_folder, tiny_model, write_config


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        for key, value in attrs:
            if key in ("href", "src") and value:
                self.targets.append(value)


def local_targets(page: Path) -> list[str]:
    parser = _Links()
    parser.feed(page.read_text())
    return parser.targets


def _export(out: Path) -> dict:
    return json.loads((out / "dossier.json").read_text())


def test_tiny_build_writes_site_pdf_and_json(tiny_config: Path, cli) -> None:
    out = tiny_config.parent / "out"
    result = cli("build", tiny_config, "--out", out)
    assert result.exit_code == 0, result.output
    assert f"open:  {(out / 'index.html').as_uri()}" in result.output
    expected_pages = {"index.html", "model.html", "purity.html", "layer-conv1.html", "layer-conv2.html", "layer-fc.html"}
    assert expected_pages <= {p.name for p in out.glob("*.html")}
    assert (out / ".nojekyll").exists() and (out / "dossier.pdf").stat().st_size > 10_000
    for page in out.glob("*.html"):
        for target in local_targets(page):
            assert not re.match(r"^(https?:)?//|^/", target), f"{page.name}: non-relative {target}"
            assert (out / target.split("#")[0]).exists(), f"{page.name}: broken {target}"
    assert "Randomly initialised" not in (out / "index.html").read_text()


def test_exported_numbers_match_an_independent_computation(tiny_config: Path, cli) -> None:
    out = tiny_config.parent / "out"
    assert cli("build", tiny_config, "--out", out, "--no-pdf").exit_code == 0
    export = _export(out)
    config = load_config(tiny_config)
    dataset = load_dataset(config)
    model = tiny_model()
    model.load_state_dict(torch.load(tiny_config.parent / "tiny.pt", weights_only=True))
    model.eval()
    with torch.no_grad():
        predictions = model(torch.stack([dataset[i][0] for i in range(len(dataset))])).argmax(1).numpy()
    card = export["analyses"]["model_card"]
    assert card["top1"] == pytest.approx(float((predictions == dataset.labels).mean()))
    assert card["top5"] == 1.0  # 3 classes: the true class is always among the top 5
    assert np.array_equal(np.array(card["confusion"]).sum(axis=1), [6, 6, 6])
    purity = export["analyses"]["purity"]
    assert [entry["layer"] for entry in purity["layers"]] == ["input", "conv1", "conv2", "fc"]
    assert [layer["name"] for layer in export["layers"]] == ["conv1", "conv2", "fc"]
    for entry in purity["layers"]:
        sizes = [c["size"] for c in entry["clusters"]]
        assert sum(sizes) == purity["images"] == 18
        majority = sum(max(c["composition"]) for c in entry["clusters"])
        assert entry["purity"] == pytest.approx(majority / 18)
        assert "thumbnails" not in entry["clusters"][0]
    conv2 = (out / "layer-conv2.html").read_text()
    assert f"{purity['layers'][2]['purity']:.3f}" in conv2
    assert export["provenance"]["weights_sha256"] and export["provenance"]["stage_seconds"]["data pass"] > 0


def test_pdf_has_cover_outline_and_page_numbers(tiny_config: Path, cli) -> None:
    tiny_config.write_text(TINY_CONFIG.replace("title: Tiny test model", "title: Tiny test model\nauthor: Audit <team>"))
    out = tiny_config.parent / "out"
    assert cli("build", tiny_config, "--out", out).exit_code == 0
    reader = PdfReader(out / "dossier.pdf")
    pages = len(reader.pages)
    assert pages >= 6
    assert "Tiny test model" in reader.pages[0].extract_text()
    assert f"Page 2 of {pages}" in reader.pages[1].extract_text()

    def titles(outline) -> list[str]:
        found = []
        for item in outline:
            found += titles(item) if isinstance(item, list) else [item.title]
        return found

    bookmarks = titles(reader.outline)
    for layer in ("conv1", "conv2", "fc"):
        assert any(layer in title for title in bookmarks), bookmarks
    assert "Model card" in bookmarks and any("Appendix" in t for t in bookmarks)
    assert reader.metadata.title == "Tiny test model"
    assert reader.metadata.author == "Audit <team>"
    assert "interpretability" in reader.metadata["/Keywords"]
    assert reader.metadata.creation_date is not None
    cover = reader.pages[0].extract_text()
    export = _export(out)
    assert export["provenance"]["weights_sha256"] in cover.replace("\n", "")
    assert export["provenance"]["data_sha256"][:16] in cover.replace("\n", "")
    assert "Audit <team>" in cover
    toc = reader.pages[1].extract_text()
    assert re.search(r"Model card\W+3", toc), toc


def test_second_build_reuses_cached_results(tiny_config: Path, cli) -> None:
    out = tiny_config.parent / "out"
    assert cli("build", tiny_config, "--out", out, "--no-pdf").exit_code == 0
    assert _export(out)["provenance"]["cached_analyses"] == []
    first = _export(out)["analyses"]
    assert cli("build", tiny_config, "--out", out, "--no-pdf").exit_code == 0
    applied = set(REGISTRY) - set(_export(out)["not_applicable"])  # concepts: none configured
    assert sorted(_export(out)["provenance"]["cached_analyses"]) == sorted(applied)
    assert _export(out)["analyses"] == first
    (tiny_config.parent / "dossier.yaml").write_text(TINY_CONFIG.replace("batch_size: 8", "batch_size: 8\nseed: 3"))
    assert cli("build", tiny_config, "--out", out, "--no-pdf").exit_code == 0
    assert _export(out)["provenance"]["cached_analyses"] == []


def test_failed_build_leaves_the_previous_output_untouched(tiny_config: Path, cli, monkeypatch) -> None:
    out = tiny_config.parent / "out"
    assert cli("build", tiny_config, "--out", out, "--no-pdf").exit_code == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad = write_config(tiny_config.parent, TINY_CONFIG + "layers: [conv9]\n", "bad.yaml")
    result = cli("build", bad, "--out", out)
    assert result.exit_code == 2
    import dossier.build

    def explode(*_args, **_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(dossier.build, "write_pdf", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        cli("build", tiny_config, "--out", out)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".out")] == [".out.lock"]


def test_refuses_to_replace_a_folder_that_is_not_a_dossier(tiny_config: Path, cli) -> None:
    precious = tiny_config.parent / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    result = cli("build", tiny_config, "--out", precious)
    assert result.exit_code == 2 and "not a dossier output" in result.output
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_random_init_banner_and_escaped_user_strings(project: Path, cli) -> None:
    make_image_folder(project / "data", ["<script>alert(1)</script>"], per_class=6)
    text = TINY_CONFIG.replace("  weights: tiny.pt\n", "").replace("num_classes: 3", "num_classes: 4")
    config = write_config(project, text.replace("title: Tiny test model", "title: Tiny & <b>bold</b>"))
    out = project / "out"
    assert cli("build", config, "--out", out, "--no-pdf").exit_code == 0
    index = (out / "index.html").read_text()
    assert "Randomly initialised model" in index
    for page in out.glob("*.html"):
        html = page.read_text()
        assert "<script>alert(1)</script>" not in html and "<b>bold</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (out / "model.html").read_text()
    assert "Tiny &amp; &lt;b&gt;bold&lt;/b&gt;" in index
    assert _export(out)["provenance"]["trained"] is False


def test_unreadable_image_is_skipped_and_counted(tiny_config: Path, cli) -> None:
    (tiny_config.parent / "data" / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    out = tiny_config.parent / "out"
    result = cli("build", tiny_config, "--out", out, "--no-pdf")
    assert result.exit_code == 0
    export = _export(out)
    assert list(export["analyses"]["model_card"]["skipped_images"]) == ["dog/broken.jpg"]
    assert export["analyses"]["model_card"]["images"] == 18
    assert "dog/broken.jpg" in (out / "model.html").read_text()


def test_torchscript_build_records_the_output_layer(project: Path, cli) -> None:
    torch.jit.save(torch.jit.script(tiny_model().eval()), project / "tiny.ts")
    text = TINY_CONFIG.replace("factory: models.py:build", "torchscript: tiny.ts").replace("  kwargs: {num_classes: 3}\n", "")
    config = write_config(project, text)
    out = project / "out"
    assert cli("build", config, "--out", out, "--no-pdf", "--only", "purity").exit_code == 0
    export = _export(out)
    assert [e["layer"] for e in export["analyses"]["purity"]["layers"]] == ["input", "fc"]
    assert "cannot be recorded" in (out / "layer-conv1.html").read_text()


def test_no_pdf_build_has_no_pdf_link(tiny_config: Path, cli) -> None:
    out = tiny_config.parent / "out"
    assert cli("build", tiny_config, "--out", out, "--no-pdf").exit_code == 0
    assert not (out / "dossier.pdf").exists()
    assert "dossier.pdf" not in (out / "index.html").read_text()


def test_class_count_must_match_the_model(project: Path, cli) -> None:
    make_image_folder(project / "data", ["fox"], per_class=2)
    result = cli("build", write_config(project, TINY_CONFIG), "--out", project / "out")
    assert result.exit_code == 2 and "4 classes but the model outputs 3 scores" in result.output
