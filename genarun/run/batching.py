"""Model calls in batches: requests queue per model and settings and go to worker threads.

Each model runs one batch at a time. A failed batch is retried in halves (out of memory halves
the size that is tried, and one bad input is isolated), and a halved size doubles again after
good batches. What each model did is counted for the run summary.
"""

from __future__ import annotations

import queue
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from genarun.models.device import own_stream
from genarun.run.recording import short_error
from genarun.run.state import RunState
from genarun.run.work_units import Request
from genarun.usage.meter import meter_chunk

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    # genarun.models.base loads with the first model request (`_queue_key`): a run without
    # models never needs it.
    from genarun.models.base import ModelSpec

# Good batches in a row after which a batch size halved by a failure is doubled again.
REGROW_AFTER = 4

# A batch that has run: its requests, their results, or the error that stopped it.
FinishedBatch = tuple[list[Request], list[Any] | None, BaseException | None]


class ModelQueue:
    """The requests waiting for one model with one task and settings."""

    def __init__(self, spec: ModelSpec, task: str):
        self.spec = spec
        self.task = task
        self.items: deque[Request] = deque()
        self.max_batch: int | None = None  # halved after a failed batch
        self.good_batches = 0  # successes in a row since the last halving
        # What the model did, for the run summary: where the time went and how full batches were.
        self.batches = 0
        self.ran = 0  # items
        self.seconds = 0.0
        # For the runs' logs: the size of each call, each load of the model (wall-clock start,
        # seconds, device), and the runs whose requests it served.
        self.sizes: Counter[int] = Counter()
        self.loads: list[tuple[float, float, str]] = []
        self.runs: set[str] = set()
        self.nodes: dict[str, None] = {}  # in the order they first asked
        self.loading_since: float | None = None  # while its model loads


class ModelBatcher:
    """Queues model requests, runs them in batches on a thread pool, and reports what finished."""

    def __init__(
        self,
        batch_size: int,
        device: str | None,
        log: Callable[[RunState, str, str], None],
        events: queue.Queue[Any] | None = None,
        models: Any = None,
        workers: int = 4,
    ) -> None:
        self.batch_size = batch_size
        self.device = device
        self.log = log
        self.queues: dict[tuple, ModelQueue] = {}
        self.busy_models: set[str] = set()
        self.in_flight = 0
        # Where finished batches are posted (the executor's queue of every kind of event).
        self.events: queue.Queue[Any] = events if events is not None else queue.Queue()
        # Where models are loaded: the process's cache, or the Ray executor's actors.
        self._models: Any = models
        # The threads batches run on, made with the first batch: a run without model calls
        # starts none (and does not import concurrent.futures, with logging).
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None

    def enqueue(self, request: Request) -> None:
        request.attempt = request.instance.attempts
        request.step = request.instance.step
        key = _queue_key(request)
        q = self.queues.get(key)
        if q is None:
            q = self.queues[key] = ModelQueue(request.invoke.model, request.invoke.invocation.task)
        q.items.append(request)
        q.runs.add(request.instance.run.id)
        q.nodes.setdefault(request.instance.node.id)

    def has_queued(self) -> bool:
        return any(q.items for q in self.queues.values())

    def dispatch(self, paused: set[str] | None = None) -> None:
        """Send one batch to every model that has requests waiting and none running; requests
        of `paused` runs wait in the queue (a paused run starts no new model calls)."""
        for q in self.queues.values():
            if not q.items or q.spec.instance_key in self.busy_models:
                continue
            limit = q.max_batch or self.batch_size
            if paused:
                batch = _take_unpaused(q.items, limit, paused)
                if not batch:
                    continue
            else:
                batch = [q.items.popleft() for _ in range(min(limit, len(q.items)))]
            self.busy_models.add(q.spec.instance_key)
            self.in_flight += 1
            self._threads().submit(self._run_batch, q, batch)

    def _threads(self) -> ThreadPoolExecutor:
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix="genarun-model"
            )
        return self._pool

    def shutdown(self, wait: bool) -> None:
        """Stop the batch threads (if any started): after the batches that run, or at once."""
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)

    def _run_batch(self, q: ModelQueue, batch: list[Request]) -> None:
        """On a worker thread: load the model once, run one batch, post the results."""
        try:
            model = self._load(q)
            began = time.perf_counter()
            # A model's own bound (memory), unless its spec's options set `max_batch`.
            limit = int(
                q.spec.option_dict.get("max_batch") or getattr(model, "max_batch", 0) or len(batch)
            )
            results = []
            priority = int(getattr(model, "stream_priority", 0) or 0)
            with own_stream(getattr(model, "device", None), priority):
                for start in range(0, len(batch), limit):
                    chunk = batch[start : start + limit]
                    called = time.perf_counter()
                    invocations = [r.invoke.invocation for r in chunk]
                    if any(r.lost for r in chunk) and hasattr(model, "run_alone"):
                        # It lost its actor before (Ray): on an actor other models share, it
                        # runs with none of theirs beside it, so a crash there is its own.
                        answers = model.run_alone(q.task, invocations)
                    else:
                        answers = model.run(q.task, invocations)
                    # Tokens, images, requests and busy time, onto each request's execution.
                    meter_chunk(model, q.spec, q.task, chunk, answers, time.perf_counter() - called)
                    results.extend(answers)
                    q.batches += 1
                    q.sizes[len(chunk)] += 1
            if len(results) != len(batch):
                raise RuntimeError(f"model returned {len(results)} results for {len(batch)} inputs")
            q.ran += len(batch)
            q.seconds += time.perf_counter() - began
            self.events.put((batch, results, None))
        except BaseException as exc:  # reported to the instances, on the scheduler thread
            self.events.put((batch, None, exc))

    def _load(self, q: ModelQueue) -> Any:
        """The queue's model, from the process's cache; a load it had to do is noted."""
        if self.models.is_loaded(q.spec, self.device):
            return self.models.get(q.spec, self.device)
        at, began = time.time(), time.perf_counter()
        q.loading_since = at  # shown by the progress display while the load lasts
        try:
            model = self.models.get(q.spec, self.device)
        finally:
            q.loading_since = None
        device = str(getattr(model, "device", None) or self.device or "cpu")
        q.loads.append((at, time.perf_counter() - began, device))
        return model

    def settle(self, batch: list[Request], error: BaseException | None) -> bool:
        """Free a finished batch's model and adjust its batch size; True when the batch failed
        and was queued again in smaller batches (its requests then have no outcome yet)."""
        self.in_flight -= 1
        self.busy_models.discard(batch[0].invoke.model.instance_key)
        q = self.queues[_queue_key(batch[0])]
        if error is None:
            self._regrow(q, batch[0].instance.run, len(batch))
            return False
        # Only the Ray executor raises ActorDied: a local run never imports its module (Ray's).
        ray_backend = sys.modules.get("genarun.run.ray_backend")
        if ray_backend is not None and isinstance(error, ray_backend.ActorDied):
            if len(batch) == 1 and batch[0].lost >= ray_backend.MAX_ACTOR_DEATHS:
                # The process died every time it ran this one input: a crash in the model.
                error.hint = (
                    f"the model's process died {batch[0].lost + 1} times running this input; "
                    "what does not depend on it went on. Fix the model or the input, then "
                    "resume the run"
                )
                return False
            # Ray restarts the actor; the batch goes again. Lost a second time, it goes in
            # halves: one input that crashes the model then takes down no other.
            again = any(r.lost for r in batch)
            for request in batch:
                request.lost += 1
            if again and len(batch) > 1:
                q.max_batch = max(1, len(batch) // 2)
                q.good_batches = 0
            q.items.extendleft(reversed(batch))
            self.log(
                batch[0].instance.run,
                "warning",
                f"{error}; its batch of {len(batch)} is queued again"
                + (f" in batches of {q.max_batch}" if again and len(batch) > 1 else ""),
            )
            return True
        if len(batch) > 1 and not isinstance(error, KeyboardInterrupt):
            # Smaller batches: out of memory halves them, and one bad input is isolated.
            q.max_batch = max(1, len(batch) // 2)
            q.good_batches = 0
            q.items.extendleft(reversed(batch))
            self.log(
                batch[0].instance.run,
                "warning",
                f"batch of {len(batch)} failed ({short_error(error)}); retrying in batches of {q.max_batch}",
            )
            return True
        return False

    def _regrow(self, q: ModelQueue, run: RunState, size: int) -> None:
        """Double a halved batch size again after REGROW_AFTER good batches: a passing memory
        spike must not slow the rest of a weeks-long experiment."""
        if q.max_batch is None or size < q.max_batch:
            return
        q.good_batches += 1
        if q.good_batches >= REGROW_AFTER:
            q.max_batch = None if q.max_batch * 2 >= self.batch_size else q.max_batch * 2
            q.good_batches = 0
            shown = q.max_batch or self.batch_size
            self.log(
                run,
                "info",
                f"{q.spec.label()}: {REGROW_AFTER} batches ran well; trying batches of {shown} again",
            )

    def model_stats(self) -> list[dict[str, Any]]:
        """Per model, task and settings: calls made (batches), items, mean batch size, seconds
        busy; for the runs' logs also the call sizes, loads, and the runs and nodes served."""
        return [
            {
                "model": q.spec.label(),
                "task": q.task,
                "batches": q.batches,
                "items": q.ran,
                "mean_batch": round(q.ran / q.batches, 1),
                "seconds": round(q.seconds, 3),
                "sizes": dict(sorted(q.sizes.items(), reverse=True)),
                "loads": list(q.loads),
                "runs": sorted(q.runs),
                "nodes": list(q.nodes),
            }
            for q in self.queues.values()
            if q.batches
        ]

    @property
    def models(self) -> Any:
        """The process's model cache, imported on first use (it pulls in the providers)."""
        if self._models is None:
            from genarun.models.cache import model_cache

            self._models = model_cache()
        return self._models


def _queue_key(request: Request) -> tuple:
    """Requests with equal keys (one model, one task, equal settings) may share a batch."""
    from genarun.models.base import batch_key

    invocation = request.invoke.invocation
    return (request.invoke.model.instance_key, batch_key(invocation.task, invocation.settings))


def _take_unpaused(items: deque[Request], limit: int, paused: set[str]) -> list[Request]:
    """Up to `limit` requests of runs that are not paused, out of `items`; the rest stay, in
    their order."""
    batch: list[Request] = []
    kept: deque[Request] = deque()
    while items:
        request = items.popleft()
        if len(batch) < limit and request.instance.run.id not in paused:
            batch.append(request)
        else:
            kept.append(request)
    items.extend(kept)
    return batch
