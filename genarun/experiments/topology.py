"""Persistent homology of stored trajectories, and distances between runs' diagrams.

Diagrams are computed once per (run, cycle node, foreach path, embedding model, maxdim) and kept
in the `persistence` table; asking again reads them back.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from genarun.errors import StoreError
from genarun.models.weights import resolved_text
from genarun.store import trajectories as tstore
from genarun.store.reports import run_models

if TYPE_CHECKING:
    import numpy as np

    from genarun.analysis import Diagrams
    from genarun.store.db import Store


@dataclass(frozen=True)
class DiagramKey:
    run_id: str
    node_id: str
    path: str
    model: str
    maxdim: int


def trajectory_points(store: Store, run_id: str, node_id: str, path: str, model: str) -> np.ndarray:
    """The embeddings of a trajectory's outputs (step 0 on; not the start prompt), in order."""
    steps, matrix = tstore.embedding_series(store, run_id, node_id, path, model)
    keep = [i for i, step in enumerate(steps) if step >= 0]
    return matrix[keep]


@dataclass(frozen=True)
class DiagramJob:
    """What computing one trajectory's diagrams needs, read from the store: its points, and the
    stored diagrams when they still answer (same metric, as many points)."""

    key: DiagramKey
    metric: str
    points: np.ndarray
    stored: Diagrams | None
    stale_id: int | None = None  # a stored row of another metric or fewer points: replaced

    def compute(self) -> Diagrams:
        """The diagrams: pure CPU work, touching no store (a kind runs it as a `Compute`)."""
        from genarun.analysis import persistence_diagrams

        return persistence_diagrams(self.points, maxdim=self.key.maxdim, metric=self.metric)  # type: ignore[arg-type]


def plan_diagrams(
    store: Store, key: DiagramKey, *, metric: str = "cosine", force: bool = False
) -> DiagramJob:
    """Read what a trajectory's diagrams need; `stored` is set when nothing is to compute."""
    from genarun.analysis import Diagrams

    found = tstore.find_persistence(store, key.run_id, key.node_id, key.path, key.model, key.maxdim)
    points = trajectory_points(store, key.run_id, key.node_id, key.path, key.model)
    if found is not None and not force:
        stored = Diagrams.from_json(json.loads(found["diagrams"]))
        # Only a diagram of these very points under this metric answers: one computed under
        # another metric, or before the trajectory had all its steps, is computed again.
        if stored.metric == metric and found["points"] == len(points):
            return DiagramJob(key, metric, points, stored)
    if len(points) == 0:
        raise StoreError(
            f"run {key.run_id[:8]} node '{key.node_id}': no embeddings by '{key.model}' to compute a diagram from"
        )
    return DiagramJob(key, metric, points, None, found["id"] if found is not None else None)


def save_diagrams(store: Store, job: DiagramJob, diagrams: Diagrams, seconds: float) -> None:
    """Store the diagrams computed for `job`, in place of a stale row."""
    key = job.key
    if job.stale_id is not None:
        tstore.delete_persistence(store, job.stale_id)
    tstore.add_persistence(
        store,
        {
            "run_id": key.run_id,
            "node_id": key.node_id,
            "path": key.path,
            "embedding_model": key.model,
            "maxdim": key.maxdim,
            "points": len(job.points),
            "diagrams": json.dumps(diagrams.to_json()),
            "entropy": json.dumps(list(diagrams.entropy)),
            "duration": seconds,
        },
    )


def diagrams_for(
    store: Store, key: DiagramKey, *, metric: str = "cosine", force: bool = False
) -> tuple[Diagrams, bool]:
    """The stored diagrams of a trajectory, computing and storing them when missing or stale
    (another metric, fewer points than the trajectory now has).

    Returns (diagrams, computed): computed is False when they were already stored.
    """
    job = plan_diagrams(store, key, metric=metric, force=force)
    if job.stored is not None:
        return job.stored, False
    started = time.perf_counter()
    diagrams = job.compute()
    save_diagrams(store, job, diagrams, time.perf_counter() - started)
    return diagrams, True


def trajectory_keys(
    store: Store, run_ids: list[str], maxdim: int, models: list[str] | None = None
) -> list[DiagramKey]:
    """Every (trajectory, embedding model) of these runs with stored embeddings."""
    keys = []
    for t in tstore.trajectories_of(store, run_ids):
        available = tstore.embedding_models_of(store, t["run_id"], t["node_id"], t["path"])
        for model in available:
            if models and model not in models:
                continue
            keys.append(DiagramKey(t["run_id"], t["node_id"], t["path"], model, maxdim))
    return keys


NO_TRAJECTORIES = (
    "these runs have no trajectories with embeddings (run a tree with a cycle node that embeds)"
)


def require_keys(
    store: Store, run_ids: list[str], maxdim: int, models: list[str] | None = None
) -> list[DiagramKey]:
    """trajectory_keys, where finding none is the user's to hear about: a command asked to
    work on these runs' trajectories, and doing nothing must not look like success."""
    keys = trajectory_keys(store, run_ids, maxdim, models)
    if keys:
        return keys
    present = sorted({k.model for k in trajectory_keys(store, run_ids, maxdim)}) if models else []
    if present:
        raise StoreError(
            f"no embeddings by {', '.join(models or [])} in these runs; they have: {', '.join(present)}"
        )
    raise StoreError(NO_TRAJECTORIES)


def compute_all(
    store: Store,
    run_ids: list[str],
    *,
    maxdim: int = 1,
    models: list[str] | None = None,
    force: bool = False,
    on_progress: Any = None,
) -> tuple[int, int]:
    """Compute the missing diagrams of these runs; returns (computed, already stored)."""
    computed = reused = 0
    for key in require_keys(store, run_ids, maxdim, models):
        _diagrams, fresh = diagrams_for(store, key, force=force)
        computed += fresh
        reused += not fresh
        if on_progress:
            on_progress(key, fresh)
    return computed, reused


@dataclass
class Comparison:
    """Distances between the diagrams of several trajectories, for one model and dimension."""

    labels: list[str]
    keys: list[DiagramKey]
    dim: int
    model: str
    wasserstein: np.ndarray
    bottleneck: np.ndarray
    # Which diagrams have no feature in `dim`: all of them make every distance 0, which says
    # nothing about how the trajectories differ.
    empty: list[bool] = field(default_factory=list)
    # The embedding model's name with what it resolved to (`embedder = tiny-clip (...)`).
    model_text: str = ""

    def emptiness_note(self) -> str | None:
        """What a reader must know about empty diagrams before reading the matrix, or None."""
        n, count = len(self.empty), sum(self.empty)
        if count == 0:
            return None
        if count == n:
            return (
                f"all {n} H{self.dim} diagrams of {self.model} embeddings are empty (no H{self.dim} "
                f"feature in any trajectory), so every distance is 0 and says nothing about how "
                f"they differ: compare another dimension (--dim 0), or run longer trajectories"
            )
        shown = ", ".join(f"[{i}]" for i, e in enumerate(self.empty) if e)
        return f"{count} of {n} H{self.dim} diagrams of {self.model} embeddings are empty: {shown}"


def compare(
    store: Store,
    runs: list[dict[str, Any]],
    *,
    model: str | None = None,
    dim: int = 1,
    maxdim: int = 1,
) -> Comparison:
    """Wasserstein (p=1) and bottleneck distance matrices between runs' diagrams."""
    from genarun.analysis import distance_matrix

    if dim > maxdim:
        maxdim = dim
    run_ids = [r["id"] for r in runs]
    keys = require_keys(store, run_ids, maxdim)
    models = sorted({k.model for k in keys})
    if model is None:
        if len(models) > 1:
            raise StoreError(
                f"the runs were embedded by several models ({', '.join(models)}): choose one with --embedding"
            )
        model = models[0]
    elif model not in models:
        raise StoreError(
            f"no embeddings by '{model}' in these runs; they have: {', '.join(models)}"
        )
    keys = [k for k in keys if k.model == model]
    if len(keys) < 2:
        only = keys[0].run_id[:8] if keys else "none"
        raise StoreError(
            f"tda compare needs at least two trajectories embedded by '{model}'; these runs have {len(keys)} (run {only}): "
            "name an experiment, or several runs"
        )
    diagrams = [diagrams_for(store, k)[0] for k in keys]
    by_id = {r["id"]: r for r in runs}
    labels = [
        _label(by_id[k.run_id], k, multi=len({(x.node_id, x.path) for x in keys}) > len(run_ids))
        for k in keys
    ]
    return Comparison(
        labels,
        keys,
        dim,
        model,
        distance_matrix(diagrams, dim, "wasserstein"),
        distance_matrix(diagrams, dim, "bottleneck"),
        [dim >= len(d.diagrams) or len(d.diagrams[dim]) == 0 for d in diagrams],
        resolved_text(model, next((m[model] for m in map(run_models, runs) if model in m), None)),
    )


def embedding_models(store: Store, runs: list[dict[str, Any]]) -> list[str]:
    """The embedding models of these runs' trajectories, sorted."""
    return sorted({k.model for k in trajectory_keys(store, [r["id"] for r in runs], 0)})


def _label(run: dict[str, Any], key: DiagramKey, multi: bool) -> str:
    bindings = json.loads(run["bindings"]) if run.get("bindings") else {}
    shown = " ".join(
        f"{k}={_short(v)}" for k, v in bindings.items() if k not in ("embedding", "embedding_model")
    )
    where = f" {key.node_id}{key.path}" if multi else ""
    return f"{run['id'][:8]}{where}" + (f" {shown}" if shown else "")


def _short(value: Any) -> str:
    if isinstance(value, list):
        return ">".join(map(str, value))
    return str(value)[:30]
