"""How much of the variation between trajectories each factor of an experiment explains.

PANIC-TDA asks "which parts of the system have the biggest impact on what happens: a model of
the network, the prompt, the seed?" and answered it with a model of persistence entropy on
those factors. Here each factor (a matrix key: the runs' labels) gets two shares, both from 0
(explains nothing) to 1 (explains everything), each with a permutation p-value:

- ``eta_squared`` of a number per trajectory (persistence entropy): the between-group sum of
  squares over the total (one-way ANOVA's effect size).
- ``permanova`` of a distance matrix between trajectories (Wasserstein distances of their
  diagrams): PERMANOVA's R^2 (Anderson 2001), the same share computed from distances alone,
  so a factor is judged on the whole topology of the trajectories, not one summary number.

The p-value is the share of label shuffles that explain at least as much:
``(1 + count) / (1 + permutations)``, from a seeded generator, so a report repeats exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Share:
    """The share of variation one factor explains: `value` in [0, 1] and its permutation
    p-value (None without permutations); `value` is None when it is undefined (no variation
    at all, or every trajectory a group of its own), with the reason in `why`."""

    value: float | None
    p: float | None
    why: str = ""


def _codes(labels: Sequence[str]) -> tuple[np.ndarray, int]:
    _values, codes = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True)
    return codes.astype(np.intp), int(codes.max()) + 1 if len(codes) else 0


def _undefined(codes: np.ndarray, groups: int, total: float) -> str:
    n = len(codes)
    if groups < 2:
        return "one value only"
    if groups == n:
        return "every trajectory has a value of its own: nothing varies within a value"
    if total <= 1e-12 * max(1, n):
        return "no variation at all"
    return ""


def _p_value(observed: float, shuffled: np.ndarray) -> float:
    # A shuffle that ties the observed share counts as explaining as much (a little slack
    # for rounding, so an exact tie is never lost to the last bit).
    count = int(np.count_nonzero(shuffled >= observed - 1e-12))
    return (1 + count) / (1 + len(shuffled))


def eta_squared(
    values: Sequence[float], labels: Sequence[str], *, permutations: int = 999, seed: int = 0
) -> Share:
    """The share of the variance of `values` between the groups `labels` makes (eta^2)."""
    y = np.asarray(values, dtype=np.float64)
    codes, groups = _codes(labels)
    total = float(np.sum((y - y.mean()) ** 2)) if len(y) else 0.0
    why = _undefined(codes, groups, total)
    if why:
        return Share(None, None, why)
    counts = np.bincount(codes, minlength=groups)
    n = len(y)
    mean = y.mean()

    def between(c: np.ndarray) -> float:
        sums = np.bincount(c, weights=y, minlength=groups)
        return float(np.sum(sums**2 / counts) - n * mean**2)

    observed = between(codes) / total
    if permutations <= 0:
        return Share(min(max(observed, 0.0), 1.0), None)
    rng = np.random.default_rng(seed)
    shuffled = np.array([between(rng.permutation(codes)) / total for _ in range(permutations)])
    return Share(min(max(observed, 0.0), 1.0), _p_value(observed, shuffled))


def permanova(
    distances: np.ndarray, labels: Sequence[str], *, permutations: int = 999, seed: int = 0
) -> Share:
    """PERMANOVA's R^2: the share of the sum of squared distances between trajectories that
    lies between the groups `labels` makes, from the distance matrix alone."""
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1] or d.shape[0] != len(labels):
        raise ValueError("permanova needs a square distance matrix with one label per row")
    squared = d**2
    n = d.shape[0]
    codes, groups = _codes(labels)
    # The total sum of squares: every pair once, over n (for Euclidean distances, the sum of
    # squared distances to the centroid).
    total = float(np.triu(squared, 1).sum()) / n if n else 0.0
    why = _undefined(codes, groups, total)
    if why:
        return Share(None, None, why)

    def within(c: np.ndarray) -> float:
        members = np.zeros((n, groups))
        members[np.arange(n), c] = 1.0
        counts = members.sum(axis=0)
        # Each group's pairs once (the full block counts each twice), over its size.
        per_group = np.sum((squared @ members) * members, axis=0) / 2.0
        return float(np.sum(per_group / counts))

    observed = 1.0 - within(codes) / total
    if permutations <= 0:
        return Share(min(max(observed, 0.0), 1.0), None)
    rng = np.random.default_rng(seed)
    shuffled = np.array([1.0 - within(rng.permutation(codes)) / total for _ in range(permutations)])
    return Share(min(max(observed, 0.0), 1.0), _p_value(observed, shuffled))
