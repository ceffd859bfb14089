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
from sqlalchemy import insert, select

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

    def refresh(self, store: Store) -> None:
        """Append the rows written since the last refresh."""
        with self.lock:
            started = time.perf_counter()
            run_ids = self.selector.run_ids(store)
            self._learn_labels(store, run_ids)
            wanted = sorted({label for labels in self.labels.values() for label in labels})
            if not wanted:
                return
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
            if run_ids is not None:
                stmt = stmt.where(embeddings.c.run_id.in_(run_ids))
            if self.nodes is not None:
                stmt = stmt.where(embeddings.c.node_id.in_(sorted(self.nodes)))
            keys, vectors = [], []
            for row in store.conn.execute(stmt.order_by(embeddings.c.id)):
                self.last_id = max(self.last_id, row.id)
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
