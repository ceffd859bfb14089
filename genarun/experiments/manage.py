"""Managing stored experiments: copying some into another database (`export db`), deleting one
with its folders (`experiments delete`), and embedding past runs with another model
(`genarun embed`)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from genarun.errors import StoreError, UserError
from genarun.store.clusters import TABLES as cluster_tables
from genarun.store.clusters import clusterings, clusters
from genarun.store.db import (
    experiments,
    runs,
    trajectories,
    trajectory_steps,
)
from genarun.store.identifiers import quoted, shown, table_columns
from genarun.store.run_rows import run_tables

if TYPE_CHECKING:
    from genarun.store.db import Store


# --- export db ----------------------------------------------------------------------------------
def copy_experiments(store: Store, experiment_ids: list[str], target: Path) -> dict[str, int]:
    """Copy experiments with everything they own (runs, executions, logs, embeddings,
    trajectories, steps, diagrams, and the clusterings of only their runs) into the database
    `target`, ids kept, in one transaction; returns rows copied per table. A row whose id the
    target already holds for another row makes nothing copied."""
    from genarun.store.db import Store as TargetStore

    run_ids = [
        r.id
        for r in store.conn.execute(
            select(runs.c.id).where(runs.c.experiment_id.in_(experiment_ids))
        )
    ]
    source = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True)
    copied: dict[str, int] = {}
    try:
        marks = ",".join("?" * len(run_ids)) or "NULL"
        wanted = {
            "experiments": (f"id IN ({','.join('?' * len(experiment_ids))})", experiment_ids),
            "runs": (f"id IN ({marks})", run_ids),
        }
        present = {
            name for (name,) in source.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        for owned in run_tables():  # parents first; clusterings' tables go whole, below
            if owned.table.name in present and owned.table not in cluster_tables:
                wanted[owned.table.name] = (owned.where_sql(marks), run_ids)
        # A clustering is copied when all its runs are (its labels would be half elsewhere).
        inside = set(run_ids)
        whole = [
            c.id
            for c in store.conn.execute(select(clusterings.c.id, clusterings.c.run_ids))
            if set(json.loads(c.run_ids)) <= inside
        ]
        cmarks = ",".join("?" * len(whole)) or "NULL"
        wanted["clusterings"] = (f"id IN ({cmarks})", whole)
        wanted["clusters"] = (f"clustering_id IN ({cmarks})", whole)
        wanted["cluster_labels"] = (f"clustering_id IN ({cmarks})", whole)
        # Every table's columns are checked before the target is made or touched.
        columns = {table: _genarun_columns(source, table, store.path) for table in wanted}
        made = TargetStore(target, writing=True)  # creates the tables, refuses a damaged file
        made.close()
        source.execute("ATTACH DATABASE ? AS target", (str(target),))
        try:
            with source:  # one transaction over both files
                for table, (where, params) in wanted.items():
                    names = ", ".join(map(quoted, columns[table]))
                    name = quoted(table)
                    cursor = source.execute(
                        f"INSERT INTO target.{name} ({names}) SELECT {names} FROM main.{name} "
                        f"WHERE {where}",
                        params,
                    )
                    copied[table] = cursor.rowcount
                # The folders stay the original's: deleting the copy must not remove them.
                source.executemany(
                    "INSERT OR REPLACE INTO target.copied_experiments (experiment_id, source_db, "
                    "copied) VALUES (?, ?, ?)",
                    [(e, str(store.path.resolve()), time.time()) for e in experiment_ids],
                )
        except sqlite3.IntegrityError as exc:
            raise StoreError(
                f"cannot copy into {target}: it already holds rows with the same ids ({exc}); "
                "nothing was copied: name a new file"
            ) from None
    finally:
        source.close()
    return copied


def _genarun_columns(source: sqlite3.Connection, table: str, path: Path) -> list[str]:
    """The columns of the source's `table`, each one genarun's schema defines for it; a file
    whose table has another (a hostile or hand-edited file: its names would become SQL)
    is refused before anything is copied."""
    from genarun.store.tables import metadata

    known = metadata.tables.get(table)
    if known is None:  # the tables copied are genarun's own: a name not among them is a bug
        raise StoreError(f"cannot copy table {shown(table)}: genarun's schema has no such table")
    have = table_columns(source, table)
    strange = [column for column in have if column not in known.c]
    if strange:
        raise UserError(
            f"cannot copy from {path}: its table '{table}' has "
            + ("a column" if len(strange) == 1 else "columns")
            + f" genarun's schema does not define ({', '.join(map(shown, strange[:5]))}"
            + (f" and {len(strange) - 5} more" if len(strange) > 5 else "")
            + "), so genarun did not write this file as it is (it was changed by hand or made "
            "to look like a genarun database); nothing was copied. Copy from a database genarun "
            "wrote, or check the file with `genarun doctor --db FILE`"
        )
    return have


# --- experiments delete ------------------------------------------------------------------------
@dataclass
class Deletion:
    experiment: dict[str, Any]
    runs: list[dict[str, Any]]
    folders: list[Path] = field(default_factory=list)
    copy_of: str | None = None  # a copy (export db) of this database's: its folders are kept


def plan_deletion(store: Store, experiment: dict[str, Any]) -> Deletion:
    """What deleting an experiment removes; a run still running (its process alive) refuses."""
    from genarun.store.claims import describe_holder
    from genarun.store.folders import is_output_folder
    from genarun.store.processes import holder_alive

    owned = store.runs_of_experiment(experiment["id"])
    for run in owned:
        if run["status"] == "running" and holder_alive(run) is not False:
            raise UserError(
                f"experiment {experiment['id'][:8]} ({experiment['name']}) is running: run "
                f"{run['id'][:8]} is held by {describe_holder(run)}; stop it first (Ctrl-C), or "
                "wait for it to end; nothing was deleted"
            )
    from genarun.store.copies import copied_experiments

    copy_of = store.conn.execute(
        select(copied_experiments.c.source_db).where(
            copied_experiments.c.experiment_id == experiment["id"]
        )
    ).scalar()
    folders = []
    for path in [] if copy_of else [experiment.get("out_dir"), *(r.get("out_dir") for r in owned)]:
        # Only folders a run wrote (marked as output folders) are removed, never a path a
        # damaged row might name.
        if path and Path(path).is_dir() and is_output_folder(Path(path)):
            folders.append(Path(path))
    tops = [f for f in folders if not any(f != g and g in f.parents for g in folders)]
    return Deletion(experiment, owned, sorted(set(tops)), copy_of)


def delete_experiment(store: Store, plan: Deletion) -> dict[str, int]:
    """Delete the experiment's rows (one transaction), then its folders; returns rows removed."""
    run_ids = [r["id"] for r in plan.runs]
    removed: dict[str, int] = {}
    with store.transaction():
        for owned in reversed(run_tables()):  # children first: no row points at a removed one
            removed[owned.table.name] = store._write(
                delete(owned.table).where(owned.where(run_ids))
            ).rowcount
        # Clusterings left without any label of a remaining run go too.
        for c in store.conn.execute(select(clusterings.c.id, clusterings.c.run_ids)).all():
            if set(json.loads(c.run_ids)) <= set(run_ids):
                store._write(delete(clusters).where(clusters.c.clustering_id == c.id))
                store._write(delete(clusterings).where(clusterings.c.id == c.id))
        removed["runs"] = store._write(delete(runs).where(runs.c.id.in_(run_ids))).rowcount
        store._write(delete(experiments).where(experiments.c.id == plan.experiment["id"]))
        from genarun.store.copies import copied_experiments

        store._write(
            delete(copied_experiments).where(
                copied_experiments.c.experiment_id == plan.experiment["id"]
            )
        )
    for folder in plan.folders:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


# --- genarun embed -----------------------------------------------------------------------------
def embed_runs(
    store: Store,
    chosen: list[dict[str, Any]],
    model: str,
    *,
    batch_size: int = 32,
    device: str | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[int, int, int]:
    """Embed every trajectory step of these runs with `model` (a catalog name, id, or the runs'
    alias) where it has no vector yet; returns (embedded, already present, trajectories)."""
    from genarun.errors import GenarunError, ModelError
    from genarun.experiments.reembed import embed_trajectory, resolve_embedder, takes
    from genarun.plugins import registry

    trajs = [
        dict(t)
        for t in store.conn.execute(
            select(trajectories).where(trajectories.c.run_id.in_([r["id"] for r in chosen]))
        ).mappings()
    ]
    if not trajs:
        raise UserError("these runs have no trajectories (a cycle node makes them)")
    by_id = {r["id"]: r for r in chosen}
    kinds_present = {
        r.kind
        for r in store.conn.execute(
            select(trajectory_steps.c.kind)
            .where(trajectory_steps.c.run_id.in_(list(by_id)))
            .distinct()
        )
    }
    specs = {}
    for run in chosen:  # every check before anything is loaded or written
        try:
            spec = resolve_embedder(model, run)
        except GenarunError as exc:
            raise UserError(f"--model {model}: {exc}") from None
        specs[run["id"]] = spec
    first = next(iter(specs.values()))
    if not takes(first) & kinds_present:
        raise UserError(
            f"--model {model} embeds {' and '.join(sorted(takes(first)))} only, and these runs' "
            f"trajectories hold {' and '.join(sorted(kinds_present))}: choose a model that embeds "
            "them (a joint model such as tiny-clip embeds both)"
        )
    try:
        registry().providers[first.provider].check(first)  # weights present, before any work
    except ModelError as exc:
        raise UserError(str(exc)) from None
    embedded = present = 0
    for t in trajs:
        run = by_id[t["run_id"]]
        report = embed_trajectory(
            store,
            run,
            t,
            specs[t["run_id"]],
            model,
            batch_size=batch_size,
            device=device,
            on_batch=on_batch,
        )
        embedded += report.embedded
        present += report.present
        labels = json.loads(t["embed_models"] or "[]")
        if model not in labels:
            store._write(
                update(trajectories)
                .where(trajectories.c.id == t["id"])
                .values(embed_models=json.dumps([*labels, model]))
            )
    return embedded, present, len(trajs)
