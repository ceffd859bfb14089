"""The run folder while a run goes on: `output.json` holds what has finished so far.

Every finished execution is committed to SQLite at once, but the folder a person opens used to
get its `output.json` only when the run ended: a run killed with `kill -9` (or a crash, or the
machine going down) left a folder that showed nothing until `genarun resume`. Here the
scheduler rewrites `output.json` at its commit points (run.json says status `running` and
`partial: true` from the start), atomically, throttled by time: first `FIRST` seconds after the
run starts, then at most every `INTERVAL` seconds and never more often than `COST_SHARE` times
what the last write took. A short run writes none (its folder is written when it ends), and a
long one spends about 1 % of its time on them at most: the output.json of a 10,000-node run
takes about 0.07 s to build and write.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from genarun.run.state import RunState
from genarun.store.confined import FolderNotWritable, as_folder_error

FIRST = 3.0  # seconds after the start before the first snapshot (a short run writes none)
INTERVAL = 3.0  # seconds between snapshots, at least
COST_SHARE = 100  # and at least this many times the last snapshot's cost


class FolderSnapshots:
    """Rewrites the folders of runs whose finished executions changed since the last time."""

    def __init__(self, runs: Sequence[RunState]) -> None:
        self.runs = runs
        self.due = time.monotonic() + FIRST
        self.written: dict[str, int] = {}  # run id -> finished executions at its last snapshot

    def maybe_write(self) -> None:
        """Write the snapshots that are due; call after a commit (what they show is stored)."""
        now = time.monotonic()
        if now < self.due:
            return
        for state in self.runs:
            finished = sum(state.counts.values())
            if self.written.get(state.id, 0) != finished:
                try:
                    state.write_snapshot()
                except (FolderNotWritable, OSError) as exc:
                    # The folder went read-only or full: the run stops as when an image cannot
                    # be written (finished work is stored; resume writes the folder).
                    raise as_folder_error(state.folder, exc) from None
                self.written[state.id] = finished
        cost = time.monotonic() - now
        self.due = time.monotonic() + max(INTERVAL, COST_SHARE * cost)
