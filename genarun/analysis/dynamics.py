"""Divergence of trajectories: finite-time Lyapunov exponents between runs, and change points
along one run.

Distances are PANIC-TDA's: the Euclidean distance between L2-normalised embeddings (identical
0, orthogonal sqrt 2). A finite-time Lyapunov exponent of two runs is the slope of the least
squares line through (step, log distance) over the steps both runs have, with its r squared:
two runs that differ only in their seed (or their prompt's wording) and move apart at rate
lambda have distances growing like exp(lambda * step).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from genarun.analysis._points import unit_rows

# Distances at or below this are "the same point": their log is no growth measurement.
MIN_DISTANCE = 1e-12


def drift_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise PANIC-TDA drift distance ||a/|a| - b/|b||| (identical 0, orthogonal sqrt 2)."""
    return np.linalg.norm(
        unit_rows(np.asarray(a, np.float64)) - unit_rows(np.asarray(b, np.float64)), axis=1
    )


@dataclass
class PairExponent:
    a: str  # run labels
    b: str
    exponent: float  # per step; nan when fewer than 3 usable steps
    r_squared: float
    steps: int  # steps with a usable (non-zero) distance


def fit_growth(steps: np.ndarray, distances: np.ndarray) -> tuple[float, float, int]:
    """Slope and r squared of log(distance) against step, over distances above MIN_DISTANCE."""
    keep = distances > MIN_DISTANCE
    t = np.asarray(steps, np.float64)[keep]
    y = np.log(distances[keep])
    if len(t) < 3 or np.ptp(t) == 0:
        return math.nan, math.nan, len(t)
    slope, intercept = np.polyfit(t, y, 1)
    residual = y - (slope * t + intercept)
    total = ((y - y.mean()) ** 2).sum()
    r2 = 1.0 - (residual**2).sum() / total if total > 0 else 1.0
    return float(slope), float(r2), len(t)


@dataclass
class GroupExponent:
    """The exponent of one group of runs (same network and prompt): every pair's, their mean
    and spread, and one line fitted through every pair's points (pooled)."""

    pairs: list[PairExponent]
    mean: float
    std: float
    pooled: float
    pooled_r_squared: float


def ftle(series: dict[str, tuple[np.ndarray, np.ndarray]]) -> GroupExponent:
    """Finite-time Lyapunov exponents of every pair of runs in `series` (label -> (steps,
    vectors n x d)), on the steps both have."""
    pairs = []
    pooled_t: list[np.ndarray] = []
    pooled_y: list[np.ndarray] = []
    for (la, (sa, xa)), (lb, (sb, xb)) in itertools.combinations(sorted(series.items()), 2):
        common, ia, ib = np.intersect1d(np.asarray(sa), np.asarray(sb), return_indices=True)
        d = drift_distance(xa[ia], xb[ib]) if len(common) else np.empty(0)
        exponent, r2, used = fit_growth(common, d)
        pairs.append(PairExponent(la, lb, exponent, r2, used))
        keep = d > MIN_DISTANCE
        pooled_t.append(common[keep].astype(np.float64))
        pooled_y.append(d[keep])
    finite = [p.exponent for p in pairs if math.isfinite(p.exponent)]
    t = np.concatenate(pooled_t) if pooled_t else np.empty(0)
    y = np.concatenate(pooled_y) if pooled_y else np.empty(0)
    pooled, pooled_r2, _ = fit_growth(t, y)
    return GroupExponent(
        pairs,
        float(np.mean(finite)) if finite else math.nan,
        float(np.std(finite)) if finite else math.nan,
        pooled,
        pooled_r2,
    )


def change_points(vectors: np.ndarray, *, penalty: float = 1.0, min_size: int = 2) -> list[int]:
    """Indexes where a trajectory's embeddings change regime (ruptures' PELT with an RBF cost
    on the normalised vectors); each is the first index of a new segment."""
    import ruptures

    x = unit_rows(np.asarray(vectors, np.float64))
    if len(x) < 2 * min_size:
        return []
    ends = ruptures.Pelt(model="rbf", min_size=min_size, jump=1).fit(x).predict(pen=penalty)
    return [int(e) for e in ends[:-1]]  # the last end is the series' length


@dataclass
class NoiseFloor:
    """Spread of outputs regenerated from one input under several seeds, as drift distances."""

    pairwise_mean: float  # mean distance between the regenerated outputs
    pairwise_max: float
    to_original_mean: float  # mean distance of each to the stored output (nan: none given)
    samples: int


def noise_floor(vectors: np.ndarray, original: np.ndarray | None = None) -> NoiseFloor:
    x = unit_rows(np.asarray(vectors, np.float64))
    n = len(x)
    pairs = [float(np.linalg.norm(x[i] - x[j])) for i, j in itertools.combinations(range(n), 2)]
    to_original = math.nan
    if original is not None:
        o = unit_rows(np.asarray(original, np.float64).reshape(1, -1))[0]
        to_original = float(np.mean(np.linalg.norm(x - o, axis=1)))
    return NoiseFloor(
        float(np.mean(pairs)) if pairs else math.nan,
        float(np.max(pairs)) if pairs else math.nan,
        to_original,
        n,
    )
