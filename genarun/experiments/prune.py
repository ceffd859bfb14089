"""`genarun experiments prune`: keep a tree's newest experiments (by count, by age, or both),
delete the older ones with their rows and folders (the roadmap's "purge the old logs", as a
rule instead of one `experiments delete` at a time)."""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from genarun.errors import UserError
from genarun.experiments.manage import Deletion, plan_deletion
from genarun.store.tables import experiments, runs

if TYPE_CHECKING:
    from genarun.store.db import Store


@dataclass(frozen=True)
class Age:
    """`--older-than`: experiments created longer ago than `seconds` may go; `text` is how the
    person wrote it (30d), for messages."""

    seconds: float
    text: str


@dataclass
class Prune:
    """What pruning a tree's experiments keeps (with why) and deletes."""

    name: str
    kept: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    deleted: list[Deletion] = field(default_factory=list)


def plan_prune(
    store: Store,
    tree: str,
    keep: int | None,
    older_than: Age | None = None,
    now: float | None = None,
) -> Prune:
    """Per tree file of the tree `tree` (its `name:`, or the path of its file): keep the `keep`
    newest experiments and those not `older_than` (either rule keeps one; at least one must be
    given), the newest whose runs all completed (the one `latest/` copies), and
    any with a run that waits for a person or still runs; plan deleting the others."""
    if keep is None and older_than is None:
        raise UserError("say what to keep: --keep N, --older-than DURATION (e.g. 30d), or both")
    cutoff = None
    if older_than is not None:
        cutoff = (time.time() if now is None else now) - older_than.seconds
    path = Path(tree)
    if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
        where = experiments.c.tree_path == str(path.resolve())
        name = str(path)
    else:
        where, name = experiments.c.name == tree, tree
    found = [
        dict(r)
        for r in store.conn.execute(
            select(experiments)
            .where(where)
            .order_by(experiments.c.created.desc(), experiments.c.id)
        ).mappings()
    ]
    if not found:
        names = sorted({r.name for r in store.conn.execute(select(experiments.c.name))})
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UserError(
            f"no experiments of a tree named '{name}' in {store.path}{hint}; the trees there: "
            f"{', '.join(names) or 'none'}"
        )
    plan = Prune(name)
    # Trees of one name in several files (copies in two folders) are several projects, each
    # with its own output folders and latest/: each keeps its own newest.
    by_file: dict[str, list[dict[str, Any]]] = {}
    for experiment in found:
        by_file.setdefault(experiment["tree_path"] or "", []).append(experiment)
    for group in by_file.values():
        _plan_group(store, plan, group, keep, older_than, cutoff)
    return plan


def _plan_group(
    store: Store,
    plan: Prune,
    found: list[dict[str, Any]],
    keep: int | None,
    older_than: Age | None,
    cutoff: float | None,
) -> None:
    from genarun.store.processes import holder_alive

    latest_kept = False
    for position, experiment in enumerate(found):
        owned = [
            dict(r)
            for r in store.conn.execute(
                select(runs.c.status, runs.c.pid, runs.c.host, runs.c.heartbeat).where(
                    runs.c.experiment_id == experiment["id"]
                )
            ).mappings()
        ]
        completed = bool(owned) and all(r["status"] == "completed" for r in owned)
        why = ""
        if keep is not None and position < keep:
            why = f"one of the {keep} newest" if keep > 1 else "the newest"
        elif older_than is not None and cutoff is not None and experiment["created"] > cutoff:
            why = f"newer than {older_than.text}"
        elif completed and not latest_kept:
            why = "the newest completed (latest/ copies it)"
        elif any(r["status"] == "waiting" for r in owned):
            why = "waits for a person's answer"
        elif any(r["status"] == "running" and holder_alive(r) is not False for r in owned):
            why = "still running"
        latest_kept = latest_kept or (completed and bool(why))
        if why:
            plan.kept.append((experiment, why))
        else:
            plan.deleted.append(plan_deletion(store, experiment))
