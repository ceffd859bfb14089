"""holos-tda's Vietoris–Rips engine behind the calling convention of gudhi's Ripser kernel.

holos-tda (MIT or Apache-2.0, a Rust Ripser-class engine with Python wheels) gives the same
diagrams as gudhi's and ripser.py's kernels on the same float32 distances, and takes 25-40 %
less CPU on the H2 step of a 1,000-step random walk (bench/RESULTS.md, fourth pass of issue 18
item 5), where gudhi's kernel is most of the time. It is optional: without it ``auto`` runs
gudhi's kernel as before.
"""

from __future__ import annotations

import importlib
import math
import os
from typing import Any

import numpy as np

# holos's reduction runs on threads (the same diagram at any count), but they take turns: on a
# 1,000-step walk at load 2, two threads split the CPU evenly (3.55 + 3.42 s) yet took 6.7-7.4 s
# of wall and 7.2-8.0 s of CPU against 7.1 s and 6.6 s on one. So one thread; None would mean
# every core the process may use.
_THREADS: int | None = 1


def _threads() -> int:
    if _THREADS is not None:
        return _THREADS
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def holos_kernel() -> Any:
    """``(matrix, max_dimension=, max_edge_length=, homology_coeff_field=)`` -> diagrams by
    holos-tda, or None without a holos-tda that has ``rips_condensed``."""
    try:
        module = importlib.import_module("holos_tda")
    except ImportError:
        return None
    rips = getattr(module, "rips_condensed", None)
    if rips is None:
        return None

    def full(
        matrix: np.ndarray,
        *,
        max_dimension: int,
        max_edge_length: float,
        homology_coeff_field: int = 2,
    ) -> list[np.ndarray]:
        n = len(matrix)
        # pdist's order (upper triangle, row by row). float32 values widened exactly, and the
        # scale rounded to float32 as ripser.py and gudhi round it: the same edges are in.
        condensed = np.asarray(matrix, dtype=np.float32)[np.triu_indices(n, 1)]
        rows = rips(
            condensed.astype(np.float64),
            max_dimension,
            float(np.float32(max_edge_length)),
            modulus=homology_coeff_field,
            threads=_threads(),
        )
        pairs: list[list[tuple[float, float]]] = [[] for _ in range(max_dimension + 1)]
        for dim, birth, death in rows:
            death = math.inf if death is None else float(death)
            if death > birth:  # ripser.py and gudhi report no zero-length pairs
                pairs[int(dim)].append((float(birth), death))
        return [np.array(p, dtype=np.float64).reshape(-1, 2) for p in pairs]

    return full
