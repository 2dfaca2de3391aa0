"""Units matched across two models and layer similarity (METHODS §9).

Li et al. 2016 ("convergent learning"): correlate the units of two networks on the same images
and assign them one to one with the Hungarian algorithm. Kornblith et al. 2019: linear CKA
compares whole layers and, unlike unit correlations, does not care how the units are rotated.

Both need only first and second moments, so they are accumulated while streaming over the data:
per layer the sum and Σ x xᵀ, per compared pair of layers Σ a bᵀ. Memory depends on the numbers
of units, never on the number of images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


class Moments:
    """Running moments of two models' unit activations (images × units per layer) on the same
    images. Values are shifted by the first batch's mean before they are summed: a streaming
    covariance from raw sums loses its digits when the mean is large against the spread."""

    def __init__(self, units_a: dict[str, int], units_b: dict[str, int], pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs
        self.sides: dict[str, dict[str, _LayerSums]] = {
            "a": {name: _LayerSums(units) for name, units in units_a.items()},
            "b": {name: _LayerSums(units) for name, units in units_b.items()},
        }
        self.cross = {pair: torch.zeros(units_a[pair[0]], units_b[pair[1]], dtype=torch.float64) for pair in pairs}

    def update(self, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
        """Add a batch: per layer of each model, its images × units values (a layer the forward
        pass did not reach, such as an auxiliary head in eval mode, is simply absent)."""
        shifted = {}
        for side, values in (("a", a), ("b", b)):
            for name, sums in self.sides[side].items():
                if name in values:
                    shifted[side, name] = sums.add(values[name].double().cpu())
        for name_a, name_b in self.pairs:
            if ("a", name_a) in shifted and ("b", name_b) in shifted:
                self.cross[name_a, name_b] += shifted["a", name_a].T @ shifted["b", name_b]

    def seen(self, side: str, name: str) -> bool:
        return self.sides[side][name].count > 1  # a covariance needs two images

    def covariance(self, name_a: str, name_b: str) -> np.ndarray:
        """Cross-covariance of A's layer and B's layer (units_a × units_b)."""
        sums_a, sums_b = self.sides["a"][name_a], self.sides["b"][name_b]
        return (self.cross[name_a, name_b] / sums_a.count - torch.outer(sums_a.mean, sums_b.mean)).numpy()

    def variance(self, side: str, name: str) -> np.ndarray:
        sums = self.sides[side][name]
        return (torch.diagonal(sums.gram) / sums.count - sums.mean**2).clamp(min=0).numpy()

    def auto_covariance(self, side: str, name: str) -> np.ndarray:
        sums = self.sides[side][name]
        return (sums.gram / sums.count - torch.outer(sums.mean, sums.mean)).numpy()


class _LayerSums:
    def __init__(self, units: int) -> None:
        self.shift: torch.Tensor | None = None
        self.total = torch.zeros(units, dtype=torch.float64)
        self.gram = torch.zeros(units, units, dtype=torch.float64)
        self.count = 0

    def add(self, values: torch.Tensor) -> torch.Tensor:
        if self.shift is None:
            self.shift = values.mean(dim=0)
        shifted = values - self.shift
        self.total += shifted.sum(dim=0)
        self.gram += shifted.T @ shifted
        self.count += len(values)
        return shifted

    @property
    def mean(self) -> torch.Tensor:
        """Mean of the shifted values (the shift cancels in every covariance)."""
        return self.total / max(1, self.count)


def correlation(moments: Moments, name_a: str, name_b: str) -> np.ndarray:
    """Pearson correlation of every unit of A's layer with every unit of B's (units_a × units_b).
    A unit that is constant over the images correlates with nothing: 0."""
    covariance = moments.covariance(name_a, name_b)
    spread = np.sqrt(np.outer(moments.variance("a", name_a), moments.variance("b", name_b)))
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(spread > 0, covariance / spread, 0.0)
    return np.clip(values, -1.0, 1.0)


def linear_cka(moments: Moments, name_a: str, name_b: str) -> float | None:
    """Linear CKA = ‖Cov(A, B)‖²_F / (‖Cov(A, A)‖_F ‖Cov(B, B)‖_F); None when a layer is constant."""
    cross = np.linalg.norm(moments.covariance(name_a, name_b)) ** 2
    scale = np.linalg.norm(moments.auto_covariance("a", name_a)) * np.linalg.norm(moments.auto_covariance("b", name_b))
    return float(cross / scale) if scale > 0 else None


@dataclass(frozen=True)
class UnitPair:
    a: int  # unit of A's layer
    b: int  # its partner in B's layer
    correlation: float


@dataclass(frozen=True)
class Unpartnered:
    unit: int
    partner: int | None  # the unit it was assigned to (below the threshold); None when there were too few
    correlation: float | None  # with that partner
    best_unit: int | None  # the unit of the other layer it correlates with most (taken by another)
    best: float | None  # that correlation


@dataclass(frozen=True)
class UnitMatching:
    pairs: list[UnitPair]  # assigned pairs at or above the threshold, most changed (lowest correlation) first
    lost: list[Unpartnered]  # A's units without a partner at the threshold
    new: list[Unpartnered]  # B's units without one
    mean_correlation: float | None  # over every assigned pair, partnered or not
    same_index: int  # partnered units that kept their index


def match_units(values: np.ndarray, threshold: float) -> UnitMatching:
    """One-to-one assignment maximising the summed correlation (Hungarian algorithm); a unit whose
    partner correlates below the threshold, or that had none (the layers differ in size), is lost
    (A's) or new (B's)."""
    rows, cols = linear_sum_assignment(-values)
    assigned = values[rows, cols]
    good = assigned >= threshold
    pairs = sorted(
        (UnitPair(int(a), int(b), float(c)) for a, b, c in zip(rows[good], cols[good], assigned[good])),
        key=lambda pair: (pair.correlation, pair.a),
    )
    partner_of_a = {int(a): (int(b), float(c)) for a, b, c in zip(rows, cols, assigned)}
    partner_of_b = {b: (a, c) for a, (b, c) in partner_of_a.items()}
    kept_a = {pair.a for pair in pairs}
    kept_b = {pair.b for pair in pairs}
    return UnitMatching(
        pairs=pairs,
        lost=_unpartnered(values, kept_a, partner_of_a),
        new=_unpartnered(values.T, kept_b, partner_of_b),
        mean_correlation=float(assigned.mean()) if len(assigned) else None,
        same_index=sum(pair.a == pair.b for pair in pairs),
    )


def _unpartnered(values: np.ndarray, kept: set[int], partner: dict[int, tuple[int, float]]) -> list[Unpartnered]:
    """The units (rows of values) without a kept pair, with their assigned and their best partner."""
    best = values.argmax(axis=1) if values.shape[1] else None
    return [
        Unpartnered(
            unit, *(partner.get(unit) or (None, None)),
            best_unit=int(best[unit]) if best is not None else None,
            best=float(values[unit, best[unit]]) if best is not None else None,
        )
        for unit in range(values.shape[0])
        if unit not in kept
    ]
