"""`Compute`s in worker processes: CPU work never holds the scheduler's GIL.

A thread is not enough: a library that computes in C without releasing the GIL (ripser's
persistence: 400 points held another thread for 139 s, measured) stops the scheduler thread,
and with it every other node of the run, until it returns. So a `Compute` whose function can be
pickled (a module-level function, a `functools.partial` of one with picklable data, such as a
persistence job) runs in a process of a small pool started on first use, from a clean
`forkserver` (never forked from this threaded process); the pool thread that asked waits for
it with the GIL released. A function that cannot be pickled (a closure) runs on that thread.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor


def _call(data: bytes) -> Any:
    """In a worker: run the pickled function."""
    return pickle.loads(data)()


class ComputeProcesses:
    """Runs picklable functions in up to `workers` processes (started on first use)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def __call__(self, fn: Callable[[], Any]) -> Any:
        try:
            data = pickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError):
            return fn()  # a closure or a lambda: on this (pool) thread
        return self._executor().submit(_call, data).result()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # Imported here: a run without CPU work never loads multiprocessing.
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                methods = multiprocessing.get_all_start_methods()
                method = "forkserver" if "forkserver" in methods else "spawn"
                self._pool = ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context(method)
                )
            return self._pool

    def shutdown(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
