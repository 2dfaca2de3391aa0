"""manifest.json: what a dossier is made of, so that a published copy can be checked against it.

Every file of the output with its SHA-256, the inputs it was built from (weights, data, config)
and the versions of what built it. `dossier verify DIR` recomputes the hashes and names every
file that changed, went missing or was added since the build.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from dossier.errors import DossierError

MANIFEST = "manifest.json"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): file_sha256(path)
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def write_manifest(root: Path, inputs: dict[str, Any], versions: dict[str, str]) -> Path:
    """The manifest of everything under root (written last, so it covers every other file)."""
    document = {"inputs": inputs, "versions": versions, "files": _files(root)}
    target = root / MANIFEST
    target.write_text(json.dumps(document, indent=1, sort_keys=True), encoding="utf-8")
    return target


def verify(root: Path) -> tuple[int, list[str]]:
    """(files checked, one line per difference from the manifest)."""
    path = root / MANIFEST
    if not path.is_file():
        raise DossierError(f"verify: '{root}' has no {MANIFEST}; it is not a dossier output (or predates manifests)")
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError):
        raise DossierError(f"verify: '{path}' is not a dossier manifest") from None
    present = _files(root)
    problems = [f"changed: {name}" for name, digest in recorded.items() if name in present and present[name] != digest]
    problems += [f"missing: {name}" for name in recorded if name not in present]
    problems += [f"added: {name}" for name in present if name not in recorded]
    return len(recorded), sorted(problems)
