"""`genarun doctor`'s orphans: rows that hang on something the database does not hold, and
their removal (`--fix`).

Rows of a run hang on its run row; a person's answers hang on their request, which hangs on a
run and on a node of that run's tree. Any of these can be missing: a run row lost to damage,
a request removed with foreign keys off (an older tool, the sqlite3 shell), a request for a
node the stored tree never had. A report names each with its counts, answers included, so
that a person's answers are never removed unseen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, text

from genarun.experiments.doctor_findings import Finding, plural, tree_nodes
from genarun.store.db import persistence, trajectories, trajectory_steps
from genarun.store.human import human_requests
from genarun.store.run_rows import RunTable, run_tables

if TYPE_CHECKING:
    from genarun.store.db import Store


def orphans(store: Store, runs_by_id: dict[str, dict[str, Any]]) -> list[Finding]:
    """Rows of runs not in the database, rows hanging on rows that are not there, requests
    for nodes their run's tree does not have, and trajectory rows without their trajectory."""
    entries = _present(store)
    return (
        _of_missing_runs(store, entries, set(runs_by_id))
        + _dangling(store, entries)
        + _off_the_tree(store, entries, runs_by_id)
        + _without_trajectory(store, set(runs_by_id))
    )


def remove_orphan(store: Store, finding: Finding) -> str:
    """Delete the rows of one orphan finding (those hanging on them first); the line to tell."""
    data = finding.data
    owned = {entry.table.name: entry for entry in run_tables()}
    entry = owned[data["table"]]
    table = entry.table
    removed: dict[str, int] = {}
    with store.transaction():
        if data.get("dangling"):
            cond = _dangling_rows(entry)
        elif "path" in data:
            cond = (
                (table.c.run_id == data["run_id"])
                & (table.c.node_id == data["node_id"])
                & (table.c.path == data["path"])
            )
        else:
            cond = table.c.run_id == data["run_id"]
            if "node_id" in data:
                cond = cond & (table.c.node_id == data["node_id"])
            for child in _children(owned.values(), entry):  # rows that hang on these go first
                key, _ = child.via or (None, None)
                assert key is not None
                ids = select(table.c[_target(child)]).where(cond)
                gone = store._write(delete(child.table).where(key.in_(ids))).rowcount
                if gone:
                    removed[child.table.name] = gone
        n = store._write(delete(table).where(cond)).rowcount
    said = [plural(n, f"orphan {table.name} row")]
    said += [plural(count, f"{name} row") for name, count in removed.items()]
    return f"{finding.where}: removed " + " and ".join(said)


# --- the checks -------------------------------------------------------------------------------
def _present(store: Store) -> list[RunTable]:
    """The tables of runs this file has (an older read-only file may lack the newer ones)."""
    present = set(
        store.conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'")).scalars()
    )
    return [entry for entry in run_tables() if entry.table.name in present]


def _children(entries: Sequence[RunTable] | Any, parent: RunTable) -> list[RunTable]:
    return [e for e in entries if e.via is not None and e.via[1] is parent.table]


def _target(child: RunTable) -> str:
    """The parent's column that the child's key names (a request's id)."""
    key, _ = child.via or (None, None)
    assert key is not None
    return str(next(iter(key.foreign_keys)).column.name)


def _hanging(store: Store, entries: list[RunTable], parent: RunTable, cond: Any) -> str:
    """`, and 2 human_answers rows hanging on them`: the rows that go with `cond`'s rows."""
    said = []
    for child in _children(entries, parent):
        key, _ = child.via or (None, None)
        assert key is not None
        ids = select(parent.table.c[_target(child)]).where(cond)
        n = store.conn.execute(select(func.count()).where(key.in_(ids))).scalar_one()
        if n:
            said.append(plural(n, f"{child.table.name} row"))
    return f", and {' and '.join(said)} hanging on them" if said else ""


def _of_missing_runs(store: Store, entries: list[RunTable], known: set[str]) -> list[Finding]:
    out = []
    for entry in entries:
        table = entry.table
        if entry.via is not None:
            continue
        stmt = select(table.c.run_id, func.count()).group_by(table.c.run_id)
        for run_id, count in store.conn.execute(stmt):
            if run_id in known:
                continue
            hanging = _hanging(store, entries, entry, table.c.run_id == run_id)
            out.append(
                Finding(
                    "orphan",
                    f"{table.name}",
                    f"{plural(count, 'row')} of run {str(run_id)[:8]}, which is not in the "
                    f"database{hanging}",
                    True,
                    {"table": table.name, "run_id": run_id},
                )
            )
    return out


def _dangling_rows(entry: RunTable) -> Any:
    """The rows of a child table whose key names no row of its parent."""
    key, parent = entry.via or (None, None)
    assert key is not None and parent is not None
    return key.not_in(select(parent.c[_target(entry)]))


def _dangling(store: Store, entries: list[RunTable]) -> list[Finding]:
    out = []
    for entry in entries:
        if entry.via is None:
            continue
        key, parent = entry.via
        stmt = select(key, func.count()).where(_dangling_rows(entry)).group_by(key).order_by(key)
        rows = store.conn.execute(stmt).all()
        if not rows:
            continue
        count = sum(n for _, n in rows)
        names = ", ".join(str(k) for k, _ in rows[:8]) + (" ..." if len(rows) > 8 else "")
        out.append(
            Finding(
                "orphan",
                entry.table.name,
                f"{plural(count, 'row')} of {plural(len(rows), parent.name + ' row')} "
                f"({key.name} {names}) that {'is' if len(rows) == 1 else 'are'} not in the "
                "database",
                True,
                {"table": entry.table.name, "dangling": True},
            )
        )
    return out


def _off_the_tree(
    store: Store, entries: list[RunTable], runs_by_id: dict[str, dict[str, Any]]
) -> list[Finding]:
    """Requests (and their answers) for a node that the run's stored tree does not have: no
    run of that tree asks them again or reads their answers. Only requests: they are the rows
    whose node must be a node of the tree (a run's logs, say, name no node)."""
    entry = next((e for e in entries if e.table is human_requests), None)
    if entry is None:
        return []
    out = []
    stmt = select(human_requests.c.run_id, human_requests.c.node_id, func.count()).group_by(
        human_requests.c.run_id, human_requests.c.node_id
    )
    for run_id, node_id, count in store.conn.execute(stmt):
        run = runs_by_id.get(run_id)
        nodes = tree_nodes(run) if run is not None else None
        if not nodes or node_id in {n.get("id") for n in nodes}:
            continue  # its run is gone (another finding), or its tree cannot be read
        cond = (human_requests.c.run_id == run_id) & (human_requests.c.node_id == node_id)
        hanging = _hanging(store, entries, entry, cond)
        out.append(
            Finding(
                "orphan",
                f"run {run_id[:8]} {node_id}",
                f"{plural(count, 'human_requests row')} for node '{node_id}', which the run's "
                f"tree does not have{hanging}",
                True,
                {"table": "human_requests", "run_id": run_id, "node_id": node_id},
            )
        )
    return out


def _without_trajectory(store: Store, known: set[str]) -> list[Finding]:
    keys = {
        (t.run_id, t.node_id, t.path)
        for t in store.conn.execute(
            select(trajectories.c.run_id, trajectories.c.node_id, trajectories.c.path)
        )
    }
    out = []
    for table in (trajectory_steps, persistence):
        stmt = select(table.c.run_id, table.c.node_id, table.c.path, func.count()).group_by(
            table.c.run_id, table.c.node_id, table.c.path
        )
        for run_id, node_id, path, count in store.conn.execute(stmt):
            if run_id in known and (run_id, node_id, path) not in keys:
                out.append(
                    Finding(
                        "orphan",
                        f"run {run_id[:8]} {node_id}{path}",
                        f"{count} {table.name} row{'s' if count != 1 else ''} of a trajectory "
                        "that has no trajectories row",
                        True,
                        {"table": table.name, "run_id": run_id, "node_id": node_id, "path": path},
                    )
                )
    return out
