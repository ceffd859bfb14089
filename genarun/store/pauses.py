"""Paused runs: while a run has a row here, the process running it starts no new executions
(those already running finish and are recorded); deleting the row lets it go on.

The flag lives in SQLite, not in the process, so any process can set it (`genarun runs pause`,
the server's page and API) for a run that another process runs, a reconnecting page sees it,
and it outlives both: a paused run that is stopped or killed and then resumed stays paused
until it is unpaused. The running process reads it cheaply between scheduling rounds
(genarun/run/pausing.py). A run that ends (completed, failed, waiting) drops its flag.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Float, ForeignKey, String, Table, delete, insert, literal, select
from sqlalchemy.exc import IntegrityError

from genarun.errors import StoreError
from genarun.store.db import metadata, runs
from genarun.store.processes import process_alive

if TYPE_CHECKING:
    from genarun.store.db import Store

run_pauses = Table(
    "run_pauses",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id"), primary_key=True),
    Column("paused", Float, nullable=False),  # when it was paused
    Column("by", String),  # who asked: cli, page or api
)


class PauseRefused(StoreError):
    """A pause of a run that is not running, or an unpause of one that is not paused: the
    caller's mistake, said plainly (the server answers 409)."""


def pause_run(store: Store, run: dict[str, Any], *, by: str) -> dict[str, Any]:
    """Pause a running run (this host or another: the flag is in the database)."""
    short = run["id"][:8]
    if run["status"] != "running":
        raise PauseRefused(f"run {short} is not running (it is {run['status']}): nothing to pause")
    if process_alive(run) is False:
        raise PauseRefused(
            f"run {short} is not running: its process is gone (genarun resume {short})"
        )
    when = time.time()
    # Inserted only while the row still says running: a run that ends between the check above
    # and this write is not left with a flag (its process drops flags after its last status).
    still_running = select(runs.c.id, literal(when, Float), literal(by, String)).where(
        runs.c.id == run["id"], runs.c.status == "running"
    )
    try:
        result = store._write(
            insert(run_pauses).from_select(["run_id", "paused", "by"], still_running)
        )
    except IntegrityError:
        raise PauseRefused(
            f"run {short} is paused already: genarun runs unpause {short} lets it go on"
        ) from None
    if result.rowcount == 0:
        now = store.conn.execute(select(runs.c.status).where(runs.c.id == run["id"])).scalar()
        raise PauseRefused(f"run {short} is not running (it is {now}): nothing to pause")
    return {"run": run["id"], "paused": True, "since": when}


def unpause_run(store: Store, run: dict[str, Any]) -> dict[str, Any]:
    """Let a paused run start new executions again."""
    result = store._write(delete(run_pauses).where(run_pauses.c.run_id == run["id"]))
    if result.rowcount == 0:
        raise PauseRefused(f"run {run['id'][:8]} is not paused (it is {run['status']})")
    return {"run": run["id"], "paused": False}


def paused_since(store: Store, run_id: str) -> float | None:
    """When the run was paused; None when it is not."""
    found = store.conn.execute(
        select(run_pauses.c.paused).where(run_pauses.c.run_id == run_id)
    ).scalar()
    return None if found is None else float(found)
