"""The server's worker: continues runs whose human requests were answered or expired.

Each run continues in a child process (`genarun resume RUN`), one at a time: a long-lived
server keeps no model in memory and survives a run that crashes. A run still held by the
process that started it (other branches still running) is tried again once that process
lets go; requests whose timeout passed are found by a periodic sweep.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger("genarun.server")

SWEEP_EVERY = 15.0  # seconds between looks for expired requests
RETRY_EVERY = 2.0  # seconds between tries to resume a run another process still holds


class Resumer:
    """A thread that resumes runs handed to it, and runs whose requests expired."""

    def __init__(self, db: Path, *, sweep_every: float = SWEEP_EVERY) -> None:
        self.db = db
        self.sweep_every = sweep_every
        self._wanted: dict[str, float] = {}  # run id -> when it was asked for
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._child: subprocess.Popen[bytes] | None = None
        # Runs whose last resume failed: the sweep leaves them alone (it would retry them every
        # few seconds forever); a new answer asks again.
        self._gave_up: set[str] = set()
        self.resumed: list[tuple[str, int]] = []  # (run id, exit code), for the API and tests

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="genarun-resumer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        child = self._child
        if child is not None and child.poll() is None:
            child.terminate()  # the run is resumable: its finished work is stored
        if self._thread is not None:
            self._thread.join(timeout=30)

    def want(self, run_id: str, *, swept: bool = False) -> None:
        with self._lock:
            if swept and run_id in self._gave_up:
                return
            self._gave_up.discard(run_id)
            self._wanted.setdefault(run_id, time.time())
        self._wake.set()

    def _loop(self) -> None:
        swept = 0.0
        while not self._stop.is_set():
            if time.monotonic() - swept >= self.sweep_every:
                swept = time.monotonic()
                with contextlib.suppress(Exception):  # a busy or damaged db: try next time
                    for run_id in self._expired_runs():
                        self.want(run_id, swept=True)
            with self._lock:
                wanted = sorted(self._wanted, key=self._wanted.__getitem__)
            for run_id in wanted:
                if self._stop.is_set():
                    return
                state = self._run_state(run_id)
                if state == "held":
                    continue  # its process still runs other branches; try again later
                with self._lock:
                    self._wanted.pop(run_id, None)
                if state == "waiting":
                    self._resume(run_id)
            self._wake.wait(RETRY_EVERY if self._wanted else self.sweep_every)
            self._wake.clear()

    def _run_state(self, run_id: str) -> str:
        """waiting: resumable now; held: a live process runs it; other: nothing to do."""
        from genarun.store.db import Store
        from genarun.store.processes import holder_alive

        store = Store(self.db)
        try:
            row = store.resolve_run(run_id)
        except Exception:
            return "other"
        finally:
            store.close()
        if row["status"] == "running" and holder_alive(row):
            return "held"
        return "waiting" if row["status"] in ("waiting", "running", "interrupted") else "other"

    def _expired_runs(self) -> list[str]:
        from genarun.store.db import Store
        from genarun.store.human import waiting_requests

        if not Path(self.db).exists():  # no run yet: nothing waits, and looking creates nothing
            return []
        store = Store(self.db)
        try:
            now = time.time()
            return sorted({r.run_id for r in waiting_requests(store, 10_000) if r.expired(now)})
        finally:
            store.close()

    def _resume(self, run_id: str) -> None:
        command = [sys.executable, "-m", "genarun", "resume", run_id, "--db", str(self.db)]
        log.info("resuming run %s", run_id[:8])
        try:
            self._child = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            output, _ = self._child.communicate()
            code = self._child.returncode
        finally:
            self._child = None
        self.resumed.append((run_id, code))
        if code not in (0, 130):
            with self._lock:
                self._gave_up.add(run_id)
        tail = output.decode(errors="replace").strip().splitlines()[-3:]
        log.info("run %s resumed (exit %s): %s", run_id[:8], code, " | ".join(tail))
