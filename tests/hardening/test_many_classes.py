"""A data set of many classes: the site lists every class, the PDF the ones that need attention,
and the confusion matrix becomes a list of the most frequent confusions."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pypdf import PdfReader

from dossier.analyses.model_card import PRINT_CLASSES, _print_classes
from tests.conftest import TINY_CONFIG, make_image_folder, write_config

CLASSES = 120


def test_the_pdf_rows_are_the_lowest_accuracies() -> None:
    accuracy = [c / 100 for c in range(100)]
    accuracy[50] = None  # a class without images comes last
    rows = _print_classes(accuracy)
    assert rows == list(range(PRINT_CLASSES)) and _print_classes(accuracy[:10]) == list(range(10))


def test_a_build_with_many_classes_degrades_gracefully(project: Path, cli) -> None:
    make_image_folder(project / "many", [f"class {c:03d}" for c in range(CLASSES)], per_class=1)
    text = TINY_CONFIG.replace("imagefolder: data", "imagefolder: many").replace("num_classes: 3", f"num_classes: {CLASSES}")
    out = project / "out"
    result = cli("build", write_config(project, text.replace("  weights: tiny.pt\n", "")), "--out", out, "--only", "probes")
    assert result.exit_code == 0, result.output
    model = (out / "model.html").read_text()
    assert model.count("<tr><td>class ") >= CLASSES  # every class on the site
    assert "too many for a readable matrix" in model
    text = re.sub(r"\s+", " ", "".join(page.extract_text() for page in PdfReader(out / "dossier.pdf").pages))
    assert f"The {PRINT_CLASSES} classes of lowest accuracy of {CLASSES}" in text
    assert len(json.loads((out / "dossier.json").read_text())["analyses"]["model_card"]["per_class_accuracy"]) == CLASSES
