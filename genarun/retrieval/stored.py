"""Matrices of stored vectors: run outputs (the `embeddings` table) per (model, scope), and the
documents' chunks (the `document_vectors` table).

A matrix is cached per process and grows: each search first appends the rows written since
the last one (`id > last`), so a run that embeds as it goes is searched without reloading.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import func, insert, select

from genarun.retrieval.index import GrowingMatrix
from genarun.store.db import document_vectors, embeddings, runs

if TYPE_CHECKING:
    from genarun.models.base import ModelSpec
    from genarun.store.db import Store


def model_identity(spec: ModelSpec) -> str:
    """What makes vectors comparable: the provider, the weights' id and revision (not the name
    a tree gives the model: two trees may call minilm `embedder` and `minilm`)."""
    return f"{spec.provider}:{spec.id}" + (f"@{spec.revision}" if spec.revision else "")


def _identity_of(record: dict[str, Any]) -> str:
    revision = record.get("revision") or ""
    return f"{record.get('provider')}:{record.get('model')}" + (f"@{revision}" if revision else "")


@dataclass(frozen=True)
class RowInfo:
    """Where a stored vector comes from."""

    id: int
    run_id: str
    node_id: str
    path: tuple[int, ...]
    source: str


@dataclass(frozen=True)
class RunSelector:
    """Which runs' rows: `this` (one run), `tree` (every run of a tree), `all`, or a run or
    experiment named by the user (resolved to its run ids)."""

    mode: str  # this, tree, all, ids
    run_id: str | None = None  # the run doing the search (this, and always part of tree)
    tree: str | None = None
    ids: tuple[str, ...] = ()

    def run_ids(self, store: Store) -> list[str] | None:
        """The runs searched now (None: every run); `tree` sees runs started since."""
        if self.mode == "this":
            return [self.run_id] if self.run_id else []
        if self.mode == "tree":
            rows = store.conn.execute(select(runs.c.id).where(runs.c.name == self.tree))
            return sorted({r.id for r in rows} | ({self.run_id} if self.run_id else set()))
        if self.mode == "ids":
            return sorted(set(self.ids) | ({self.run_id} if self.run_id else set()))
        return None


class Column:
    """A numpy column that grows by doubling its capacity (a run appends rows one by one)."""

    def __init__(self, dtype: Any) -> None:
        self._data = np.zeros(64, dtype=dtype)
        self._size = 0

    @property
    def values(self) -> np.ndarray:
        return self._data[: self._size]

    def extend(self, values: list[int]) -> None:
        end = self._size + len(values)
        if end > len(self._data):
            grown = np.zeros(max(end, 2 * len(self._data)), dtype=self._data.dtype)
            grown[: self._size] = self._data[: self._size]
            self._data = grown
        self._data[self._size : end] = values
        self._size = end


@dataclass
class StoredMatrix:
    """The vectors of one model identity in one scope (runs x nodes), grown on each refresh."""

    identity: str
    selector: RunSelector
    nodes: frozenset[str] | None
    matrix: GrowingMatrix | None = None
    rows: list[RowInfo] = field(default_factory=list)
    last_id: int = 0
    # (run id, label) pairs whose label resolves to `identity` in that run
    labels: dict[str, set[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    refresh_seconds: float = 0.0  # time spent growing it, for the benchmark
    # Per row, for filters computed with numpy rather than a Python call per row: the run and
    # node as small integers (codes), and the first foreach index of its path (-1: none).
    codes: dict[str, int] = field(default_factory=dict)
    _run_codes: Column = field(default_factory=lambda: Column(np.int32))
    _node_codes: Column = field(default_factory=lambda: Column(np.int32))
    _path_heads: Column = field(default_factory=lambda: Column(np.int64))

    @property
    def run_codes(self) -> np.ndarray:
        return self._run_codes.values

    @property
    def node_codes(self) -> np.ndarray:
        return self._node_codes.values

    @property
    def path_heads(self) -> np.ndarray:
        return self._path_heads.values

    def code(self, name: str) -> int:
        return self.codes.setdefault(name, len(self.codes))

    def refresh(self, store: Store) -> None:
        """Append the rows written since the last refresh."""
        with self.lock:
            started = time.perf_counter()
            run_ids = self.selector.run_ids(store)
            self._learn_labels(store, run_ids)
            wanted = sorted({label for labels in self.labels.values() for label in labels})
            if not wanted:
                return
            # Nothing written since the last refresh: one lookup of the largest id.
            newest = store.conn.execute(select(func.max(embeddings.c.id))).scalar() or 0
            if newest <= self.last_id:
                self.refresh_seconds += time.perf_counter() - started
                return
            # Only the id range in SQL: with `run_id IN` SQLite would walk the run's index and
            # read every row of the run at each refresh; the new rows are few.
            stmt = select(
                embeddings.c.id,
                embeddings.c.run_id,
                embeddings.c.node_id,
                embeddings.c.path,
                embeddings.c.model,
                embeddings.c.dim,
                embeddings.c.vector,
                embeddings.c.source,
            ).where(embeddings.c.id > self.last_id, embeddings.c.model.in_(wanted))
            runs_wanted = set(run_ids) if run_ids is not None else None
            keys, vectors = [], []
            for row in store.conn.execute(stmt.order_by(embeddings.c.id)):
                self.last_id = max(self.last_id, row.id)
                if runs_wanted is not None and row.run_id not in runs_wanted:
                    continue
                if self.nodes is not None and row.node_id not in self.nodes:
                    continue
                if row.model not in self.labels.get(row.run_id, ()):
                    continue
                if self.matrix is None:
                    self.matrix = GrowingMatrix(row.dim)
                if row.dim != self.matrix.dim:
                    continue
                keys.append(row.id)
                vectors.append(np.frombuffer(row.vector, dtype="<f4"))
                self.rows.append(
                    RowInfo(
                        row.id,
                        row.run_id,
                        row.node_id or "",
                        tuple(json.loads(row.path or "[]")),
                        row.source or "",
                    )
                )
            if keys and self.matrix is not None:
                self.matrix.append(keys, np.stack(vectors))
                fresh = self.rows[len(self.rows) - len(keys) :]
                self._run_codes.extend([self.code(r.run_id) for r in fresh])
                self._node_codes.extend([self.code(r.node_id) for r in fresh])
                self._path_heads.extend([r.path[0] if r.path else -1 for r in fresh])
            self.refresh_seconds += time.perf_counter() - started

    def _learn_labels(self, store: Store, run_ids: list[str] | None) -> None:
        """Which model names each run used for this identity (read once per run)."""
        stmt = select(runs.c.id, runs.c.models)
        if run_ids is not None:
            unknown = [r for r in run_ids if r not in self.labels]
            if not unknown:
                return
            stmt = stmt.where(runs.c.id.in_(unknown))
        else:
            known = set(self.labels)
            stmt = stmt.where(runs.c.id.not_in(known)) if known else stmt
        for row in store.conn.execute(stmt):
            try:
                models = json.loads(row.models or "{}")
            except json.JSONDecodeError:
                models = {}
            self.labels[row.id] = {
                name
                for name, record in models.items()
                if isinstance(record, dict) and _identity_of(record) == self.identity
            }


_matrices: dict[tuple[str, str, RunSelector, frozenset[str] | None], StoredMatrix] = {}
_matrices_lock = threading.Lock()


def stored_matrix(
    store: Store, identity: str, selector: RunSelector, nodes: Iterable[str] | None
) -> StoredMatrix:
    """The cached matrix of this scope, brought up to date."""
    node_set = frozenset(nodes) if nodes is not None else None
    key = (
        str(store.path.resolve()) if str(store.path) != ":memory:" else str(id(store)),
        identity,
        selector,
        node_set,
    )
    with _matrices_lock:
        found = _matrices.get(key)
        if found is None:
            found = _matrices[key] = StoredMatrix(identity, selector, node_set)
    found.refresh(store)
    return found


def forget_matrices() -> None:
    """Drop every cached matrix (tests that reuse a database path)."""
    with _matrices_lock:
        _matrices.clear()


# --- document chunks ----------------------------------------------------------------------
def document_vectors_for(
    store: Store, identity: str, hashes: Sequence[str]
) -> dict[str, np.ndarray]:
    """The stored vectors of these chunk hashes for this model (the missing ones are absent)."""
    found: dict[str, np.ndarray] = {}
    wanted = sorted(set(hashes))
    for start in range(0, len(wanted), 500):
        stmt = select(document_vectors.c.content_hash, document_vectors.c.vector).where(
            document_vectors.c.model == identity,
            document_vectors.c.content_hash.in_(wanted[start : start + 500]),
        )
        for row in store.conn.execute(stmt):
            found[row.content_hash] = np.frombuffer(row.vector, dtype="<f4")
    return found


def store_document_vectors(store: Store, identity: str, vectors: dict[str, Any]) -> None:
    """Store chunk vectors; a hash stored meanwhile (another run) is kept as it is."""
    rows = []
    for content_hash, vector in vectors.items():
        array = np.asarray(vector, dtype="<f4").ravel()
        rows.append(
            {
                "content_hash": content_hash,
                "model": identity,
                "dim": int(array.shape[0]),
                "vector": array.tobytes(),
                "created": time.time(),
            }
        )
    if rows:
        store._write(insert(document_vectors).prefix_with("OR IGNORE"), rows)
