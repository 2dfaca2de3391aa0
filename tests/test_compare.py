"""`dossier compare` on known answers: a model against itself, against a copy with permuted
channels, against a copy whose two classes are swapped, against a wider model with a layer more;
and inputs it must refuse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dossier.compare.matching import Moments, correlation, linear_cka, match_units
from dossier.manifest import verify
from tests.conftest import TINY_CONFIG, TINY_FACTORY, make_image_folder, write_config
from tests.test_site import check_site
from tests.tiny_models import Tiny

FAST = "analyses: {galleries: {steps: 2}, deepdream: {steps: 2, octaves: 1}, probes: {folds: 2, trees: 5}}\n"
PERMUTATION = [2, 0, 3, 1]  # B's channel j is A's channel PERMUTATION[j]
WIDER_FACTORY = TINY_FACTORY + '''

class Wider(Tiny):
    """Six channels and a third conv: a different architecture for the same data."""

    def __init__(self, num_classes=3):
        super().__init__(num_classes, width=6)
        self.conv3 = nn.Conv2d(6, 6, 3, padding=1)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv3(torch.relu(self.conv2(x)) + x))
        return self.fc(torch.flatten(self.pool(x), 1))


def wider(num_classes=3):
    return Wider(num_classes)
'''


def _trained_tiny(data: Path) -> Tiny:
    """The tiny model fitted to the image folder (class c is bright in channel c): every image right."""
    from dossier.config import load_config
    from dossier.data import load_dataset

    dataset = load_dataset(load_config(write_config(data.parent, TINY_CONFIG, "probe.yaml")))
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    labels = torch.from_numpy(dataset.labels)
    torch.manual_seed(0)
    model = Tiny()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        optimiser.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimiser.step()
    return model.eval()


def _permuted(model: Tiny) -> Tiny:
    """The same function with its channels renumbered: conv1's outputs, bn1, conv2's inputs and
    outputs (the residual adds conv2's output to conv1's) and the classifier's inputs."""
    state = {name: value.clone() for name, value in model.state_dict().items()}
    order = torch.tensor(PERMUTATION)
    for name in ("conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "conv2.bias"):
        state[name] = state[name][order]
    state["conv2.weight"] = state["conv2.weight"][order][:, order]
    fc = state["fc.weight"].view(3, 4, 4)  # classes × channels × pooled positions
    state["fc.weight"] = fc[:, order].reshape(3, 16)
    copy = Tiny()
    copy.load_state_dict(state)
    return copy.eval()


def _swapped(model: Tiny) -> Tiny:
    """A 'fine-tuned' copy that calls cats dogs and dogs cats: rows 0 and 1 of the classifier swapped."""
    state = {name: value.clone() for name, value in model.state_dict().items()}
    for name in ("fc.weight", "fc.bias"):
        state[name] = state[name][[1, 0, 2]]
    copy = Tiny()
    copy.load_state_dict(state)
    return copy.eval()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A project with the trained tiny model, its permuted and swapped copies and a wider model,
    as configs a, permuted, swapped, wider; the working directory, where the result cache goes."""
    root = tmp_path_factory.mktemp("compare")
    (root / "models.py").write_text(WIDER_FACTORY)
    make_image_folder(root / "data", ["cat", "dog", "eel"], per_class=6)
    model = _trained_tiny(root / "data")
    torch.save(model.state_dict(), root / "a.pt")
    torch.save(_permuted(model).state_dict(), root / "permuted.pt")
    torch.save(_swapped(model).state_dict(), root / "swapped.pt")
    for name in ("a", "permuted", "swapped"):
        write_config(root, TINY_CONFIG.replace("tiny.pt", f"{name}.pt") + FAST, f"{name}.yaml")
    wider = TINY_CONFIG.replace("models.py:build", "models.py:wider").replace("  kwargs: {num_classes: 3}\n", "")
    write_config(root, wider.replace("  weights: tiny.pt\n", "") + FAST, "wider.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        yield root


def _compare(cli, root: Path, a: str, b: str, *options: str) -> dict:
    out = root / "build" / f"compare-{a}-{b}"
    result = cli("compare", root / f"{a}.yaml", root / f"{b}.yaml", "--out", out, *options)
    assert result.exit_code == 0, result.output
    return json.loads((out / "comparison.json").read_text())


def test_a_model_against_itself_changes_nothing(workspace: Path, cli) -> None:
    export = _compare(cli, workspace, "a", "a")
    accuracy = export["accuracy"]
    assert accuracy["top1"]["a"] == 1.0 and accuracy["top1"]["difference"] == 0.0
    assert accuracy["agreement"] == 1.0 and accuracy["predictions"] == []
    assert all(n == 0 for row in accuracy["confusion_change"] for n in row)
    for layer in export["layers"]:
        for key, change in layer["metrics"].items():
            assert change["a"] == change["b"], (layer["layer"], key)
            assert change["difference"] in (0, None), (layer["layer"], key)
    assert [m["layer"] for m in export["matching"]] == ["conv1", "conv2", "fc"]
    for matching in export["matching"]:
        assert [(p["a"], p["b"]) for p in sorted(matching["pairs"], key=lambda p: p["a"])] == [(u, u) for u in range(matching["units_a"])]
        assert all(p["correlation"] == pytest.approx(1.0, abs=1e-9) for p in matching["pairs"])
        assert matching["lost"] == [] and matching["new"] == [] and matching["cka"] == pytest.approx(1.0)
    assert all(row[k] == pytest.approx(1.0) for k, row in enumerate(export["similarity"]["cka"]))
    heatmaps = export["heatmaps"]["images"]
    assert len(heatmaps) == 18 and all(h["rank_correlation"] == pytest.approx(1.0) for h in heatmaps)
    assert export["a"]["finding"] == export["b"]["finding"] is not None


def test_the_site_and_pdf_look_like_a_dossier(workspace: Path, cli) -> None:
    """Same navigation as a dossier, every link resolving, user strings escaped, a PDF."""
    out = workspace / "build" / "compare-a-a"
    # The title is not part of any result's cache key: the same results, under a title to escape.
    nasty = (workspace / "a.yaml").read_text().replace("Tiny test model", "<script>alert(1)</script> & co")
    write_config(workspace, nasty, "nasty.yaml")
    assert cli("compare", workspace / "a.yaml", workspace / "nasty.yaml", "--out", out, "--heatmaps", "4").exit_code == 0
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in (out / "index.html").read_text()
    assert "<script>alert" not in "".join(page.read_text() for page in out.glob("*.html"))
    pages = {p.name for p in out.glob("*.html")}
    assert {"index.html", "predictions.html", "layers.html", "units.html", "heatmaps.html", "layer-conv1.html", "layer-fc.html"} <= pages
    assert (out / "comparison.pdf").stat().st_size > 10_000 and (out / "assets" / "search-index.js").is_file()
    check_site(out, pages=8)
    for page in out.glob("*.html"):
        assert 'href="comparison.json"' in page.read_text() and 'class="sidebar"' in page.read_text()
    assert "every unit has a partner" in (out / "layer-conv2.html").read_text().lower()
    assert len(json.loads((out / "comparison.json").read_text())["heatmaps"]["images"]) == 4
    checked, problems = verify(out)  # a manifest.json like a dossier's covers every file
    assert problems == [] and checked == len([p for p in out.rglob("*") if p.is_file()]) - 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"]["a_weights_sha256"] == manifest["inputs"]["b_weights_sha256"] is not None


def test_permuted_channels_are_matched_back(workspace: Path, cli) -> None:
    a, b = Tiny(), Tiny()
    a.load_state_dict(torch.load(workspace / "a.pt", weights_only=True))
    b.load_state_dict(torch.load(workspace / "permuted.pt", weights_only=True))
    x = torch.randn(5, 3, 12, 12)
    assert torch.allclose(a.eval()(x), b.eval()(x), atol=1e-5)  # the same function
    export = _compare(cli, workspace, "a", "permuted", "--no-pdf")
    matching = {m["layer"]: m for m in export["matching"]}
    for layer in ("conv1", "conv2"):
        pairs = {p["b"]: p["a"] for p in matching[layer]["pairs"]}
        assert pairs == dict(enumerate(PERMUTATION)), layer
        assert all(p["correlation"] == pytest.approx(1.0, abs=1e-6) for p in matching[layer]["pairs"])
        assert matching[layer]["same_index"] == sum(j == k for j, k in enumerate(PERMUTATION))
    assert {(p["a"], p["b"]) for p in matching["fc"]["pairs"]} == {(0, 0), (1, 1), (2, 2)}
    assert export["accuracy"]["top1"]["difference"] == 0.0 and export["accuracy"]["predictions"] == []
    assert all(h["rank_correlation"] == pytest.approx(1.0, abs=1e-3) for h in export["heatmaps"]["images"])


def test_swapped_classes_are_named_with_their_images(workspace: Path, cli) -> None:
    export = _compare(cli, workspace, "a", "swapped", "--no-pdf")
    classes = {c["label"]: c for c in export["accuracy"]["classes"]}
    assert classes[0]["accuracy"] == {"a": 1.0, "b": 0.0, "difference": -1.0}
    assert classes[1]["accuracy"]["difference"] == -1.0 and classes[2]["accuracy"]["difference"] == 0.0
    broken = {p["name"]: (p["predicted_a"], p["predicted_b"]) for p in export["accuracy"]["predictions"]}
    assert broken == {f"{name}/img{i}.png": (c, 1 - c) for c, name in enumerate(["cat", "dog"]) for i in range(6)}
    assert len(classes[0]["broken"]) == len(classes[1]["broken"]) == 6
    assert {(m["layer"], m["partnered"]) for m in export["matching"] if m["layer"] != "fc"} == {("conv1", 4), ("conv2", 4)}
    page = (workspace / "build" / "compare-a-swapped" / "predictions.html").read_text()
    cat = page.split('id="class-0"', 1)[1].split("<h3", 1)[0]
    assert "cat: 0 fixed, 6 broken" in page and all(f"cat/img{i}.png" in cat for i in range(6))
    assert "dog/img0.png" in page.split('id="class-1"', 1)[1] and 'id="class-2"' not in page
    assert "Class cat moved most: 100.0% → 0.0%." in export["finding"]


def test_a_different_architecture_still_gets_headline_and_depth_charts(workspace: Path, cli) -> None:
    export = _compare(cli, workspace, "a", "wider", "--no-pdf")
    assert export["only_in_a"] == [] and export["only_in_b"] == ["conv3"]
    conv1 = next(m for m in export["matching"] if m["layer"] == "conv1")
    assert (conv1["units_a"], conv1["units_b"]) == (4, 6)
    assert len(conv1["pairs"]) + len(conv1["lost"]) == 4 and len(conv1["new"]) >= 2  # six units for four
    conv3 = next(layer for layer in export["layers"] if layer["layer"] == "conv3")
    assert conv3["depth_a"] is None and conv3["depth_b"] == 3 and conv3["metrics"]["purity"]["a"] is None
    out = workspace / "build" / "compare-a-wider"
    assert "only in B: <code>conv3</code>" in (out / "index.html").read_text()
    assert (out / "layer-conv3.html").is_file() and (out / "assets" / "img" / "compare-scores.png").is_file()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda text: text.replace("[3, 12, 12]", "[3, 16, 16]"), "different input sizes"),
        (lambda text: text.replace("imagefolder: data", "imagefolder: other"), "class lists differ"),
        (lambda text: text.replace("imagefolder: data\n", "imagefolder: data\n  limit: 9\n"), "different data"),
    ],
)
def test_incompatible_inputs_are_refused_in_one_line(workspace: Path, cli, change, message) -> None:
    make_image_folder(workspace / "other", ["cat", "dog", "fox"], per_class=2)
    other = write_config(workspace, change((workspace / "a.yaml").read_text()), "other.yaml")
    out = workspace / "build" / "refused"
    result = cli("compare", workspace / "a.yaml", other, "--out", out)
    assert result.exit_code == 2 and message in result.output
    assert "a.yaml" in result.output and "other.yaml" in result.output  # names both config files
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not out.exists() and not list(out.parent.glob(".refused*"))


def test_a_folder_that_is_not_a_comparison_is_not_replaced(workspace: Path, cli) -> None:
    out = workspace / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = cli("compare", workspace / "a.yaml", workspace / "a.yaml", "--out", out)
    assert result.exit_code == 2 and "not a comparison output" in result.output
    assert (out / "notes.txt").read_text() == "mine"


def test_matching_statistics_on_known_data() -> None:
    """Streamed moments give numpy's correlations and CKA; the assignment undoes a permutation;
    a unit whose best partner is weak is lost or new."""
    rng = np.random.default_rng(0)
    a = rng.normal(5.0, 1.0, size=(200, 5))  # an offset mean: the shifted sums keep their digits
    b = np.column_stack([a[:, [3, 0, 4, 1]] * 2 + 1, rng.normal(size=200)])  # four units renumbered, one new
    moments = Moments({"l": 5}, {"l": 5}, [("l", "l")])
    for start in range(0, 200, 64):
        moments.update({"l": torch.from_numpy(a[start : start + 64])}, {"l": torch.from_numpy(b[start : start + 64])})
    expected = np.corrcoef(a.T, b.T)[:5, 5:]
    assert np.allclose(correlation(moments, "l", "l"), expected, atol=1e-10)
    matched = match_units(correlation(moments, "l", "l"), 0.5)
    assert {(p.a, p.b) for p in matched.pairs} == {(3, 0), (0, 1), (4, 2), (1, 3)}
    assert [u.unit for u in matched.lost] == [2] and [u.unit for u in matched.new] == [4]
    centred_a, centred_b = a - a.mean(0), b - b.mean(0)
    cka = np.linalg.norm(centred_a.T @ centred_b) ** 2 / (
        np.linalg.norm(centred_a.T @ centred_a) * np.linalg.norm(centred_b.T @ centred_b)
    )
    assert linear_cka(moments, "l", "l") == pytest.approx(cka, rel=1e-9)
