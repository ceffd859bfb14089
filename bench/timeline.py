"""When each of genarun's model batches ran, and what else ran on the CPU meanwhile.

Diagnostics for bench/gpu_trajectories.py and bench/gil_contention.py (issue 18 items 1-2):
a launch-bound model (BLIP's decoding: thousands of small kernels, each launched from Python)
runs at the speed at which its thread gets the GIL back after each launch, so any Python that
runs beside it in the process slows it down. For every batch, `Timeline` records the CPU
seconds that every *other* thread of the process used while the batch ran, grouped by thread
name (the scheduler is MainThread; genarun-model the other models' threads; genarun-assets
the PNG writers; genarun-preprocess the image preprocessing pool; genarun-digest the pixel
digests). Thread CPU time includes work done with the GIL released (zlib, PIL resampling,
hashing), so it bounds from above what competed for the GIL. The batch's own thread is split
too, from Linux's per-thread scheduler statistics: "self cpu" (running), "self core wait"
(runnable, no core free: other processes, or OpenMP threads spinning) and "self blocked" (the
GIL, GPU syncs, I/O); the three add up to the batch's seconds.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from typing import Any


def thread_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds used so far by each live thread of this process: ident -> (name, seconds)."""
    out: dict[int, tuple[str, float]] = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            clock = time.pthread_getcpuclockid(thread.ident)
            out[thread.ident] = (thread.name, time.clock_gettime(clock))
        except (OSError, AttributeError):  # the thread ended meanwhile; or not Linux
            continue
    return out


def schedstat() -> tuple[float, float] | None:
    """(seconds on a core, seconds runnable but waiting for a core) of the calling thread, from
    Linux's scheduler statistics; None where there are none."""
    try:
        with open("/proc/thread-self/schedstat", encoding="ascii") as fh:
            on_cpu, waiting = fh.read().split()[:2]
    except (OSError, ValueError):
        return None
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def group(name: str) -> str:
    """A thread's group: "genarun-model_3" -> "genarun-model", MainThread -> "scheduler"."""
    if name == "MainThread":
        return "scheduler"
    return re.sub(r"_\d+$", "", name)


class Timeline:
    """Wraps the batcher's worker function for the duration of one run (diagnostics only)."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, float, float, int]] = []  # task, start, end, items
        # task -> one dict per batch: thread group -> CPU seconds used beside the batch
        self.beside: dict[str, list[dict[str, float]]] = {}

    def __enter__(self) -> Timeline:
        from genarun.run import batching

        self.original = batching.ModelBatcher._run_batch
        spans, beside, original = self.spans, self.beside, self.original

        def run_batch(batcher: Any, q: Any, batch: list[Any]) -> None:
            before = thread_cpu()
            own = schedstat()
            began = time.perf_counter()
            try:
                original(batcher, q, batch)
            finally:
                ended = time.perf_counter()
                spans.append((q.task, began, ended, len(batch)))
                after = thread_cpu()
                me = threading.get_ident()
                used: dict[str, float] = {}
                done = schedstat()
                if own is not None and done is not None:
                    # The batch's own thread: running, waiting for a core, and blocked (the
                    # GIL, GPU syncs, I/O), which add up to the batch's wall time.
                    used["self cpu"] = done[0] - own[0]
                    used["self core wait"] = done[1] - own[1]
                    used["self blocked"] = max(
                        0.0, ended - began - used["self cpu"] - used["self core wait"]
                    )
                for ident, (name, seconds) in after.items():
                    if ident != me:
                        key = group(name)
                        used[key] = used.get(key, 0.0) + seconds - before.get(ident, (name, 0.0))[1]
                beside.setdefault(q.task, []).append(used)

        batching.ModelBatcher._run_batch = run_batch  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        from genarun.run import batching

        batching.ModelBatcher._run_batch = self.original  # type: ignore[method-assign]

    def summary(self, start: float, end: float) -> dict[str, float]:
        """Seconds each task was busy, and seconds in which no model was busy at all: in all,
        before the first batch (the run's start), after the last (its end) and between."""
        out: dict[str, float] = {}
        for task in {t for t, *_ in self.spans}:
            out[f"busy {task}"] = _union([(a, b) for t, a, b, _ in self.spans if t == task])
        out["no model busy"] = (end - start) - _union([(a, b) for _, a, b, _ in self.spans])
        if self.spans:
            out["no model busy: before the first batch"] = (
                min(a for _, a, _, _ in self.spans) - start
            )
            out["no model busy: after the last batch"] = end - max(b for _, _, b, _ in self.spans)
        return {k: round(v, 3) for k, v in sorted(out.items())}

    def beside_summary(self) -> dict[str, dict[str, float]]:
        """Per task: its median seconds per batch ("batch"), and the median CPU seconds each
        group of other threads used while one of its batches ran."""
        out: dict[str, dict[str, float]] = {}
        for task, batches in sorted(self.beside.items()):
            spans = [b - a for t, a, b, _ in self.spans if t == task]
            row = {"batch": round(statistics.median(spans), 3)}
            for key in sorted({k for used in batches for k in used}):
                value = statistics.median(used.get(key, 0.0) for used in batches)
                if value >= 0.001:
                    row[key] = round(value, 3)
            out[task] = row
        return out


def _union(spans: list[tuple[float, float]]) -> float:
    total, reach = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b <= reach:
            continue
        total += b - max(a, reach)
        reach = b
    return total
