"""`genarun doctor --fix`: the repairs of what `genarun.experiments.doctor` finds, in an order
where one feeds the next (a removed vector makes an embedding missing, which is computed
again, which makes a diagram stale, which is computed again)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from genarun.errors import GenarunError
from genarun.experiments.doctor import Finding, examine
from genarun.experiments.doctor_orphans import remove_orphan
from genarun.store.db import (
    embeddings,
    persistence,
    runs,
    trajectories,
    trajectory_steps,
)

if TYPE_CHECKING:
    from genarun.store.db import Store


def fix(
    store: Store, findings: list[Finding], *, say: Callable[[str], None] = lambda _: None
) -> list[str]:
    """Repair what can be repaired; returns one line per repair made (or that failed)."""
    done: list[str] = []

    def tell(line: str) -> None:
        done.append(line)
        say(line)

    by_check: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        by_check[f.check].append(f)
    for f in by_check["dead_run"]:
        store.update_run(
            f.data["run_id"],
            status="interrupted",
            error="its process died (marked interrupted by genarun doctor --fix)",
        )
        tell(f"{f.where}: marked interrupted (`genarun resume {f.data['run_id'][:8]}` finishes it)")
    for f in by_check["orphan"]:
        tell(remove_orphan(store, f))
    for f in by_check["gap"]:
        first = f.data["first"]
        with store.transaction():
            store._write(
                delete(trajectory_steps).where(
                    _key(trajectory_steps, f.data["key"]) & (trajectory_steps.c.step >= first)
                )
            )
            store._write(
                delete(embeddings).where(
                    _key(embeddings, f.data["key"]) & (embeddings.c.item >= first)
                )
            )
            store._write(delete(persistence).where(_key(persistence, f.data["key"])))
            store._write(
                update(trajectories)
                .where(_key(trajectories, f.data["key"]))
                .values(
                    length=first,
                    status="failed",
                    stop_reason="failed",
                    error=f"cut before step {first}, which was missing (genarun doctor --fix)",
                )
            )
        tell(f"{f.where}: cut before the missing step {first} (diagrams are computed again)")
    for f in by_check["bad_vector"]:
        with store.transaction():
            store._write(delete(embeddings).where(embeddings.c.id == f.data["id"]))
            _drop_ref(store, f.data["key"], f.data["id"])
        tell(f"{f.where}: removed the unusable '{f.data['model']}' vector")
    if by_check["bad_vector"] or by_check["gap"]:
        # Removing vectors or steps makes embeddings missing or diagrams stale: look again.
        fresh = examine(store)
        by_check["missing_embedding"] = [f for f in fresh if f.check == "missing_embedding"]
        by_check["missing_diagram"] = [f for f in fresh if f.check == "missing_diagram"]
    _embed_missing(store, by_check["missing_embedding"], tell)
    _diagrams(store, by_check["missing_diagram"], tell)
    return done


def _embed_missing(store: Store, found: list[Finding], tell: Callable[[str], None]) -> None:
    from genarun.experiments.reembed import embed_trajectory, resolve_embedder

    for f in found:
        run_id = f.data["key"][0]
        run = dict(store.conn.execute(select(runs).where(runs.c.id == run_id)).mappings().one())
        t = dict(
            store.conn.execute(select(trajectories).where(_key(trajectories, f.data["key"])))
            .mappings()
            .one()
        )
        label = f.data["model"]
        try:
            spec = resolve_embedder(label, run)
            report = embed_trajectory(store, run, t, spec, label, steps_wanted=set(f.data["steps"]))
        except GenarunError as exc:
            tell(f"{f.where}: could not embed with '{label}': {exc}")
            continue
        tell(
            f"{f.where}: embedded {report.embedded} step{'s' if report.embedded != 1 else ''} with '{label}'"
        )


def _diagrams(store: Store, found: list[Finding], tell: Callable[[str], None]) -> None:
    from genarun.experiments.topology import DiagramKey, diagrams_for

    for f in found:
        run_id, node_id, path = f.data["key"]
        key = DiagramKey(run_id, node_id, path, f.data["model"], f.data["maxdim"])
        try:
            diagrams_for(store, key, metric=f.data["metric"], force=True)
        except GenarunError as exc:
            tell(f"{f.where}: could not compute the '{f.data['model']}' diagram: {exc}")
            continue
        tell(
            f"{f.where}: computed the H0..H{f.data['maxdim']} diagram of the '{f.data['model']}' embeddings"
        )


def _key(table: Any, key: list[str]) -> Any:
    run_id, node_id, path = key
    return (table.c.run_id == run_id) & (table.c.node_id == node_id) & (table.c.path == path)


def _drop_ref(store: Store, key: list[str], embedding_id: int) -> None:
    """Remove references to a deleted embedding from its trajectory's steps."""
    rows = store.conn.execute(
        select(trajectory_steps.c.id, trajectory_steps.c.embeddings).where(
            _key(trajectory_steps, key), trajectory_steps.c.embeddings.like(f"%{embedding_id}%")
        )
    ).all()
    for row in rows:
        refs = json.loads(row.embeddings or "{}")
        kept = {m: ref for m, ref in refs.items() if ref[0] != embedding_id}
        if kept != refs:
            store._write(
                update(trajectory_steps)
                .where(trajectory_steps.c.id == row.id)
                .values(embeddings=json.dumps(kept))
            )
