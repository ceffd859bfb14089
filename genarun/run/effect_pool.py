"""I/O calls and CPU work of run functions (`Call`, `Compute`), on thread pools of their own.

Calls wait in one queue and start while their host's limit (`io_per_host`) and their node's
`concurrency:` allow: the limits are kept here, on the scheduler thread, so no pool thread ever
blocks on a limit. Each call runs exactly once; what it returned (or raised) is posted to the
executor's event queue, beside the model batches.
"""

from __future__ import annotations

import os
import queue
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from genarun.nodes.effects import Call, Compute
from genarun.run.cpu_processes import ComputeProcesses
from genarun.run.work_units import Instance


def _here(fn: Callable[[], Any]) -> Any:
    return fn()


def default_cpu_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(eq=False)
class EffectRequest:
    """One `Call` or `Compute` an instance is waiting for."""

    instance: Instance
    effect: Call | Compute
    slot: int  # position in the instance's current yield
    attempt: int = 0  # the instance's attempt and yield that asked: later ones make it stale
    step: int = 0

    @property
    def node_key(self) -> str:
        return self.instance.node.id

    @property
    def node_limit(self) -> int | None:
        """The node's `concurrency:` (a kind that makes I/O calls declares the field)."""
        limit = getattr(self.instance.node.spec, "concurrency", None)
        return limit if isinstance(limit, int) and limit > 0 else None


@dataclass(eq=False)
class EffectDone:
    """An effect that finished on a pool thread: its result, or the exception it raised."""

    request: EffectRequest
    result: Any = None
    error: BaseException | None = None


class EffectPool:
    """Runs `Call`s on the I/O pool within their limits and `Compute`s on the CPU pool."""

    def __init__(
        self,
        events: queue.Queue[Any],
        *,
        io_workers: int,  # defaults: the executor's ExecutorOptions
        io_per_host: int,
        cpu_workers: int | None = None,
        run_compute: Callable[[Callable[[], Any]], Any] | None = None,
    ) -> None:
        self.events = events
        cpu_workers = cpu_workers or default_cpu_workers()
        # How a Compute's function is run from a pool thread: as a Ray task, or in a worker
        # process (genarun/run/cpu_processes.py), so work that holds the GIL never stalls the
        # scheduler.
        self.processes: ComputeProcesses | None = None
        if run_compute is None:
            self.processes = ComputeProcesses(cpu_workers)
        self.run_compute = run_compute or self.processes or _here
        self.io_per_host = io_per_host
        self.io = ThreadPoolExecutor(max_workers=io_workers, thread_name_prefix="genarun-io")
        self.cpu = ThreadPoolExecutor(max_workers=cpu_workers, thread_name_prefix="genarun-cpu")
        # Calls held back by a limit, in arrival order per (host, node): every call of one
        # queue waits on the same limits, so a dispatch looks at each queue's head only (one
        # scan of every held call per finished call made 1,000 fetches quadratic).
        self.queued: dict[tuple[str | None, str], deque[EffectRequest]] = {}
        self.per_host: Counter[str] = Counter()
        self.per_node: Counter[str] = Counter()
        self.in_flight = 0
        self.calls = 0  # calls started, for the run summary
        self.computed = 0

    def submit(self, request: EffectRequest) -> None:
        if isinstance(request.effect, Compute):
            self.in_flight += 1
            self.computed += 1
            self.cpu.submit(self._run, request)
        else:
            effect = request.effect
            key = (effect.host if isinstance(effect, Call) else None, request.node_key)
            self.queued.setdefault(key, deque()).append(request)
            self.dispatch()

    def dispatch(self) -> None:
        """Start every queued call whose host and node are under their limits, in order."""
        for key in list(self.queued):
            waiting = self.queued[key]
            while waiting and self._may_start(waiting[0]):
                request = waiting.popleft()
                effect = request.effect
                assert isinstance(effect, Call)
                if effect.host is not None:
                    self.per_host[effect.host] += 1
                self.per_node[request.node_key] += 1
                self.in_flight += 1
                self.calls += 1
                self.io.submit(self._run, request)
            if not waiting:
                del self.queued[key]

    def _may_start(self, request: EffectRequest) -> bool:
        effect = request.effect
        host = effect.host if isinstance(effect, Call) else None
        if host is not None:
            host_limit = (
                effect.host_limit if isinstance(effect, Call) else None
            ) or self.io_per_host
            if self.per_host[host] >= host_limit:
                return False
        node_limit = request.node_limit
        return node_limit is None or self.per_node[request.node_key] < node_limit

    def _run(self, request: EffectRequest) -> None:
        """On a pool thread: run the effect once and post what came of it."""
        try:
            effect = request.effect
            result = self.run_compute(effect.fn) if isinstance(effect, Compute) else effect.fn()
        except BaseException as exc:  # the kind's to handle: thrown into its generator
            self.events.put(EffectDone(request, error=exc))
        else:
            self.events.put(EffectDone(request, result))

    def settle(self, done: EffectDone) -> None:
        """Free a finished effect's place under its limits (on the scheduler thread)."""
        self.in_flight -= 1
        effect = done.request.effect
        if isinstance(effect, Call):
            if effect.host is not None:
                self.per_host[effect.host] -= 1
            self.per_node[done.request.node_key] -= 1
            self.dispatch()

    def shutdown(self) -> None:
        self.queued.clear()
        self.io.shutdown(wait=True, cancel_futures=True)
        self.cpu.shutdown(wait=True, cancel_futures=True)
        if self.processes is not None:
            self.processes.shutdown()
