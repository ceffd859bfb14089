"""PANIC-TDA-style checks on exact values: drift distances, finite-time Lyapunov exponents,
change points, the noise floor, and the H1 loop of a circle."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genarun.analysis import persistence_diagrams
from genarun.analysis.dynamics import change_points, drift_distance, fit_growth, ftle, noise_floor


def test_drift_identical_is_zero_orthogonal_is_sqrt2() -> None:
    a = np.array([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    assert drift_distance(a, a * 5) == pytest.approx([0.0, 0.0], abs=1e-12)
    b = np.array([[0.0, 7.0, 0.0], [0.0, 0.0, 0.5]])
    assert drift_distance(a, b) == pytest.approx([math.sqrt(2), math.sqrt(2)], abs=1e-12)


def test_circle_has_an_h1_point_living_longer_than_half() -> None:
    angles = np.linspace(0, 2 * np.pi, 100, endpoint=False)
    points = np.column_stack([np.cos(angles), np.sin(angles)])
    dgms = persistence_diagrams(points, maxdim=1, metric="euclidean")
    h1 = dgms.diagrams[1]
    assert len(h1) >= 1 and float((h1[:, 1] - h1[:, 0]).max()) > 0.5


def synthetic_runs(n: int, steps: int, rate: float, dim: int = 64, seed: int = 0) -> dict:
    """n runs around one base point, each offset in its own direction by eps * exp(rate * t):
    pairwise distances grow exactly like exp(rate * t) (the offsets stay tiny, so normalising
    the vectors does not bend the growth)."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal(dim)
    base /= np.linalg.norm(base)
    t = np.arange(steps, dtype=np.float64)
    runs = {}
    for i in range(n):
        direction = rng.standard_normal(dim)
        direction -= direction @ base * base  # orthogonal to the base
        direction /= np.linalg.norm(direction)
        offsets = 1e-7 * (1 + 0.5 * i) * np.exp(rate * t)[:, None] * direction
        runs[f"run{i}"] = (t.astype(int), base + offsets)
    return runs


def test_ftle_recovers_a_known_exponential_growth() -> None:
    result = ftle(synthetic_runs(8, 100, 0.05))
    assert len(result.pairs) == 28  # 8 choose 2
    assert abs(result.mean - 0.05) < 0.005
    assert abs(result.pooled - 0.05) < 0.005
    assert all(abs(p.exponent - 0.05) < 0.005 and p.r_squared > 0.99 for p in result.pairs)


def test_three_runs_make_three_pairs() -> None:
    result = ftle(synthetic_runs(3, 6, 0.1))
    assert [(p.a, p.b) for p in result.pairs] == [
        ("run0", "run1"),
        ("run0", "run2"),
        ("run1", "run2"),
    ]


def test_identical_runs_have_no_exponent() -> None:
    steps = np.arange(5)
    same = np.ones((5, 4))
    result = ftle({"a": (steps, same), "b": (steps, same.copy())})
    assert math.isnan(result.pairs[0].exponent) and result.pairs[0].steps == 0
    assert fit_growth(steps, np.exp(0.2 * steps)) == pytest.approx((0.2, 1.0, 5))


def test_change_point_at_the_regime_switch() -> None:
    rng = np.random.default_rng(0)
    first = np.eye(16)[0] + 0.01 * rng.standard_normal((20, 16))
    second = np.eye(16)[5] + 0.01 * rng.standard_normal((15, 16))
    assert change_points(np.vstack([first, second]), penalty=1.0) == [20]
    assert change_points(first, penalty=1.0) == []


def test_noise_floor_of_orthogonal_outputs() -> None:
    floor = noise_floor(np.eye(3), original=np.array([1.0, 0.0, 0.0]))
    assert floor.pairwise_mean == pytest.approx(math.sqrt(2))
    assert floor.pairwise_max == pytest.approx(math.sqrt(2))
    assert floor.to_original_mean == pytest.approx(2 * math.sqrt(2) / 3)
    assert floor.samples == 3
