"""Choosing images so that every class is represented: the one place dossier samples by class."""

from __future__ import annotations

import numpy as np


def round_robin(labels: np.ndarray, count: int | None, rng: np.random.Generator | None = None) -> np.ndarray:
    """Up to `count` positions taken one class at a time, in turn, so small classes are covered
    and, when they run out, the others fill the remaining places. In data-set order within a
    class, or in a random order when `rng` is given. The positions come in the order chosen."""
    classes = np.unique(labels)
    by_class = [np.flatnonzero(labels == c) for c in classes]
    if rng is not None:
        by_class = [rng.permutation(members) for members in by_class]
    wanted = len(labels) if count is None else min(count, len(labels))
    chosen: list[int] = []
    depth = 0
    while len(chosen) < wanted:
        for members in by_class:
            if depth < len(members) and len(chosen) < wanted:
                chosen.append(int(members[depth]))
        depth += 1
    return np.array(chosen, dtype=np.int64)


def balanced_sample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Positions in `labels` of an equal number of items per class, at most `size` in all, sorted
    (given the data set's labels, these are data-set indices)."""
    classes = np.unique(labels)
    per_class = min(min(int((labels == c).sum()) for c in classes), max(1, size // len(classes)))
    rng = np.random.default_rng(seed)
    rows = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in classes]
    return np.sort(np.concatenate(rows))
