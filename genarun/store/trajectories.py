"""Queries over trajectories (cycle nodes), their steps, embeddings and persistence diagrams.

The tables live in `genarun.store.db`; this module keeps the trajectory-specific reads and
writes out of the general store, so each stays one concern.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, func, insert, select, update

from genarun.errors import StoreError
from genarun.store.db import (
    embeddings,
    executions,
    experiments,
    persistence,
    runs,
    trajectories,
    trajectory_steps,
)

if TYPE_CHECKING:
    import numpy as np

    from genarun.store.db import Store


# --- trajectories and steps ------------------------------------------------------------------
def begin_trajectory(store: Store, row: dict[str, Any]) -> None:
    """Create a trajectory's row, or mark an existing one (a resumed run) as running again."""
    key = (
        (trajectories.c.run_id == row["run_id"])
        & (trajectories.c.node_id == row["node_id"])
        & (trajectories.c.path == row["path"])
    )
    found = store.conn.execute(select(trajectories.c.id).where(key)).first()
    values = {**row, "updated": time.time()}
    if found is None:
        store._write(insert(trajectories).values(**values))
    else:
        values.update(status="running", stop_reason=None, error=None)
        store._write(update(trajectories).where(trajectories.c.id == found.id).values(**values))


# Prebuilt: these run at every step of every trajectory (building statements per call cost 4x).
_UPDATE_TRAJECTORY = update(trajectories).where(
    (trajectories.c.run_id == bindparam("key_run_id"))
    & (trajectories.c.node_id == bindparam("key_node_id"))
    & (trajectories.c.path == bindparam("key_path"))
)
_INSERT_STEP = insert(trajectory_steps)


def update_trajectory(store: Store, run_id: str, node_id: str, path: str, **values: Any) -> None:
    store._write(
        _UPDATE_TRAJECTORY,
        {
            **values,
            "updated": time.time(),
            "key_run_id": run_id,
            "key_node_id": node_id,
            "key_path": path,
        },
    )


def add_step(store: Store, row: dict[str, Any]) -> None:
    """Store one finished step (committed at once: a crash never loses it)."""
    store._write(_INSERT_STEP, {**row, "created": time.time()})


def stored_steps(
    store: Store, run_id: str, node_id: str | None = None, path: str | None = None
) -> list[dict[str, Any]]:
    """The stored steps of a run's trajectories, in step order."""
    stmt = select(trajectory_steps).where(trajectory_steps.c.run_id == run_id)
    if node_id is not None:
        stmt = stmt.where(trajectory_steps.c.node_id == node_id)
    if path is not None:
        stmt = stmt.where(trajectory_steps.c.path == path)
    stmt = stmt.order_by(
        trajectory_steps.c.node_id, trajectory_steps.c.path, trajectory_steps.c.step
    )
    return [dict(r) for r in store.conn.execute(stmt).mappings()]


def trajectories_of(store: Store, run_ids: Iterable[str]) -> list[dict[str, Any]]:
    ids = list(run_ids)
    stmt = select(trajectories).where(trajectories.c.run_id.in_(ids)).order_by(trajectories.c.id)
    return [dict(r) for r in store.conn.execute(stmt).mappings()]


def embedding_series(
    store: Store, run_id: str, node_id: str, path: str, model: str
) -> tuple[list[int], np.ndarray]:
    """A trajectory's embeddings by one model, in step order: (steps, matrix n x dim)."""
    import numpy as np

    stmt = (
        select(embeddings.c.item, embeddings.c.vector)
        .where(
            embeddings.c.run_id == run_id,
            embeddings.c.node_id == node_id,
            embeddings.c.path == path,
            embeddings.c.model == model,
        )
        .order_by(embeddings.c.item, embeddings.c.id)
    )
    steps: list[int] = []
    vectors: list[np.ndarray] = []
    for row in store.conn.execute(stmt):
        if steps and steps[-1] == row.item:  # a step re-embedded after a crash: keep the newest
            vectors[-1] = np.frombuffer(row.vector, dtype="<f4")
            continue
        steps.append(int(row.item))
        vectors.append(np.frombuffer(row.vector, dtype="<f4"))
    matrix = np.vstack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)
    return steps, matrix


def embedding_models_of(store: Store, run_id: str, node_id: str, path: str) -> list[str]:
    stmt = (
        select(embeddings.c.model)
        .where(
            embeddings.c.run_id == run_id,
            embeddings.c.node_id == node_id,
            embeddings.c.path == path,
        )
        .distinct()
        .order_by(embeddings.c.model)
    )
    return [r.model for r in store.conn.execute(stmt)]


# --- copying a reused trajectory to another run ------------------------------------------------
# (run_id, node_id, path as stored, e.g. "[0]")
TrajectoryKey = tuple[str, str, str]


def execution_key(store: Store, execution_id: int) -> TrajectoryKey | None:
    """The (run, node, path) of an execution."""
    stmt = select(executions.c.run_id, executions.c.node_id, executions.c.path).where(
        executions.c.id == execution_id
    )
    row = store.conn.execute(stmt).first()
    return (row.run_id, row.node_id, row.path) if row else None


def has_trajectory(store: Store, key: TrajectoryKey) -> bool:
    stmt = select(trajectories.c.id).where(_key(trajectories, key))
    return store.conn.execute(stmt).first() is not None


def copy_trajectory(
    store: Store, source: TrajectoryKey, target: TrajectoryKey, image: Callable[[int, str], str]
) -> dict[int, int]:
    """Copy a trajectory's row, steps, embeddings and persistence diagrams to another key, in
    one transaction; returns each copied embedding's new id by its old one.

    Image paths (step values, embedded sources) become image(step, path), the target run's
    copy of that step's image; image() runs before any write, so a missing image (it raises)
    leaves the store unchanged.
    Rows the target already had are replaced: a crash after an earlier copy, before the
    reusing execution was recorded, copies again on resume. Diagrams are copied only when
    they were computed from every step the trajectory has (one computed while it ran is
    stale; `diagrams_for` computes it afresh when asked): the vectors are copied bit for bit,
    so a copied diagram is exactly what recomputing it would give, without the cost.
    """
    conn = store.conn
    trajectory = (
        conn.execute(select(trajectories).where(_key(trajectories, source))).mappings().first()
    )
    if trajectory is None:
        return {}
    steps = [
        dict(r)
        for r in conn.execute(
            select(trajectory_steps)
            .where(_key(trajectory_steps, source))
            .order_by(trajectory_steps.c.step)
        ).mappings()
    ]
    vectors = [
        dict(r)
        for r in conn.execute(
            select(embeddings).where(_key(embeddings, source)).order_by(embeddings.c.id)
        ).mappings()
    ]
    diagrams = [
        dict(r)
        for r in conn.execute(select(persistence).where(_key(persistence, source))).mappings()
    ]
    moved = {s["value"]: image(s["step"], s["value"]) for s in steps if s["kind"] == "image"}
    points: dict[str, set[int]] = {}  # the steps embedded by each model (not the start prompt)
    for v in vectors:
        if v["item"] >= 0:
            points.setdefault(v["model"], set()).add(v["item"])
    run_id, node_id, path = target
    renamed = {"run_id": run_id, "node_id": node_id, "path": path}
    with store.transaction():
        for table in (trajectories, trajectory_steps, embeddings, persistence):
            store._write(delete(table).where(_key(table, target)))
        store._write(insert(trajectories).values({**_without_id(dict(trajectory)), **renamed}))
        rows = [
            {**_without_id(v), **renamed, "source": moved.get(v["source"], v["source"])}
            for v in vectors
        ]
        ids = dict(zip((v["id"] for v in vectors), store.add_embeddings(rows), strict=True))
        copies = []
        for s in steps:
            refs = {
                m: [ids.get(i, i), dim]
                for m, (i, dim) in json.loads(s["embeddings"] or "{}").items()
            }
            value = moved.get(s["value"], s["value"]) if s["kind"] == "image" else s["value"]
            copies.append(
                {**_without_id(s), **renamed, "value": value, "embeddings": json.dumps(refs)}
            )
        if copies:
            store._write(insert(trajectory_steps), copies)
        current = [
            {**_without_id(d), **renamed}
            for d in diagrams
            if d["points"] == len(points.get(d["embedding_model"], ()))
        ]
        if current:
            store._write(insert(persistence), current)
    return ids


def _key(table: Any, key: TrajectoryKey) -> Any:
    run_id, node_id, path = key
    return (table.c.run_id == run_id) & (table.c.node_id == node_id) & (table.c.path == path)


def _without_id(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "id"}


# --- persistence diagrams --------------------------------------------------------------------
def find_persistence(
    store: Store, run_id: str, node_id: str, path: str, model: str, maxdim: int
) -> dict[str, Any] | None:
    stmt = select(persistence).where(
        persistence.c.run_id == run_id,
        persistence.c.node_id == node_id,
        persistence.c.path == path,
        persistence.c.embedding_model == model,
        persistence.c.maxdim == maxdim,
    )
    row = store.conn.execute(stmt).mappings().first()
    return dict(row) if row else None


def add_persistence(store: Store, row: dict[str, Any]) -> None:
    store._write(insert(persistence).values(**row, created=time.time()))


def delete_persistence(store: Store, row_id: int) -> None:
    store._write(delete(persistence).where(persistence.c.id == row_id))


def persistence_of(store: Store, run_ids: Iterable[str]) -> list[dict[str, Any]]:
    ids = list(run_ids)
    stmt = select(persistence).where(persistence.c.run_id.in_(ids)).order_by(persistence.c.id)
    return [dict(r) for r in store.conn.execute(stmt).mappings()]


# --- experiments -----------------------------------------------------------------------------
def list_experiments(store: Store, limit: int = 50) -> list[dict[str, Any]]:
    counts = (
        select(runs.c.experiment_id, func.count().label("runs"))
        .group_by(runs.c.experiment_id)
        .subquery()
    )
    stmt = (
        select(experiments, counts.c.runs)
        .outerjoin(counts, counts.c.experiment_id == experiments.c.id)
        .order_by(experiments.c.created.desc())
        .limit(limit)
    )
    return [dict(r) for r in store.conn.execute(stmt).mappings()]


def resolve_experiment(store: Store, ref: str) -> dict[str, Any]:
    """An experiment by id, unique id prefix, or `latest` (the newest that has runs: a tree
    rejected before it started left an empty experiment in databases of older versions)."""
    if ref == "latest":
        has_runs = select(runs.c.id).where(runs.c.experiment_id == experiments.c.id).exists()
        row = (
            store.conn.execute(
                select(experiments).where(has_runs).order_by(experiments.c.created.desc()).limit(1)
            )
            .mappings()
            .first()
        )
        if row is None:
            raise StoreError(f"no experiments with runs in {store.path}: run a tree first")
        return dict(row)
    rows = (
        store.conn.execute(
            select(experiments).where(experiments.c.id.like(ref.lower() + "%")).limit(6)
        )
        .mappings()
        .all()
    )
    if not rows:
        raise StoreError(
            f"no experiment matches '{ref}' in {store.path} (see `genarun experiments list`)"
        )
    if len(rows) > 1:
        shown = ", ".join(r["id"][:12] for r in rows[:5])
        raise StoreError(
            f"'{ref}' matches several experiments ({shown}...): give more characters of the id"
        )
    return dict(rows[0])


def run_or_experiment_runs(store: Store, ref: str) -> list[dict[str, Any]]:
    """The runs named by REF: a run (id or prefix), else an experiment; `latest` is the newest
    experiment (all its runs), `all` every run in the database (PANIC-TDA's "all runs")."""
    if ref == "latest":
        return store.runs_of_experiment(resolve_experiment(store, ref)["id"])
    if ref == "all":
        every = [
            dict(r)
            for r in store.conn.execute(select(runs).order_by(runs.c.started, runs.c.id)).mappings()
        ]
        if not every:
            raise StoreError(f"no runs in {store.path}")
        return every
    try:
        return [store.resolve_run(ref)]
    except StoreError as run_error:
        if "matches several" in str(run_error) or not re.fullmatch(
            r"[0-9a-f]+", ref.strip().lower()
        ):
            raise
        try:
            experiment = resolve_experiment(store, ref)
        except StoreError:
            raise StoreError(
                f"no run or experiment matches '{ref}' in {store.path} (see `genarun runs list` and `genarun experiments list`)"
            ) from None
        found = store.runs_of_experiment(experiment["id"])
        if not found:
            raise StoreError(
                f"experiment {experiment['id'][:8]} ({experiment['name']}) has no runs: its tree "
                "was rejected before it started; name another (see `genarun experiments list`)"
            ) from None
        return found


# How many leading steps tell the output kind at each position of a network (longer networks
# leave the positions after these counted as embedded by every model).
_KNOWN_POSITIONS = 16


def embedding_plan(
    store: Store, run_ids: list[str]
) -> tuple[dict[str, set[str]], dict[TrajectoryKey, dict[int, str]]]:
    """What the stored rows tell about what will be embedded: the kinds (text, image) each
    embedding model has embedded so far (the start prompt is text), and the output kind of each
    stored leading step of each trajectory."""
    model_kinds: dict[str, set[str]] = {}
    step_kinds: dict[TrajectoryKey, dict[int, str]] = {}
    early = trajectory_steps.c.step < _KNOWN_POSITIONS
    for row in store.conn.execute(
        select(
            trajectory_steps.c.run_id,
            trajectory_steps.c.node_id,
            trajectory_steps.c.path,
            trajectory_steps.c.step,
            trajectory_steps.c.kind,
        ).where(trajectory_steps.c.run_id.in_(run_ids), early)
    ):
        step_kinds.setdefault((row.run_id, row.node_id, row.path), {})[row.step] = row.kind
    stmt = select(
        embeddings.c.run_id,
        embeddings.c.node_id,
        embeddings.c.path,
        embeddings.c.item,
        embeddings.c.model,
    ).where(embeddings.c.run_id.in_(run_ids), embeddings.c.item < _KNOWN_POSITIONS)
    for row in store.conn.execute(stmt):
        kind = (
            "text"
            if row.item < 0
            else step_kinds.get((row.run_id, row.node_id, row.path), {}).get(row.item)
        )
        if kind:
            model_kinds.setdefault(row.model, set()).add(kind)
    return model_kinds, step_kinds


def expected_embeddings(
    trajectory: dict[str, Any], model_kinds: dict[str, set[str]], step_kinds: dict[int, str]
) -> int:
    """The embeddings a trajectory will have once it ran all its steps: per model, the start
    prompt and each step whose output kind the model takes. A model not seen embedding yet, or
    a position whose kind is unknown, counts as embedded (an upper bound, as `max_steps` is)."""
    network = json.loads(trajectory["network"] or "[]")
    period = max(1, len(network))
    kinds_at = {step % period: kind for step, kind in step_kinds.items()}
    total = 0
    for model in json.loads(trajectory["embed_models"] or "[]"):
        takes = model_kinds.get(model)
        total += int(takes is None or "text" in takes)
        total += sum(
            1
            for step in range(trajectory["max_steps"])
            if takes is None
            or kinds_at.get(step % period, "") in takes
            or step % period not in kinds_at
        )
    return total


def progress_counts(store: Store, run_ids: list[str]) -> dict[str, dict[str, int]]:
    """Per run: executions done/failed, trajectory steps, embeddings, persistence diagrams."""
    out: dict[str, dict[str, int]] = {
        r: {"executions": 0, "failed": 0, "steps": 0, "embeddings": 0, "diagrams": 0}
        for r in run_ids
    }
    queries = [
        (
            "executions",
            select(executions.c.run_id, func.count())
            .where(executions.c.run_id.in_(run_ids), executions.c.status == "done")
            .group_by(executions.c.run_id),
        ),
        (
            "failed",
            select(executions.c.run_id, func.count())
            .where(executions.c.run_id.in_(run_ids), executions.c.status == "failed")
            .group_by(executions.c.run_id),
        ),
        (
            "steps",
            select(trajectory_steps.c.run_id, func.count())
            .where(trajectory_steps.c.run_id.in_(run_ids))
            .group_by(trajectory_steps.c.run_id),
        ),
        (
            "embeddings",
            select(embeddings.c.run_id, func.count())
            .where(embeddings.c.run_id.in_(run_ids))
            .group_by(embeddings.c.run_id),
        ),
        (
            "diagrams",
            select(persistence.c.run_id, func.count())
            .where(persistence.c.run_id.in_(run_ids))
            .group_by(persistence.c.run_id),
        ),
    ]
    for name, stmt in queries:
        for run_id, count in store.conn.execute(stmt):
            out[run_id][name] = int(count)
    return out
