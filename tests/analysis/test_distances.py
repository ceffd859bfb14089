"""Wasserstein and bottleneck distances, checked against hand values, brute force and persim."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import persim
import pytest

from genarun.analysis import Diagrams, bottleneck, distance_matrix, wasserstein

EMPTY = np.empty((0, 2))


def random_diagram(rng: np.random.Generator, k: int) -> np.ndarray:
    births = rng.uniform(0, 1, k)
    return np.column_stack([births, births + rng.exponential(0.3, k)])


def brute_force(a: np.ndarray, b: np.ndarray, p: float) -> tuple[float, float]:
    """(W_p, bottleneck) by trying every matching of the augmented problem (tiny inputs only)."""
    n, m = len(a), len(b)
    cost = np.zeros((n + m, m + n))
    cost[:n, :m] = np.max(np.abs(a[:, None] - b[None]), axis=2)
    cost[:n, m:] = ((a[:, 1] - a[:, 0]) / 2)[:, None]
    cost[n:, :m] = ((b[:, 1] - b[:, 0]) / 2)[None, :]
    best_sum, best_max = math.inf, math.inf
    for perm in itertools.permutations(range(n + m)):
        picked = cost[np.arange(n + m), perm]
        best_sum = min(best_sum, float(np.sum(picked**p)))
        best_max = min(best_max, float(picked.max(initial=0.0)))
    return best_sum ** (1 / p), best_max


def fake_wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """PANIC-TDA's stored "Wasserstein": L1 between sorted lifetimes, zero-padded."""
    la, lb = np.sort(a[:, 1] - a[:, 0])[::-1], np.sort(b[:, 1] - b[:, 0])[::-1]
    size = max(len(la), len(lb))
    la, lb = np.pad(la, (0, size - len(la))), np.pad(lb, (0, size - len(lb)))
    return float(np.abs(la - lb).sum())


def test_single_point_against_empty() -> None:
    one = np.array([[0.0, 1.0]])
    assert wasserstein(one, EMPTY, 1) == pytest.approx(0.5)
    assert wasserstein(one, EMPTY, 2) == pytest.approx(0.5)
    assert bottleneck(one, EMPTY) == pytest.approx(0.5)
    assert wasserstein(EMPTY, EMPTY) == 0.0 and bottleneck(EMPTY, EMPTY) == 0.0


def test_hand_computed_cases() -> None:
    two = np.array([[0.0, 1.0], [0.0, 1.0]])
    assert wasserstein(two, EMPTY, 1) == pytest.approx(1.0)
    assert wasserstein(two, EMPTY, 2) == pytest.approx(math.sqrt(0.5))
    assert bottleneck(two, EMPTY) == pytest.approx(0.5)
    # Matching (0,2) with (0,3) costs 1; sending both to the diagonal would cost 1 + 1.5.
    a, b = np.array([[0.0, 2.0]]), np.array([[0.0, 3.0]])
    assert wasserstein(a, b) == pytest.approx(1.0) and bottleneck(a, b) == pytest.approx(1.0)
    # Far apart short bars: both go to the diagonal (0.5 + 0.5) instead of matching (cost 5).
    a, b = np.array([[0.0, 1.0]]), np.array([[5.0, 6.0]])
    assert wasserstein(a, b) == pytest.approx(1.0) and bottleneck(a, b) == pytest.approx(0.5)
    assert wasserstein(a, b, 2) == pytest.approx(math.sqrt(0.5))


def test_identical_diagrams_are_at_zero() -> None:
    dgm = random_diagram(np.random.default_rng(0), 25)
    assert wasserstein(dgm, dgm) == pytest.approx(0.0, abs=1e-12)
    assert wasserstein(dgm, dgm[::-1], 2) == pytest.approx(0.0, abs=1e-12)
    assert bottleneck(dgm, dgm[::-1]) == 0.0


@pytest.mark.parametrize("seed", range(8))
def test_against_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = (
        random_diagram(rng, int(rng.integers(0, 4))),
        random_diagram(rng, int(rng.integers(1, 4))),
    )
    for p in (1, 2):
        w_ref, b_ref = brute_force(a, b, p)
        assert wasserstein(a, b, p) == pytest.approx(w_ref, abs=1e-12)
    assert bottleneck(a, b) == pytest.approx(b_ref, abs=1e-12)


def test_symmetry_and_triangle_inequality() -> None:
    rng = np.random.default_rng(3)
    dgms = [random_diagram(rng, int(rng.integers(0, 12))) for _ in range(7)]
    for metric, p in (("wasserstein", 1), ("wasserstein", 2), ("bottleneck", 1)):
        dist = distance_matrix(dgms, 1, metric, p=p)  # type: ignore[arg-type]
        np.testing.assert_array_equal(dist, dist.T)
        assert (np.diag(dist) == 0).all() and (dist[~np.eye(7, dtype=bool)] > 0).all()
        for i, j, k in itertools.permutations(range(7), 3):
            assert dist[i, k] <= dist[i, j] + dist[j, k] + 1e-12
    # Bottleneck never exceeds W_p: the largest cost of the W_p matching bounds it.
    w1 = distance_matrix(dgms, 1, "wasserstein")
    assert (distance_matrix(dgms, 1, "bottleneck") <= w1 + 1e-12).all()


def test_against_persim() -> None:
    rng = np.random.default_rng(4)
    for _ in range(10):
        a, b = (
            random_diagram(rng, int(rng.integers(1, 30))),
            random_diagram(rng, int(rng.integers(1, 30))),
        )
        # persim's wasserstein is W1 with the Euclidean ground metric; its bottleneck is L∞.
        assert wasserstein(a, b, 1, internal_p=2) == pytest.approx(
            persim.wasserstein(a, b), rel=1e-9
        )
        assert bottleneck(a, b) == pytest.approx(persim.bottleneck(a, b), rel=1e-9)


def test_essential_points() -> None:
    a = np.array([[0.0, math.inf], [0.0, 1.0]])
    b = np.array([[0.25, math.inf], [0.0, 1.0]])
    assert wasserstein(a, b) == pytest.approx(0.25) and bottleneck(a, b) == pytest.approx(0.25)
    # Different counts of never-dying classes: infinitely far apart, unless told to ignore them.
    c = np.array([[0.0, 1.0]])
    assert math.isinf(wasserstein(a, c)) and math.isinf(bottleneck(a, c))
    assert wasserstein(a, c, essential="ignore") == 0.0
    assert bottleneck(a, c, essential="ignore") == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bottleneck(a, b, essential="ignore") == 0.0


def test_h0_of_real_trajectories() -> None:
    from genarun.analysis import persistence_diagrams

    rng = np.random.default_rng(5)
    runs = [np.cumsum(rng.standard_normal((40, 32)), axis=0) for _ in range(3)]
    dgms = [persistence_diagrams(r) for r in runs]
    dist = distance_matrix(dgms, 0, "wasserstein")  # one essential class each: matched at 0
    assert np.isfinite(dist).all() and (dist[~np.eye(3, dtype=bool)] > 0).all()
    with pytest.raises(ValueError, match="not H3"):
        distance_matrix(dgms, 3)
    assert isinstance(dgms[0], Diagrams)


def test_fake_wasserstein_is_not_wasserstein() -> None:
    """PANIC-TDA compared sorted lifetimes: it ignores where features are born and die."""
    early, late = np.array([[0.0, 1.0]]), np.array([[5.0, 6.0]])
    assert fake_wasserstein(early, late) == 0.0  # same lifetime, so "identical"
    assert wasserstein(early, late) == pytest.approx(1.0)  # really one whole bar apart
    # It can also overstate the distance: one bar against the same span split in two.
    a = np.array([[0.0, 2.0]])
    b = np.array([[0.0, 1.0], [1.0, 2.0]])
    assert fake_wasserstein(a, b) == pytest.approx(2.0)
    assert wasserstein(a, b) == pytest.approx(1.5)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="p must be"):
        wasserstein(EMPTY, EMPTY, 0.5)
    with pytest.raises(ValueError, match="dies before"):
        wasserstein(np.array([[1.0, 0.0]]), EMPTY)
    with pytest.raises(ValueError, match="unknown metric"):
        distance_matrix([EMPTY], 0, "L1")  # type: ignore[arg-type]
