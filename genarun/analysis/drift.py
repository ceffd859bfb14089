"""Semantic drift of a trajectory: how far each step has moved, and a 2-D view of the path.

Two definitions, both on L2-normalised embeddings; they order steps alike but their numbers
differ, so a figure or table always names which one it shows:

- ``cosine`` (genarun's default): 1 - cos(a, b); identical 0, orthogonal 1, opposite 2.
- ``euclidean`` (PANIC-TDA's): ||a/|a| - b/|b|||; identical 0, orthogonal sqrt 2, opposite 2.
  It equals sqrt(2 * cosine), so either converts to the other.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from genarun.analysis._points import as_points, unit_rows

DriftMetric = Literal["cosine", "euclidean"]
DRIFT_LABELS: dict[str, str] = {
    "cosine": "cosine distance from start (orthogonal = 1)",
    "euclidean": "Euclidean distance of unit vectors from start (PANIC-TDA; orthogonal = √2)",
}


def as_drift(cosine: np.ndarray, metric: DriftMetric) -> np.ndarray:
    """Cosine distances in the definition `metric` asks for."""
    if metric == "cosine":
        return cosine
    if metric == "euclidean":
        return np.sqrt(2.0 * np.clip(cosine, 0.0, 2.0))
    raise ValueError(f"drift metric must be cosine or euclidean, not {metric!r}")


def drift_from_start(
    points: np.ndarray, start: np.ndarray | None = None, metric: DriftMetric = "cosine"
) -> np.ndarray:
    """Distance of every step from ``start`` (default: step 0), one value per step: cosine
    distance, or PANIC-TDA's Euclidean distance between unit vectors (`metric`)."""
    x = unit_rows(as_points(points))
    if start is None:
        if len(x) == 0:
            return np.empty(0)
        origin = x[0]
    else:
        origin_row = as_points(np.reshape(start, (1, -1)), name="start")
        if origin_row.shape[1] != x.shape[1]:
            raise ValueError(
                f"start has {origin_row.shape[1]} dims but the trajectory has {x.shape[1]}"
            )
        origin = unit_rows(origin_row, name="start")[0]
    return as_drift(np.clip(1.0 - x @ origin, 0.0, 2.0), metric)


def step_distances(points: np.ndarray, metric: DriftMetric = "cosine") -> np.ndarray:
    """Distance between each step and the next (length N − 1), as in drift_from_start."""
    x = unit_rows(as_points(points))
    if len(x) < 2:
        return np.empty(0)
    return as_drift(np.clip(1.0 - np.einsum("ij,ij->i", x[:-1], x[1:]), 0.0, 2.0), metric)


def project_2d(points: np.ndarray) -> np.ndarray:
    """Project (N, D) points onto their two main principal axes (PCA by SVD), as (N, 2).

    Signs are fixed so the same data always gives the same picture: each axis points the way
    its largest-magnitude loading is positive. Missing axes (N < 3 or D < 2) are zeros.
    """
    x = as_points(points)
    out = np.zeros((len(x), 2))
    if len(x) == 0:
        return out
    centred = x - x.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    # Axes with no variance are noise-sized: leave them at zero instead of picking a random one.
    keep = min(2, int(np.sum(singular > singular.max(initial=0.0) * 1e-12)))
    for k in range(keep):
        axis = vt[k]
        if axis[np.argmax(np.abs(axis))] < 0:
            axis = -axis
        out[:, k] = centred @ axis
    return out
