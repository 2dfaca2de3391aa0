"""Data covering part of the model's classes: class folders mapped to outputs by name, predictions
read over every output, and the mapping stated on the model card."""

import html
import json
import re
from pathlib import Path

import pytest
import torch
import torchvision
from pypdf import PdfReader
from torch import nn

from dossier.classes import IDENTITY, map_classes
from dossier.config import load_config
from dossier.data import load_dataset
from dossier.errors import DataError
from tests.conftest import TINY_CONFIG, make_image_folder, write_config

# The planted model's outputs; the data has bird, cat and dog (labels 0, 1, 2 in folder order).
OUTPUTS = ["ant", "dog", "bird", "eel", "cat"]

PLANTED_MODEL = """\
import torch
from torch import nn


class Planted(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


def build():
    return Planted()
"""

PLANTED_CONFIG = """\
title: Planted
model:
  factory: planted.py:build
  weights: planted.pt
  input_size: [3, 12, 12]
  mean: [0.5, 0.5, 0.5]
  std: [0.25, 0.25, 0.25]
data:
  imagefolder: data
  class_index: outputs.txt
batch_size: 8
"""


def _planted_weights() -> dict[str, torch.Tensor]:
    """The images of class c are bright in channel c (make_image_folder), and only the bright
    channel passes the ReLU: channel 0 (bird) gives output 2 (bird), channel 1 (cat) output 0
    (ant, none of the data's classes: a mistake), channel 2 (dog) output 1 (dog)."""
    conv = nn.Conv2d(3, 3, 1)
    fc = nn.Linear(3, 5)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        conv.bias.zero_()
        fc.weight.zero_()
        fc.bias.zero_()
        for channel, output in enumerate([2, 0, 1]):
            fc.weight[output, channel] = 1.0
    return {**{f"conv.{k}": v for k, v in conv.state_dict().items()}, **{f"fc.{k}": v for k, v in fc.state_dict().items()}}


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    (tmp_path / "planted.py").write_text(PLANTED_MODEL)
    torch.save(_planted_weights(), tmp_path / "planted.pt")
    (tmp_path / "outputs.txt").write_text("\n".join(OUTPUTS) + "\n")
    make_image_folder(tmp_path / "data", ["bird", "cat", "dog"], per_class=6)
    return write_config(tmp_path, PLANTED_CONFIG)


def _config(folder: Path, text: str, class_index: str | None = None):
    if class_index is not None:
        text = text.replace("  imagefolder: data\n", f"  imagefolder: data\n  class_index: {class_index}\n")
    return load_config(write_config(folder, text))


def test_class_index_maps_folders_in_another_order(planted: Path) -> None:
    dataset = load_dataset(load_config(planted), len(OUTPUTS))
    classes = dataset.classes
    assert dataset.class_names == ["bird", "cat", "dog"]
    assert sorted(set(dataset.labels.tolist())) == [0, 1, 2]  # labels still count the data's classes
    assert classes.class_outputs == [2, 4, 1] and classes.outputs == 5
    assert classes.output_names == OUTPUTS and classes.source == "outputs.txt (data.class_index)"
    assert [classes.prediction_name(o) for o in range(5)] == ["other: ant", "dog", "bird", "other: eel", "cat"]
    assert classes.labels_of(torch.arange(5).numpy()).tolist() == [3, 2, 0, 3, 1]


def test_build_reads_predictions_over_every_output(planted: Path, cli) -> None:
    out = planted.parent / "out"
    result = cli("build", planted, "--out", out, "--only", "relevance", "--only", "embedding", "--only", "translation")
    assert result.exit_code == 0, result.output
    analyses = json.loads((out / "dossier.json").read_text())["analyses"]
    card = analyses["model_card"]
    assert card["top1"] == pytest.approx(2 / 3) and card["top5"] == 1.0
    assert card["per_class_accuracy"] == [1.0, 0.0, 1.0]
    assert card["confusion"] == [[6, 0, 0, 0], [0, 0, 0, 6], [0, 0, 6, 0]]  # cat: always "other"
    assert card["outside"] == [{"output": 0, "name": "ant", "images": 6}]
    assert card["outputs"] == 5 and card["mapping_source"] == "outputs.txt (data.class_index)"
    assert [(m["folder"], m["output"], m["output_name"]) for m in card["mapping"]] == [
        ("bird", 2, "bird"), ("cat", 4, "cat"), ("dog", 1, "dog"),
    ]
    cat_sample = next(s for s in card["samples"] if s["label"] == 1)
    assert cat_sample["top_outputs"][0] == 0 and cat_sample["top_names"][0] == "other: ant"
    assert set(cat_sample["top_names"]) == {"other: ant", "dog", "bird", "other: eel", "cat"}

    explained = analyses["relevance"]["images"]
    mistakes = [image for image in explained if image["label"] == 1]
    assert mistakes and all(
        (image["predicted"], image["true_output"], image["predicted_name"]) == (0, 4, "other: ant") for image in mistakes
    )
    assert all(image["predicted"] == image["true_output"] for image in explained if image["label"] != 1)
    embedding = analyses["embedding"]
    assert sorted(embedding["labels"][n] for n in embedding["mistakes"]) == [1] * 6
    assert set(embedding["mistaken_for"]) == {"other: ant"}
    curve = analyses["translation"]["curves"][0]
    assert curve["accuracy"][0] == pytest.approx(2 / 3)  # argmax over all outputs vs the true output

    statement = "Analysed on 3 of the model's 5 classes (mapped by outputs.txt (data.class_index)); " \
        "predictions outside these 3 count as mistakes."
    model_page = _text(out / "model.html")
    assert statement in model_page and statement in _text(out / "index.html")
    assert re.search(r"cat\s*4\s*cat", model_page) and "other outputs" in model_page and "other: eel" in model_page
    relevance_page = _text(out / "relevance.html")
    assert "predicted other: ant" in relevance_page
    cover = " ".join(PdfReader(out / "dossier.pdf").pages[0].extract_text().split())
    assert "Analysed on 3 of the model's 5 classes" in cover


def _text(page: Path) -> str:
    """A page's text, tags dropped and whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.read_text())).split())


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("names.json", json.dumps(OUTPUTS)),
        ("folders.json", json.dumps({"bird": 2, "Cat": 4, "dog": 1})),
        ("index.json", json.dumps({str(i): [f"n0{i}", name.upper()] for i, name in enumerate(OUTPUTS)})),
        ("names.txt", "Ant\nDOG\nbird\neel\ncat\n"),
    ],
)
def test_class_index_formats(project: Path, name: str, content: str) -> None:
    (project / name).write_text(content)
    config = _config(project, TINY_CONFIG, name)
    classes = map_classes(config, ["bird", "cat", "dog"], 5)
    assert classes.class_outputs == [2, 4, 1]


def test_names_match_ignoring_case_underscores_hyphens_and_spaces(project: Path) -> None:
    (project / "names.json").write_text(json.dumps(["great white shark", "Tiger-Shark", "hammerhead"]))
    config = _config(project, TINY_CONFIG, "names.json")
    assert map_classes(config, ["Great_White_Shark", "tiger shark"], 3).class_outputs == [0, 1]


def test_torchvision_weights_name_their_outputs(tmp_path: Path) -> None:
    text = TINY_CONFIG.replace("factory: models.py:build\n  kwargs: {num_classes: 3}\n  weights: tiny.pt",
                               "torchvision: resnet18\n  weights: IMAGENET1K_V1")
    config = _config(tmp_path, text)
    classes = map_classes(config, ["goldfish", "Great_White_Shark", "tench"], 1000)
    assert classes.class_outputs == [1, 2, 0]
    assert classes.source == "torchvision resnet18 IMAGENET1K_V1 categories"
    assert classes.prediction_name(3) == "other: tiger shark"
    # ImageNet's own folders are WordNet ids: those match too, and outputs keep torchvision's names.
    wnids = map_classes(config, ["n01440764", "n01530575"], 1000)
    assert wnids.class_outputs == [0, 10] and wnids.source == "ImageNet-1k WordNet ids"
    assert wnids.output_names == torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]


def test_wordnet_id_folders_for_any_1000_output_model(project: Path) -> None:
    classes = map_classes(_config(project, TINY_CONFIG), ["n01440764", "n02123045", "n15075141"], 1000)
    assert classes.class_outputs == [0, 281, 999] and classes.source == "ImageNet-1k WordNet ids"
    assert classes.prediction_name(1) == "other: n01443537"


def test_folder_matching_no_output_is_a_one_line_error(planted: Path) -> None:
    (planted.parent / "data" / "cat").rename(planted.parent / "data" / "kat")
    with pytest.raises(DataError) as error:
        load_dataset(load_config(planted), len(OUTPUTS))
    message = str(error.value)
    assert "\n" not in message
    assert "class folder 'kat' matches none of the model's 5 outputs by outputs.txt (data.class_index)" in message
    assert "closest: 'cat'" in message


def test_wrong_mappings_are_refused(project: Path) -> None:
    (project / "twice.json").write_text(json.dumps({"bird": 2, "cat": 2}))
    with pytest.raises(DataError, match="class folders 'bird' and 'cat' are both output 2"):
        map_classes(_config(project, TINY_CONFIG, "twice.json"), ["bird", "cat"], 5)
    (project / "far.json").write_text(json.dumps({"bird": 7}))
    with pytest.raises(DataError, match="names output 7, outside the model's 5 outputs"):
        map_classes(_config(project, TINY_CONFIG, "far.json"), ["bird"], 5)
    (project / "short.txt").write_text("ant\nbird\n")
    with pytest.raises(DataError, match="names 2 outputs but the model has 5"):
        map_classes(_config(project, TINY_CONFIG, "short.txt"), ["bird"], 5)
    (project / "same.json").write_text(json.dumps({"0": ["crane"], "1": ["crane"]}))
    with pytest.raises(DataError, match="class folder 'crane' names outputs 0, 1"):
        map_classes(_config(project, TINY_CONFIG, "same.json"), ["crane"], 2)


def test_matching_counts_keep_sorted_folders_as_outputs(project: Path) -> None:
    classes = load_dataset(_config(project, TINY_CONFIG), 3).classes
    assert classes.class_outputs == [0, 1, 2] and classes.source == IDENTITY


def test_no_way_to_name_the_outputs(project: Path) -> None:
    with pytest.raises(DataError, match="3 classes but the model outputs 5 scores; .*data.class_index"):
        load_dataset(_config(project, TINY_CONFIG), 5)
