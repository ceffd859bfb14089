"""Semantic drift and the 2-D projection of trajectories."""

from __future__ import annotations

import numpy as np
import pytest

from genarun.analysis import drift_from_start, project_2d, step_distances


def test_drift_from_start_hand_values() -> None:
    points = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 3.0], [-2.0, 0.0]])
    np.testing.assert_allclose(drift_from_start(points), [0.0, 1 - np.sqrt(0.5), 1.0, 2.0])
    # A separate start (the start prompt's embedding) instead of step 0.
    np.testing.assert_allclose(
        drift_from_start(points, start=np.array([0.0, 1.0])), [1, 1 - np.sqrt(0.5), 0, 1]
    )
    with pytest.raises(ValueError, match="dims"):
        drift_from_start(points, start=np.ones(3))


def test_panic_tdas_euclidean_drift_between_unit_vectors() -> None:
    """PANIC-TDA measures drift as the Euclidean distance between normalised vectors: orthogonal
    is sqrt 2, not genarun's cosine distance 1; both are offered and convert exactly."""
    points = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 3.0], [-2.0, 0.0]])
    euclidean = drift_from_start(points, metric="euclidean")
    np.testing.assert_allclose(euclidean, [0.0, np.sqrt(2 - np.sqrt(2)), np.sqrt(2), 2.0])
    unit = points / np.linalg.norm(points, axis=1, keepdims=True)
    np.testing.assert_allclose(euclidean, np.linalg.norm(unit - unit[0], axis=1))
    np.testing.assert_allclose(euclidean, np.sqrt(2 * drift_from_start(points)))
    np.testing.assert_allclose(
        step_distances(points, metric="euclidean"), np.linalg.norm(unit[1:] - unit[:-1], axis=1)
    )
    with pytest.raises(ValueError, match="cosine or euclidean"):
        drift_from_start(points, metric="manhattan")  # type: ignore[arg-type]


def test_step_distances() -> None:
    points = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 5.0], [0.0, -1.0]])
    np.testing.assert_allclose(step_distances(points), [1.0, 0.0, 2.0])
    assert step_distances(points[:1]).shape == (0,)
    assert drift_from_start(np.empty((0, 3))).shape == (0,)
    with pytest.raises(ValueError, match="NaN"):
        step_distances(np.array([[np.nan, 1.0], [1.0, 1.0]]))


def test_project_2d_keeps_a_planar_trajectory() -> None:
    rng = np.random.default_rng(0)
    plane = rng.standard_normal((50, 2)) * [3.0, 1.0]
    basis, _ = np.linalg.qr(rng.standard_normal((64, 2)))  # an orthonormal 2-plane in 64-D
    xy = project_2d(plane @ basis.T + 5.0)
    centred = plane - plane.mean(axis=0)
    # A rotation/reflection of the original: all pairwise distances survive.
    dist = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    ref = np.linalg.norm(centred[:, None] - centred[None], axis=2)
    np.testing.assert_allclose(dist, ref, atol=1e-9)
    assert xy[:, 0].var() > xy[:, 1].var()  # first axis carries most variance


def test_project_2d_is_deterministic_and_sign_fixed() -> None:
    rng = np.random.default_rng(1)
    points = rng.standard_normal((30, 10))
    first = project_2d(points)
    np.testing.assert_array_equal(first, project_2d(points.copy()))
    # Flipping the data flips the projection, instead of leaving the sign to the SVD routine.
    np.testing.assert_allclose(project_2d(-points), -first, atol=1e-9)


def test_project_2d_degenerate_inputs() -> None:
    assert project_2d(np.empty((0, 4))).shape == (0, 2)
    np.testing.assert_array_equal(project_2d(np.ones((1, 4))), [[0.0, 0.0]])
    line = np.outer(np.arange(5.0), [1.0, 2.0, 2.0])
    xy = project_2d(line)
    np.testing.assert_allclose(xy[:, 1], 0.0)
    np.testing.assert_allclose(np.abs(np.diff(xy[:, 0])), 3.0)
