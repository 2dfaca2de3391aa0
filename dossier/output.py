"""Publishing an output folder safely: one build at a time, the last good output kept until the
new one is complete, and nothing half-written left behind by a kill or a full disk."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dossier.errors import DossierError

OUTPUT_MARKER = "dossier.json"  # a folder holding it is a dossier output we may replace
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def check_replaceable(out_dir: Path, marker: str = OUTPUT_MARKER, kind: str = "dossier") -> None:
    """Only an empty folder or an earlier output of this kind (it holds `marker`) is replaced."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DossierError(f"--out: '{out_dir}' exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / marker).is_file():
        raise DossierError(
            f"--out: '{out_dir}' is a non-empty folder that is not a {kind} output; refusing to replace it"
        )


@contextmanager
def output_lock(out_dir: Path, marker: str = OUTPUT_MARKER, kind: str = "dossier") -> Iterator[None]:
    """Hold out_dir for this process: a second build to it refuses at once, naming the first.
    Inside, leftovers of a build that was killed are cleared away (and its retired output put
    back if the kill came between the two renames of replace()). A full disk anywhere inside
    becomes one line saying so."""
    check_replaceable(out_dir, marker, kind)
    lock_path = _parent(out_dir) / f".{out_dir.name}.lock"
    with open(lock_path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise DossierError(
                f"--out: another {kind} build (process {holder}) is writing '{out_dir}'; "
                "wait for it to finish or choose another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            with _disk_full_as_error(out_dir):
                _recover(out_dir)
                yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def staged(out_dir: Path) -> Iterator[Path]:
    """An empty folder beside out_dir to write the new output into; it replaces out_dir when the
    block succeeds and is removed when it does not. Use inside output_lock()."""
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.new-", dir=_parent(out_dir)))
    try:
        yield staging
        replace(out_dir, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def replace(out_dir: Path, staging: Path) -> None:
    """Swap the finished build into place; the old output survives until the new one is there."""
    staging.chmod(0o755)
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    retired = _retired(out_dir, staging.name.rsplit("-", 1)[-1])
    out_dir.rename(retired)
    try:
        staging.rename(out_dir)
    except OSError:
        retired.rename(out_dir)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def _retired(out_dir: Path, tag: str) -> Path:
    return out_dir.with_name(f".{out_dir.name}.old-{tag}")


def _recover(out_dir: Path) -> None:
    """Undo what a killed build left: a retired output with no output in its place goes back;
    staging folders and other retired outputs go. Safe under the lock: no build is running."""
    retired = sorted(out_dir.parent.glob(f".{out_dir.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if retired and not out_dir.exists():
        retired.pop().rename(out_dir)
    for leftover in [*retired, *out_dir.parent.glob(f".{out_dir.name}.new-*")]:
        shutil.rmtree(leftover, ignore_errors=True)


@contextmanager
def _disk_full_as_error(out_dir: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno not in _DISK_FULL:
            raise
        raise DossierError(
            f"--out: no space left on the device while writing '{out_dir}' or its cache "
            f"({exc.filename or 'a file'}); the previous output is intact"
        ) from None


def _parent(out_dir: Path) -> Path:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return out_dir.parent
