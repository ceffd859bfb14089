"""Validation and normalisation of embedding arrays shared by the analysis modules."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def as_points(points: np.ndarray, *, name: str = "points") -> np.ndarray:
    """Return ``points`` as a finite float64 (N, D) array, or raise ValueError saying what is wrong."""
    array = np.asarray(points)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (N steps x D dims), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    # float64 keeps 1 - cos accurate for near-duplicate steps (float32 loses ~1e-7 of it).
    array = array.astype(np.float64, copy=False)
    bad = ~np.isfinite(array)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        shown = ", ".join(str(int(r)) for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
        raise ValueError(f"{name} contains NaN or infinite values (rows {shown})")
    return array


def unit_rows(points: np.ndarray, *, name: str = "points") -> np.ndarray:
    """Scale each row to unit length; a zero row has no direction, so it is an error."""
    norms = np.linalg.norm(points, axis=1, keepdims=True)
    zero = np.nonzero(norms[:, 0] == 0.0)[0]
    if len(zero):
        raise ValueError(
            f"{name} has all-zero rows (rows {', '.join(str(int(r)) for r in zero[:5])}): "
            "cosine distance is undefined for them; use metric='euclidean' or drop those steps"
        )
    return points / norms


def as_diagram(
    diagram: np.ndarray | Sequence[Sequence[float]], *, name: str = "diagram"
) -> np.ndarray:
    """Return a validated (k, 2) float64 diagram; deaths may be inf, births must be finite."""
    dgm = np.asarray(diagram, dtype=np.float64)
    if dgm.size == 0:
        return np.empty((0, 2))
    if dgm.ndim != 2 or dgm.shape[1] != 2:
        raise ValueError(f"{name} must be a (k, 2) array of (birth, death) pairs, got {dgm.shape}")
    if np.isnan(dgm).any() or not np.isfinite(dgm[:, 0]).all():
        raise ValueError(f"{name} has NaN values or infinite births")
    if (dgm[:, 1] < dgm[:, 0]).any():
        raise ValueError(f"{name} has a point that dies before it is born")
    return dgm
