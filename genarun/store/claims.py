"""One process runs a run: a row-level claim in SQLite (owner pid, host and a heartbeat).

`genarun run` creates its runs already claimed. `genarun resume` claims a run with a
compare-and-swap: the update takes effect only if the row still holds what was read, so of two
processes resuming the same killed run at once, one wins and the other sees the winner, says
who holds the run and stops. A claim is stale when its process is gone (same host: its pid is
not alive) or, where that cannot be checked (another host), when its heartbeat is older than
STALE_AFTER; a stale claim is taken over.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from genarun.errors import StoreError
from genarun.store.processes import holder_alive, host_name

if TYPE_CHECKING:
    from genarun.store.db import Store

HEARTBEAT_EVERY = 5.0  # seconds between heartbeats of a process that runs runs


class RunClaimed(StoreError):
    """Another live process holds the run."""


def identity() -> dict[str, Any]:
    """This process's claim values, stored on the runs it runs."""
    return {"pid": os.getpid(), "host": host_name(), "heartbeat": time.time()}


def describe_holder(row: dict[str, Any]) -> str:
    where = f" on host {row['host']}" if row.get("host") else ""
    beat = row.get("heartbeat")
    ago = f", last heartbeat {max(0, round(time.time() - beat))} s ago" if beat else ""
    return f"process {row.get('pid')}{where}{ago}"


def claim(store: Store, row: dict[str, Any], *, force: bool = False) -> dict[str, Any]:
    """Mark `row`'s run as running in this process, or raise RunClaimed naming its holder.
    `force` takes over a claim whose process cannot be checked (never a live local one)."""
    from sqlalchemy import select, update

    from genarun.store.db import runs

    short = row["id"][:8]
    for _attempt in range(20):
        if row["status"] == "running" and (row.get("pid"), row.get("host")) != _me():
            alive = holder_alive(row)
            if alive:
                raise RunClaimed(
                    f"run {short} is being run by {describe_holder(row)}: wait for it to "
                    "finish, or stop that process first; then resume it"
                )
            if alive is None and not force:
                raise RunClaimed(
                    f"run {short} is marked running by {describe_holder(row)}, which genarun "
                    "cannot check from here; if that process is gone, pass --force"
                )
        # The swap takes effect only if no other process claimed the run since we read it.
        result = store._write(
            update(runs)
            .where(
                runs.c.id == row["id"],
                runs.c.status == row["status"],
                runs.c.pid.is_not_distinct_from(row.get("pid")),
                runs.c.host.is_not_distinct_from(row.get("host")),
                runs.c.heartbeat.is_not_distinct_from(row.get("heartbeat")),
            )
            .values(status="running", ended=None, error=None, **identity())
        )
        if result.rowcount == 1:
            return row
        fresh = store.conn.execute(select(runs).where(runs.c.id == row["id"])).mappings().first()
        if fresh is None:
            raise StoreError(f"run {short} was deleted while resuming it")
        row = dict(fresh)
    raise RunClaimed(f"run {short}: other processes keep claiming it; try again")


def claim_all(store: Store, rows: list[dict[str, Any]], *, force: bool = False) -> None:
    """Claim every run or none: a run already claimed gives its earlier claims back."""
    done: list[dict[str, Any]] = []
    try:
        for row in rows:
            claim(store, row, force=force)
            done.append(row)
    except BaseException:
        release(store, done)
        raise


def release(store: Store, rows: Iterable[dict[str, Any]]) -> None:
    """Give claims back unchanged (the status they had), when a resume stops before running."""
    from sqlalchemy import update

    from genarun.store.db import runs

    for row in rows:
        with contextlib.suppress(Exception):
            store._write(
                update(runs)
                .where(runs.c.id == row["id"], runs.c.pid == os.getpid())
                .values(status=row["status"], ended=row.get("ended"), error=row.get("error"))
            )


def _me() -> tuple[int, str]:
    return os.getpid(), host_name()


class Heartbeat:
    """Refreshes runs.heartbeat of the runs this process holds, from a thread of its own with
    its own connection, until stopped; so another host can tell a live run from a dead one."""

    def __init__(self, store: Store, run_ids: list[str], every: float = HEARTBEAT_EVERY):
        self.store, self.run_ids, self.every = store, run_ids, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="genarun-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        pid = os.getpid()
        marks = ", ".join("?" * len(self.run_ids))
        beat = f"UPDATE runs SET heartbeat = ? WHERE id IN ({marks}) AND pid = ?"
        conn = None  # its own connection (the run's is busy in other threads), on first beat
        try:
            while not self._stop.wait(self.every):
                # A failed beat (the database busy or unwritable for a moment) is not the run's
                # failure: the next one tries again, and the run's own writes report real
                # trouble.
                with contextlib.suppress(Exception):
                    conn = conn or self.store.connect_another()
                    with conn:  # commits, or rolls back on an error
                        conn.execute(beat, (time.time(), *self.run_ids, pid))
        finally:
            if conn is not None:
                conn.close()
