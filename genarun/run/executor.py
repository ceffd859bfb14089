"""The scheduler: executes the runs of an experiment recursively, with inherited scope.

It walks the work units of `work_units` (slots, expanded by their foreach into instances) as
their dependencies finish. Cheap kinds run inline in the scheduler thread; other kinds are
generators that yield effects (`nodes.effects`): `Invoke`s, which `batching` queues per model
and settings and sends to the model in batches on worker threads; `Call`s and `Compute`s, which
`effect_pool` runs on its I/O and CPU pools; and `Wait`s, which park the execution until the
outside world answers (or the run ends `waiting`). Every pool posts what finished to one event
queue that this thread drains. All runs of an experiment share one scheduler, so matrix runs and
foreach items that call the same model are batched together. `recording` writes what finished
to the store.

The executor is built in layers, one module each: `expansion` (dependencies, foreach expansion,
finishing), `effect_dispatch` (generators, effects, waits), `instance_start` (reuse, rendering,
the run function) and this module (the pools and the loop that drives them).
"""

from __future__ import annotations

import queue
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genarun.errors import Interrupted
from genarun.run.batching import ModelBatcher
from genarun.run.effect_dispatch import Waiting
from genarun.run.instance_start import InstanceStart
from genarun.run.interrupts import GracefulInterrupt
from genarun.run.pausing import PauseWatch
from genarun.run.recording import ExecutionRecorder
from genarun.run.snapshots import FolderSnapshots
from genarun.run.state import NodeResult, RunState
from genarun.run.work_units import Instance, Slot
from genarun.store.confined import FolderNotWritable

if TYPE_CHECKING:
    from genarun.run.effect_pool import EffectPool

# The effect pool's defaults (genarun/run/effect_pool.py loads only with the first `Call` or
# `Compute`: a run whose kinds only return values starts no I/O or CPU pool).
DEFAULT_IO_WORKERS = 64
DEFAULT_IO_PER_HOST = 8


@dataclass
class ExecutorOptions:
    """Threads, batch size, device and the optional backend and budget of an executor."""

    workers: int = 4
    batch_size: int = 16
    device: str | None = None
    progress: Any = None  # run.progress.Progress
    io_workers: int = DEFAULT_IO_WORKERS  # threads for `Call`s (I/O waits, not CPU)
    io_per_host: int = DEFAULT_IO_PER_HOST  # `Call`s at once to one host
    cpu_workers: int | None = None  # threads for `Compute`s (default: up to 4, by CPU count)
    backend: Any = None  # run.ray_backend.RayBackend: model batches and CPU work on Ray
    budget: Any = None  # usage.budget.BudgetGuard: no new work once the spend reaches it


class Executor(InstanceStart):
    """Runs the RunStates of one experiment to completion."""

    def __init__(self, runs: list[RunState], options: ExecutorOptions | None = None):
        self.runs = runs
        self.options = options or ExecutorOptions()
        self.ready: deque[Slot | Instance] = deque()
        self.blocked: list[Slot] = []
        # Instances waiting for earlier foreach items of what they search (retrieval).
        self.awaiting_earlier: list[Instance] = []
        self.earlier_finished: dict[tuple[Any, ...], int] = {}  # see earlier_items_ready
        # (run id, node id) -> prefix -> unfinished slots and instances
        self.pending: dict[tuple[str, str], dict[tuple[int, ...], int]] = defaultdict(
            lambda: defaultdict(int)
        )
        # (run id, node id) -> paths that failed, or were not run because what they depend on
        # failed: only what depends on a failure stops (see SlotExpansion._blocked_by_failure).
        self.broken: dict[tuple[str, str], set[tuple[int, ...]]] = defaultdict(set)
        self.progress = self.options.progress
        self.recorder = ExecutionRecorder(runs[0].store if runs else None, self.progress)
        # What the pools finished: model batches (tuples) and effects (EffectDone).
        self.events: queue.Queue[Any] = queue.Queue()
        backend = self.options.backend
        self.batcher = ModelBatcher(
            self.options.batch_size,
            self.options.device,
            self.recorder.log,
            self.events,
            models=backend.models if backend is not None else None,
            workers=self.options.workers,
        )
        if self.progress and hasattr(self.progress, "watch"):
            self.progress.watch(self.batcher)
        self.effects: EffectPool | None = None  # effect_pool(): with the first Call or Compute
        self.waits: list[Waiting] = []
        self.stopped: FolderNotWritable | None = None  # the run folder became unwritable
        # Runs paused from another process (genarun runs pause, the server) start nothing new.
        store = runs[0].store if runs else None
        self.pauses = (
            PauseWatch(store, [r.id for r in runs], progress=self.progress)
            if store is not None
            else None
        )
        self.halted: BaseException | None = None  # --budget reached: finish what runs, stop
        self.interrupt = GracefulInterrupt()  # Ctrl-C once: the same; twice: stop at once
        self.deferring: list[Instance] = []
        self.snapshots = FolderSnapshots(runs)  # output.json of what has finished so far

    # --- public ---------------------------------------------------------------------------
    def execute(self) -> None:
        interrupted = False
        try:
            for run in self.runs:
                for node_id in run.compiled.roots:
                    self._add_slot(Slot(run, run.compiled.nodes[node_id], (), run.scope))
            with self.interrupt:
                self._loop()
        except KeyboardInterrupt:
            interrupted = True
            self._run_deferred()  # finished steps stand: resume continues after them
            self.recorder.flush()
            raise Interrupted("interrupted") from None
        finally:
            # Stopped at once (Ctrl-C twice): what still runs has no one to record it.
            self.batcher.shutdown(wait=not interrupted)
            if self.effects is not None:
                self.effects.shutdown()
            self.recorder.flush()

    def effect_pool(self) -> EffectPool:
        if self.effects is None:
            from genarun.run.effect_pool import EffectPool

            backend = self.options.backend
            self.effects = EffectPool(
                self.events,
                io_workers=self.options.io_workers,
                io_per_host=self.options.io_per_host,
                # On Ray each pool thread only waits for its task: as many as Ray has CPUs for.
                cpu_workers=self.options.cpu_workers or (16 if backend is not None else None),
                # Calls stay on this process's I/O pool: they only wait on the network, and what
                # they carry (a fetch's secrets) never leaves the driver.
                run_compute=backend.run_compute if backend is not None else None,
            )
        return self.effects

    def model_stats(self) -> list[dict[str, Any]]:
        """Per model and task: calls made (batches), items, mean batch size and seconds busy."""
        return self.batcher.model_stats()

    # --- the loop -------------------------------------------------------------------------
    def _loop(self) -> None:
        pauses = self.pauses
        while True:
            flushed = time.monotonic()
            if pauses is not None:
                pauses.release_into(self.ready)  # the work of runs unpaused since
            while (
                self.ready
                and self.stopped is None
                and self.halted is None
                and not self.interrupt.requested
            ):
                work = self.ready.popleft()
                if pauses is not None and pauses.hold(work):
                    continue  # its run is paused: nothing new starts
                if isinstance(work, Slot):
                    self._try_expand(work)
                else:
                    self._start(work)
                # Long stretches of inline work commit in groups, at least every 0.1 s.
                if len(self.recorder.finished_rows) >= 500 or time.monotonic() - flushed > 0.1:
                    self.recorder.flush()
                    self._snapshot()
                    flushed = time.monotonic()
            if self.stopped is not None:
                raise self.stopped
            if self.interrupt.requested and self.halted is None:
                self._halt_on_interrupt()
            if self.halted is None:
                self.batcher.dispatch(pauses.paused() if pauses is not None else None)
            # The models have their next batches: now the bookkeeping of the last ones.
            self._run_deferred()
            self.recorder.flush()
            self._snapshot()
            self._check_budget()
            if self.halted is not None and not self._busy():
                if isinstance(self.halted, KeyboardInterrupt) and not self._work_left():
                    return  # Ctrl-C came as the last work finished: the run is complete
                raise self.halted  # what was running has finished and is recorded
            if self.progress:
                self.progress.tick()
            if self.waits:
                self._poll_waits()
                if self.ready:
                    continue
            if not self._busy():
                if pauses is not None and pauses.holding():
                    time.sleep(0.05)  # paused, and what ran has finished: wait for unpause
                    continue
                if self.blocked or self.awaiting_earlier:
                    self._unblock()
                    if self.ready:
                        continue
                    if not self.waits:  # cannot happen for a compiled tree; never hang
                        for slot in self.blocked:
                            self._fail_slot(slot, "dependencies never finished")
                        self.blocked.clear()
                        for inst in self.awaiting_earlier:
                            self._finish(
                                inst, NodeResult("failed", error="earlier items never finished")
                            )
                        self.awaiting_earlier.clear()
                        continue
                if self.waits:
                    # Only waits remain: the run stops here; their dependents stay parked.
                    if self._park_waits():
                        return
                    continue  # one was answered at the last look
                if not self.batcher.has_queued():
                    return
            arrived = False
            # Take everything that has finished, then run the inline work it frees in one go.
            for event in self._finished_events(timeout=0.1):
                if isinstance(event, tuple):  # a model batch (batching.FinishedBatch)
                    self._on_batch(*event)
                else:
                    self._on_effect(event)  # an effect_pool.EffectDone
                arrived = True
            if arrived:
                self._unblock()

    def _snapshot(self) -> None:
        """Rewrite the run folders' output.json when due (what it shows is committed)."""
        if self.stopped is None:
            try:
                self.snapshots.maybe_write()
            except FolderNotWritable as exc:
                self.stopped = exc

    def _work_left(self) -> bool:
        """Whether anything is still to run, to wait for or to unblock."""
        return bool(
            self.ready
            or self.blocked
            or self.awaiting_earlier
            or self.waits
            or self.deferring
            or self.batcher.has_queued()
        )

    def _halt_on_interrupt(self) -> None:
        """Ctrl-C: start nothing new; what runs finishes and is stored, then the run stops."""
        self.halted = KeyboardInterrupt()
        if self.effects is not None:
            self.effects.queued.clear()  # calls not sent yet stay unsent: resume sends them
        if self._busy() and self.progress and hasattr(self.progress, "note"):
            batches = self.batcher.in_flight
            calls = self.effects.in_flight if self.effects is not None else 0
            running = ", ".join(
                f"{n} {one if n == 1 else many}"
                for n, one, many in (
                    (batches, "model batch", "model batches"),
                    (calls, "call", "calls"),
                )
                if n
            )
            self.progress.note(
                f"stopping: nothing new starts; what is running ({running or 'CPU work'})"
                " finishes and is saved (Ctrl-C again to stop at once)"
            )

    def _check_budget(self) -> None:
        """Start no new work once the runs' recorded spend reaches --budget."""
        guard = self.options.budget
        if guard is None or self.halted is not None or not guard.due():
            return
        self.halted = guard.check()
        if self.halted is not None and self.effects is not None:
            self.effects.queued.clear()  # calls not sent yet stay unsent: resume sends them

    def _finished_events(self, timeout: float) -> list[Any]:
        """Wait up to `timeout` for a pool to finish something; return it and all since."""
        try:
            events = [self.events.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                events.append(self.events.get_nowait())
            except queue.Empty:
                return events
