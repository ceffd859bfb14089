"""Vector search: exact cosine search over a growing float32 matrix, maximal marginal
relevance, and an approximate index (usearch) for large matrices.

Rows are stored L2-normalised, so a dot product is the cosine similarity. The matrix grows
by doubling its capacity: appending the rows a run writes one by one costs amortised O(1)
copies per row, not a new matrix per search.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Above this many rows a search may use the approximate index, where one is installed.
APPROXIMATE_THRESHOLD = 50_000
APPROXIMATE_LINKS = 16  # HNSW links per node


def normalised(vectors: Any) -> np.ndarray:
    """float32 rows of unit length (zero rows stay zero)."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return array / norms


@dataclass
class GrowingMatrix:
    """Normalised vectors of one dimension with a key per row, appended as they arrive."""

    dim: int
    keys: list[Any] = field(default_factory=list)
    _data: np.ndarray | None = None
    _approximate: Any = None  # a usearch index over rows [0, _approximate_rows)
    _approximate_rows: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def matrix(self) -> np.ndarray:
        """The rows so far (a view, not a copy)."""
        if self._data is None:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._data[: len(self.keys)]

    def append(self, keys: Sequence[Any], vectors: Any) -> None:
        if not keys:
            return
        rows = normalised(vectors)
        if rows.shape[1] != self.dim:
            raise ValueError(f"a {rows.shape[1]}-d vector cannot join a {self.dim}-d index")
        n, add = len(self.keys), len(keys)
        capacity = 0 if self._data is None else self._data.shape[0]
        if n + add > capacity:
            grown = np.empty((max(64, 2 * capacity, n + add), self.dim), dtype=np.float32)
            if self._data is not None:
                grown[:n] = self._data[:n]
            self._data = grown
        assert self._data is not None
        self._data[n : n + add] = rows
        self.keys.extend(keys)

    def scores(self, query: np.ndarray) -> np.ndarray:
        """Cosine similarity of every row with `query` (normalised here)."""
        return similarities(self.matrix, query)

    def top(
        self, query: Any, k: int, mask: np.ndarray | None = None, *, approximate: bool = False
    ) -> list[tuple[int, float]]:
        """The `k` best rows (row number, score), best first; `mask` keeps only True rows.

        It reads one snapshot of the rows (the first `len(mask)` with a mask): a search may run
        on the CPU pool while the scheduler thread appends rows."""
        data = self.matrix
        n = len(data) if mask is None else min(len(data), len(mask))
        if n == 0 or k < 1:
            return []
        if approximate and mask is None and n >= APPROXIMATE_THRESHOLD:
            found = self._approximate_top(query, k)
            if found is not None:
                return found
        scores = similarities(data[:n], query)
        if mask is not None:
            scores = np.where(mask[:n], scores, -np.inf)
        k = min(k, n)
        picked = np.argpartition(-scores, k - 1)[:k]
        picked = picked[np.argsort(-scores[picked], kind="stable")]
        return [(int(i), float(scores[i])) for i in picked if np.isfinite(scores[i])]

    # --- the approximate index ---------------------------------------------------------
    def _approximate_top(self, query: Any, k: int) -> list[tuple[int, float]] | None:
        with self.lock:  # one thread grows the index at a time
            index = self.approximate_index()
        if index is None:
            return None
        found = index.search(normalised(query)[0], k, threads=1)
        return [
            (int(key), float(1.0 - dist))
            for key, dist in zip(found.keys, found.distances, strict=True)
        ]

    def approximate_index(self) -> Any:
        """A usearch HNSW index over the rows, brought up to date (None: usearch is absent)."""
        try:
            from usearch.index import Index
        except ImportError:
            return None
        n = len(self.keys)
        if self._approximate is None:
            # Half-precision rows and half the default candidates while building: twice as
            # fast to build as the defaults (f32, 128), recall@10 about 0.99 against exact
            # search on 384-d rows of low intrinsic dimension (bench/retrieve.py measures it).
            self._approximate = Index(
                ndim=self.dim,
                metric="cos",
                dtype="f16",
                connectivity=APPROXIMATE_LINKS,
                expansion_add=64,
                expansion_search=128,
            )
            self._approximate_rows = 0
        if self._approximate_rows < n:
            start = self._approximate_rows
            self._approximate.add(
                np.arange(start, n, dtype=np.uint64), self.matrix[start:n], threads=0
            )
            self._approximate_rows = n
        return self._approximate


def similarities(rows: np.ndarray, query: Any) -> np.ndarray:
    """rows @ query, by numpy's own loop rather than BLAS: a matrix-vector product is bound by
    memory, and OpenBLAS's threads for it spin against the rest of the machine (on 2 busy cores
    3,000 rows took 60 ms through BLAS, 0.2 ms this way)."""
    return np.einsum("ij,j->i", rows, normalised(query)[0])


def maximal_marginal_relevance(
    query: Any, candidates: np.ndarray, k: int, diversity: float
) -> list[int]:
    """Pick `k` of the candidate rows (normalised), trading relevance for novelty: each pick
    maximises (1 - diversity) * sim(query, row) - diversity * max sim(row, picked)."""
    if len(candidates) == 0:
        return []
    relevance = similarities(candidates, query)
    picked: list[int] = []
    closest = np.full(len(candidates), -np.inf, dtype=np.float32)
    available = np.ones(len(candidates), dtype=bool)
    for _ in range(min(k, len(candidates))):
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        value = (1.0 - diversity) * relevance - diversity * penalty
        value = np.where(available, value, -np.inf)
        best = int(np.argmax(value))
        picked.append(best)
        available[best] = False
        closest = np.maximum(closest, similarities(candidates, candidates[best]))
    return picked
