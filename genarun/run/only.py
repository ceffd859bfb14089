"""Reuse plans for `genarun run`: the cache, and `--only` (run some subtrees, take what they
need from an earlier run of the same tree)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genarun.errors import UserError
from genarun.graph.compiled import CompiledTree
from genarun.graph.plan import check_node_ids, dependents, needed_by, run_bound_nodes, subtree
from genarun.run.reuse import ReusePlan, finished_executions, stored_var_picks
from genarun.store.db import Store
from genarun.store.schema_sql import COLUMNS
from genarun.values import to_json

ONLY_REASON = "not selected (--only)"


def apply_only(compiled: CompiledTree, only: set[str] | list[str]) -> tuple[set[str], set[str]]:
    """Mark the nodes --only leaves out as skipped; return (nodes to run, nodes needed)."""
    check_node_ids(compiled, only, "--only")
    to_run = subtree(compiled, only)
    needed = needed_by(compiled, to_run)
    for node_id, node in compiled.nodes.items():
        if node_id not in to_run and node_id not in needed and node.skip_reason is None:
            node.skip_reason = ONLY_REASON
    return to_run, needed


def source_store(db: Path | None, compiled: CompiledTree) -> Store:
    """The database --only takes outputs from: it must exist (opening a missing one would
    leave an empty database behind a rejected run)."""
    from genarun.store.db import default_db_path

    path = Path(db) if db else default_db_path()
    if str(path) != ":memory:" and not path.is_file():
        raise UserError(
            f"--only: no earlier run of {compiled.loaded.path.resolve()} (no database at {path}) "
            "to take the other nodes' outputs from; run the whole tree first, or name a run with --from"
        )
    return Store(path, writing=True)


def plan_runs(
    store: Store | None,
    compiled: CompiledTree,
    bindings_list: list[dict[str, Any]],
    *,
    only: set[str],
    from_run: str | None,
    cache: bool,
    skip: set[str],
) -> list[ReusePlan]:
    """One reuse plan per matrix run; raises UserError, before anything is written, when
    --only needs outputs that no earlier run has."""
    if not only:
        return [ReusePlan(cache=cache, skip=sorted(skip)) for _ in bindings_list]
    if store is None:
        raise ValueError("--only reads an earlier run: plan_runs needs its store")
    to_run, needed = apply_only(compiled, only)
    needed = {n for n in needed if compiled.nodes[n].skip_reason is None}
    # Needed nodes that read run.id or run.started run too (the stored outputs saw another
    # run's), and so does whatever depends on what runs.
    bound = set(run_bound_nodes(compiled)) & needed
    rerun = sorted(dependents(compiled, {(n, ()): "--only" for n in to_run | bound}))
    plans = []
    for bindings in bindings_list:
        source = _source_run(store, compiled, bindings, from_run)
        _check_source(store, source, needed, only)
        plans.append(
            ReusePlan(
                cache=cache,
                source_run_id=source["id"],
                rerun=rerun,
                only=sorted(only),
                skip=sorted(skip),
                prior=finished_executions(store, source["id"]),
                var_picks=stored_var_picks(source),
            )
        )
    return plans


def _matches(row: dict[str, Any], bindings: dict[str, Any]) -> bool:
    stored = json.loads(row["bindings"]) if row["bindings"] else {}
    return all(
        json.dumps(stored.get(k), sort_keys=True) == json.dumps(to_json(v), sort_keys=True)
        for k, v in bindings.items()
    )


def _source_run(
    store: Store, compiled: CompiledTree, bindings: dict[str, Any], from_run: str | None
) -> dict[str, Any]:
    label = " ".join(f"{k}={v}" for k, v in bindings.items())
    if from_run:
        chosen = store.resolve_run(from_run)
        if _matches(chosen, bindings):
            return chosen
        # A run of a matrix experiment: take the experiment's run with these matrix values.
        for row in store.runs_of_experiment(chosen["experiment_id"]):
            if _matches(row, bindings):
                return row
        raise UserError(
            f"--from {from_run}: run {chosen['id'][:8]} and its experiment have no run with {label}"
        )
    tree_path = str(compiled.loaded.path.resolve())
    candidates = store.query(
        f"SELECT {', '.join(COLUMNS['runs'])} FROM runs WHERE tree_path = ? AND name = ? "
        "ORDER BY started DESC",
        (tree_path, compiled.name),
    )
    for found in candidates:
        if _matches(found, bindings):
            return found
    where = f" with {label}" if label else ""
    raise UserError(
        f"--only: no earlier run of {tree_path}{where} in {store.path} to take the other nodes' outputs from; "
        "run the whole tree first, or name a run with --from"
    )


def _check_source(store: Store, source: dict[str, Any], needed: set[str], only: set[str]) -> None:
    """Every node --only needs must have finished in the source run."""
    rows = store.query(
        "SELECT node_id, status, error FROM executions WHERE run_id = ?", (source["id"],)
    )
    finished = {r["node_id"] for r in rows if r["status"] in ("done", "skipped")}
    errors = {r["node_id"]: r["error"] for r in rows if r["status"] == "failed"}
    missing = []
    for node_id in sorted(needed - finished):
        # A completed run may legitimately have no execution of a node (an empty foreach).
        if node_id in errors:
            missing.append(f"{node_id} (failed: {errors[node_id]})")
        elif source["status"] != "completed":
            missing.append(f"{node_id} (never ran: the run is {source['status']})")
    if missing:
        selected = ", ".join(sorted(only))
        raise UserError(
            f"--only {selected} needs outputs that run {source['id'][:8]} does not have: {'; '.join(missing)}. "
            f"Resume it (`genarun resume {source['id'][:8]}`), run the whole tree, or name another run with --from"
        )
