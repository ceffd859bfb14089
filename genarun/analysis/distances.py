"""Wasserstein and bottleneck distances between persistence diagrams of one dimension.

Both use the standard ground metric: two points cost their L∞ distance
``max(|b1 − b2|, |d1 − d2|)``, and a point matched to the diagonal costs ``(death − birth) / 2``
(its L∞ distance to the nearest diagonal point). ``wasserstein(..., internal_p=2)`` uses the
Euclidean ground metric instead (diagonal cost ``(death − birth) / √2``), as persim does.

Points with an infinite death (essential classes) can only be matched with each other: each
diagram's essential births are sorted and paired in order, costing ``|b1 − b2|``. When the two
diagrams hold different numbers of essential points the distance is ``inf``, as the definition
gives; compare the finite parts alone with ``essential="ignore"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from genarun.analysis._points import as_diagram
from genarun.analysis.persistence import Diagrams

DiagramMetric = Literal["wasserstein", "bottleneck"]
Essential = Literal["match", "ignore"]


def wasserstein(
    a: np.ndarray,
    b: np.ndarray,
    p: float = 1.0,
    *,
    internal_p: float = math.inf,
    essential: Essential = "match",
) -> float:
    """p-Wasserstein distance (p ≥ 1) between two diagrams: an optimal matching, not a heuristic."""
    if not p >= 1 or math.isinf(p):
        raise ValueError(f"p must be a finite number >= 1, got {p}")
    if not internal_p >= 1:
        raise ValueError(f"internal_p must be >= 1 (or inf), got {internal_p}")
    fa, ea = _split(a, "a")
    fb, eb = _split(b, "b")
    essential_cost = _essential_costs(ea, eb, essential)
    if essential_cost is None:
        return math.inf
    total = float(np.sum(essential_cost**p)) + _finite_wasserstein_power(fa, fb, p, internal_p)
    return total ** (1.0 / p)


def bottleneck(a: np.ndarray, b: np.ndarray, *, essential: Essential = "match") -> float:
    """Bottleneck distance between two diagrams: the smallest worst cost over all matchings."""
    fa, ea = _split(a, "a")
    fb, eb = _split(b, "b")
    essential_cost = _essential_costs(ea, eb, essential)
    if essential_cost is None:
        return math.inf
    worst = float(essential_cost.max()) if len(essential_cost) else 0.0
    return max(worst, _finite_bottleneck(fa, fb))


def distance_matrix(
    diagrams_list: Sequence[Diagrams | np.ndarray],
    dim: int,
    metric: DiagramMetric = "wasserstein",
    *,
    p: float = 1.0,
    internal_p: float = math.inf,
    essential: Essential = "match",
) -> np.ndarray:
    """Symmetric (n, n) matrix of distances between the dimension-``dim`` diagrams of many runs."""
    if metric not in ("wasserstein", "bottleneck"):
        raise ValueError(f"unknown metric {metric!r}; choose 'wasserstein' or 'bottleneck'")
    dgms = [_pick_dimension(item, dim, i) for i, item in enumerate(diagrams_list)]
    n = len(dgms)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            if metric == "wasserstein":
                value = wasserstein(dgms[i], dgms[j], p, internal_p=internal_p, essential=essential)
            else:
                value = bottleneck(dgms[i], dgms[j], essential=essential)
            out[i, j] = out[j, i] = value
    return out


def _pick_dimension(item: Diagrams | np.ndarray, dim: int, index: int) -> np.ndarray:
    if isinstance(item, Diagrams):
        if not 0 <= dim <= item.maxdim:
            raise ValueError(f"diagrams_list[{index}] holds H0..H{item.maxdim}, not H{dim}")
        return item.diagrams[dim]
    return as_diagram(item, name=f"diagrams_list[{index}]")


def _split(diagram: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Finite points (zero-length ones dropped: they sit on the diagonal) and essential births."""
    dgm = as_diagram(diagram, name=name)
    infinite = np.isinf(dgm[:, 1])
    finite = dgm[~infinite]
    finite = finite[finite[:, 1] > finite[:, 0]]
    return finite, np.sort(dgm[infinite, 0])


def _essential_costs(ea: np.ndarray, eb: np.ndarray, essential: Essential) -> np.ndarray | None:
    if essential == "ignore":
        return np.empty(0)
    if essential != "match":
        raise ValueError(f"essential must be 'match' or 'ignore', got {essential!r}")
    if len(ea) != len(eb):
        return None
    # Sorted order is optimal for matching points on a line, for every p >= 1 and for the max.
    return np.abs(ea - eb)


def _diagonal_costs(dgm: np.ndarray, internal_p: float) -> np.ndarray:
    """L_q distance from each point to its nearest point on the diagonal."""
    scale = 0.5 if math.isinf(internal_p) else 2.0 ** (1.0 / internal_p - 1.0)
    return (dgm[:, 1] - dgm[:, 0]) * scale


def _cross_costs(
    a: np.ndarray, b: np.ndarray, internal_p: float = math.inf
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """L_q costs between points of a and b, and each point's cost to the diagonal."""
    delta = np.abs(a[:, None, :] - b[None, :, :])
    if math.isinf(internal_p):
        cross = delta.max(axis=2)
    else:
        cross = np.sum(delta**internal_p, axis=2) ** (1.0 / internal_p)
    return cross, _diagonal_costs(a, internal_p), _diagonal_costs(b, internal_p)


def _finite_wasserstein_power(a: np.ndarray, b: np.ndarray, p: float, internal_p: float) -> float:
    """Σ cost^p of an optimal matching, found by the Hungarian method on the augmented matrix."""
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        return float(np.sum(_diagonal_costs(a if m == 0 else b, internal_p) ** p))
    from scipy.optimize import linear_sum_assignment

    cross, diag_a, diag_b = _cross_costs(a, b, internal_p)
    # Rows: a's points then m diagonal slots; columns: b's points then n diagonal slots.
    # Diagonal slots are interchangeable, so a point costs the same against every one of them,
    # and slot-to-slot pairs cost nothing.
    cost = np.zeros((n + m, m + n))
    cost[:n, :m] = cross**p
    cost[:n, m:] = (diag_a**p)[:, None]
    cost[n:, :m] = (diag_b**p)[None, :]
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].sum())


def _finite_bottleneck(a: np.ndarray, b: np.ndarray) -> float:
    """Exact bottleneck: binary search over candidate costs with a perfect-matching test."""
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        rest = a if m == 0 else b
        return float(np.max(rest[:, 1] - rest[:, 0]) / 2.0) if len(rest) else 0.0
    cross, diag_a, diag_b = _cross_costs(a, b)
    # The answer is one of the pairwise costs; every point must go somewhere, so it is at least
    # the largest of each point's cheapest option.
    floor = max(
        float(np.max(np.minimum(cross.min(axis=1), diag_a))),
        float(np.max(np.minimum(cross.min(axis=0), diag_b))),
    )
    candidates = np.unique(np.concatenate([cross.ravel(), diag_a, diag_b]))
    candidates = candidates[candidates >= floor]
    lo, hi = 0, len(candidates) - 1  # hi is always feasible: everything may go to the diagonal
    while lo < hi:
        mid = (lo + hi) // 2
        if _has_perfect_matching(cross, diag_a, diag_b, candidates[mid]):
            hi = mid
        else:
            lo = mid + 1
    return float(candidates[lo])


def _has_perfect_matching(
    cross: np.ndarray, diag_a: np.ndarray, diag_b: np.ndarray, eps: float
) -> bool:
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    n, m = cross.shape
    allowed = np.zeros((n + m, m + n), dtype=bool)
    allowed[:n, :m] = cross <= eps
    # Each point may use its own diagonal slot; slots pair freely with each other.
    allowed[np.arange(n), m + np.arange(n)] = diag_a <= eps
    allowed[n + np.arange(m), np.arange(m)] = diag_b <= eps
    allowed[n:, m:] = True
    matching = maximum_bipartite_matching(csr_matrix(allowed), perm_type="column")
    return bool(np.all(matching >= 0))
