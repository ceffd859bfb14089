"""Pausing a run while it runs: the executor holds back the work of paused runs.

Any process may pause a run (`genarun runs pause`, the server's page or API): the flag is a
row in SQLite (genarun/store/pauses.py). The executor asks `hold(work)` before it starts each
piece of ready work; a piece of a paused run waits here instead, in order, while what already
runs (model batches, I/O calls, CPU work) finishes and is recorded. The flags are read again at
most every READ_EVERY seconds with one indexed look-up, so the check costs a clock read per
piece of work; an unpause takes effect within that time.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genarun.store.db import Store

READ_EVERY = 0.25  # seconds between looks at the flags


class PauseWatch:
    """The paused runs among an executor's runs, and the work held back for them."""

    def __init__(
        self, store: Store, run_ids: list[str], every: float = READ_EVERY, progress: Any = None
    ) -> None:
        self.store, self.run_ids, self.every = store, run_ids, every
        self.progress = progress  # run.progress.Progress: a paused run says so on the terminal
        self.held: list[Any] = []  # Slots and Instances of paused runs, in the order they came
        self._paused: set[str] = set()
        self._read_at = float("-inf")

    def paused(self) -> set[str]:
        """The ids of the paused runs, read again when the last read is older than `every`."""
        now = time.monotonic()
        if now - self._read_at >= self.every:
            self._read_at = now
            self._read()
        return self._paused

    def hold(self, work: Any) -> bool:
        """Keep `work` (a Slot or an Instance) back if its run is paused."""
        if work.run.id in self.paused():
            self.held.append(work)
            return True
        return False

    def holding(self) -> bool:
        return bool(self.held)

    def release_into(self, ready: deque[Any]) -> None:
        """Put the held work of runs that are no longer paused back at the front of `ready`."""
        if not self.held:
            return
        paused = self.paused()
        going = [w for w in self.held if w.run.id not in paused]
        if going:
            self.held = [w for w in self.held if w.run.id in paused]
            ready.extendleft(reversed(going))  # first in line again, in their order

    def _read(self) -> None:
        try:
            now_paused = paused_among(self.store, self.run_ids)
        except Exception:  # a database busy for a moment: keep the last answer, look again
            return
        for run_id in sorted(now_paused ^ self._paused):
            self._log(run_id, run_id in now_paused)
        self._paused = now_paused

    def _log(self, run_id: str, paused: bool) -> None:
        """A line in the run's log for each change, as the process saw it, and on the
        terminal (a run that stops making progress says why)."""
        short = run_id[:8]
        message = (
            f"paused: no new executions start until `genarun runs unpause {short}`"
            if paused
            else "unpaused: new executions start again"
        )
        if self.progress is not None:
            with contextlib.suppress(Exception):
                self.progress.message(f"run {short} {message}", level="warning")
        with contextlib.suppress(Exception):  # a log line is never the run's failure
            self.store.add_logs(
                [
                    {
                        "run_id": run_id,
                        "node_id": None,
                        "path": None,
                        "time": time.time(),
                        "level": "info",
                        "message": message,
                    }
                ]
            )


# Plain SQL on the run's store (a run never imports SQLAlchemy; the table is defined with the
# others in genarun/store/pauses.py).
def paused_among(store: Store, run_ids: Iterable[str]) -> set[str]:
    """Which of `run_ids` are paused (one indexed look-up)."""
    ids = list(run_ids)
    if not ids:
        return set()
    marks = ", ".join("?" * len(ids))
    rows = store.query(f"SELECT run_id FROM run_pauses WHERE run_id IN ({marks})", ids)
    return {row["run_id"] for row in rows}


def drop_pauses(store: Store, run_ids: Iterable[str]) -> None:
    """Forget the flags of runs that ended: there is nothing left of them to hold back."""
    ids = list(run_ids)
    if ids:
        marks = ", ".join("?" * len(ids))
        store._write(f"DELETE FROM run_pauses WHERE run_id IN ({marks})", tuple(ids))
