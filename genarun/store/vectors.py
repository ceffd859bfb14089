"""What makes a stored embedding usable: finite float32 values, not all zero, as many as its
dimension says."""

from __future__ import annotations

from typing import Any

from genarun.errors import InvalidVector


def vector_problem(vector: bytes | None, dim: int | None) -> str | None:
    """Why a stored vector (float32 little-endian bytes) is unusable, or None."""
    import numpy as np

    if vector is None:
        return "no vector (null)"
    if dim is None or len(vector) != 4 * dim:
        return f"{len(vector) // 4} values where its dimension says {dim}"
    array = np.frombuffer(vector, dtype="<f4")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        return f"{bad} of {dim} values are NaN or infinite"
    if not array.any():
        return "all zeros (no direction: every distance to it is undefined)"
    return None


def check_vector(row: dict[str, Any]) -> None:
    """Refuse an embedding row whose vector is unusable, naming its model and source."""
    problem = vector_problem(row.get("vector"), row.get("dim"))
    if problem:
        source = str(row.get("source") or "")[:60]
        raise InvalidVector(
            f"embedding model '{row.get('model')}' returned an unusable vector for "
            f"{source!r} (step {row.get('item')}): {problem}; it was not stored"
        )
