"""The scheduler: executes the runs of an experiment recursively, with inherited scope.

Work units are *slots* (a node under one execution of its parent, not yet expanded by its
foreach) and *instances* (one execution). Cheap kinds run inline in the scheduler thread; model
kinds are generators that yield `Invoke`s, which are queued per model and settings and sent to
the model in batches on worker threads. All runs of an experiment share one scheduler, so
matrix runs and foreach items that call the same model are batched together.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import queue
import time
import traceback
from collections import defaultdict, deque
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from genarun.errors import Interrupted
from genarun.graph.compile import CompiledNode
from genarun.models.base import batch_key
from genarun.models.device import own_stream
from genarun.nodes.base import ExecutionContext, Invoke
from genarun.run.reuse import (
    StoredExecution,
    adopt_output,
    cache_key,
    cached_executions,
    model_identity,
)
from genarun.run.seeds import derive_seed, fresh_seed
from genarun.run.state import NodeResult, RunState
from genarun.tree.templates import RenderError, field_rng
from genarun.values import dumps, json_text


@dataclass(eq=False)
class Slot:
    run: RunState
    node: CompiledNode
    parent_path: tuple[int, ...]
    scope: dict[str, Any]  # the parent's scope for its children


@dataclass(eq=False)
class Instance:
    run: RunState
    node: CompiledNode
    path: tuple[int, ...]
    scope: dict[str, Any]
    seed: int
    attempts: int = 0
    started: float = 0.0
    gen: Generator[Any, Any, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    picks: list[Any] = field(default_factory=list)
    ctx: ExecutionContext | None = None
    waiting: list[Any] = field(default_factory=list)  # results of the current yield
    pending: int = 0
    yielded_list: bool = False
    stored: StoredExecution | None = None  # the stored execution whose output is reused
    kept: bool = False  # `stored` is this run's own (resume): it is not recorded again
    cache_key: str | None = None


@dataclass(eq=False)
class Request:
    instance: Instance
    invoke: Invoke
    slot: int  # position in the instance's current yield
    attempt: int = 0  # the instance's attempt that asked; a retry makes older requests stale


# Good batches in a row after which a batch size halved by a failure is doubled again.
REGROW_AFTER = 4


class ModelQueue:
    def __init__(self, spec: Any, task: str):
        self.spec = spec
        self.task = task
        self.items: deque[Request] = deque()
        self.max_batch: int | None = None  # halved after a failed batch
        self.good_batches = 0  # successes in a row since the last halving
        # What the model did, for the run summary: where the time went and how full batches were.
        self.batches = 0
        self.ran = 0  # items
        self.seconds = 0.0


@dataclass
class ExecutorOptions:
    workers: int = 4
    batch_size: int = 16
    device: str | None = None
    progress: Any = None  # run.progress.Progress


class Executor:
    """Runs the RunStates of one experiment to completion."""

    def __init__(self, runs: list[RunState], options: ExecutorOptions | None = None):
        self.runs = runs
        self.options = options or ExecutorOptions()
        self.ready: deque[Slot | Instance] = deque()
        self.blocked: list[Slot] = []
        self.queues: dict[tuple, ModelQueue] = {}
        self.busy_models: set[str] = set()
        self.in_flight = 0
        self.events: queue.Queue[tuple[list[Request], Any, BaseException | None]] = queue.Queue()
        self.finished_rows: list[dict[str, Any]] = []
        self.log_rows: list[dict[str, Any]] = []
        # (run id, node id) -> prefix -> unfinished slots and instances
        self.pending: dict[tuple[str, str], dict[tuple[int, ...], int]] = defaultdict(lambda: defaultdict(int))
        self.progress = self.options.progress
        self._models: Any = None

    # --- public ---------------------------------------------------------------------------
    def execute(self) -> None:
        pool = ThreadPoolExecutor(max_workers=self.options.workers, thread_name_prefix="genarun-model")
        try:
            for run in self.runs:
                for node_id in run.compiled.roots:
                    self._add_slot(Slot(run, run.compiled.nodes[node_id], (), run.scope))
            self._loop(pool)
        except KeyboardInterrupt:
            self._flush()
            raise Interrupted("interrupted") from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self._flush()

    # --- the loop -------------------------------------------------------------------------
    def _loop(self, pool: ThreadPoolExecutor) -> None:
        while True:
            flushed = time.monotonic()
            while self.ready:
                work = self.ready.popleft()
                if isinstance(work, Slot):
                    self._try_expand(work)
                else:
                    self._start(work)
                # Long stretches of inline work commit in groups, at least every 0.1 s.
                if len(self.finished_rows) >= 500 or time.monotonic() - flushed > 0.1:
                    self._flush()
                    flushed = time.monotonic()
            self._dispatch(pool)
            self._flush()
            if self.progress:
                self.progress.tick()
            if not self.in_flight:
                if self.blocked:
                    self._unblock()
                    if self.ready:
                        continue
                    for slot in self.blocked:  # cannot happen for a compiled tree; never hang
                        self._fail_slot(slot, "dependencies never finished")
                    self.blocked.clear()
                    continue
                if not any(q.items for q in self.queues.values()):
                    return
            try:
                requests, results, error = self.events.get(timeout=0.1)
            except queue.Empty:
                continue
            self._on_batch(requests, results, error)
            while True:  # drain what else has arrived, then run inline work in one go
                try:
                    requests, results, error = self.events.get_nowait()
                except queue.Empty:
                    break
                self._on_batch(requests, results, error)
            self._unblock()

    # --- slots ----------------------------------------------------------------------------
    def _add_slot(self, slot: Slot) -> None:
        self._pending_add(slot.run, slot.node.id, slot.parent_path, +1)
        self.ready.append(slot)

    def _pending_add(self, run: RunState, node_id: str, parent_path: tuple[int, ...], delta: int) -> None:
        counts = self.pending[(run.id, node_id)]
        for k in range(len(parent_path) + 1):
            counts[parent_path[:k]] += delta

    def _deps_ready(self, slot: Slot) -> bool:
        run, node = slot.run, slot.node
        for dep in node.deps:
            k, chain = self._dep_chain(run, node, dep)
            prefix = slot.parent_path[:k]
            for member in chain:
                if self.pending[(run.id, member)].get(prefix, 0) > 0:
                    return False
        return True

    def _dep_chain(self, run: RunState, node: CompiledNode, dep: str) -> tuple[int, tuple[str, ...]]:
        """How many foreach levels `node` shares with `dep`, and `dep` with its ancestors that
        are not `node`'s: all must be finished under the shared foreach items."""
        target = run.compiled.nodes[dep]
        shared = 0
        for a, b in zip(node.loops, target.loops, strict=False):
            if a != b:
                break
            shared += 1
        own = set(node.ancestors)
        chain = (*tuple(a for a in target.ancestors if a not in own), dep)
        return shared, chain

    def _try_expand(self, slot: Slot) -> None:
        run, node = slot.run, slot.node
        if run.failed:
            self._pending_add(run, node.id, slot.parent_path, -1)
            return
        if node.deps and not self._deps_ready(slot):
            self.blocked.append(slot)
            return
        scope = slot.scope
        if node.deps:
            scope = dict(scope)
            for dep in node.deps:
                scope[dep] = self._resolve_ref(run, node, dep, slot.parent_path)
        if node.skip_reason:
            self._record_skip(run, node, slot.parent_path, node.skip_reason)
            self._pending_add(run, node.id, slot.parent_path, -1)
            return
        if node.foreach is None:
            paths_scopes = [(slot.parent_path, scope)]
        else:
            seed = derive_seed(run.seed, node.node_path + "#foreach", slot.parent_path)
            try:
                items = node.foreach.evaluate(scope, field_rng(seed, "foreach"), [])
            except RenderError as exc:
                self._fail_slot(slot, f"foreach: {exc}")
                return
            if isinstance(items, dict):
                items = [{"key": k, "value": v} for k, v in items.items()]
            if isinstance(items, str) or not hasattr(items, "__iter__"):
                self._fail_slot(slot, _not_a_list(items))
                return
            paths_scopes = []
            for index, item in enumerate(items):
                item_scope = dict(scope)
                item_scope[node.item_name] = item
                item_scope["index"] = index
                paths_scopes.append(((*slot.parent_path, index), item_scope))
            run.foreach_items[(node.id, slot.parent_path)] = len(paths_scopes)  # for output.json
        for path, item_scope in paths_scopes:
            self._pending_add(run, node.id, slot.parent_path, +1)
            self.ready.append(Instance(run, node, path, item_scope, self._seed_of(run, node, path)))
        self._pending_add(run, node.id, slot.parent_path, -1)

    def _seed_of(self, run: RunState, node: CompiledNode, path: tuple[int, ...]) -> int:
        if run.reuse is not None:  # a rerun draws new seeds (or keeps the stored ones)
            chosen = run.reuse.seed_for(node, path)
            if chosen is not None:
                return chosen
        seed = node.spec.seed
        if seed == "random":
            return fresh_seed()
        if isinstance(seed, int):
            return seed
        return derive_seed(run.seed, node.node_path, path)

    def _unblock(self) -> None:
        if not self.blocked:
            return
        still = []
        for slot in self.blocked:
            if slot.run.failed or self._deps_ready(slot):
                self.ready.append(slot)
            else:
                still.append(slot)
        self.blocked = still

    def _resolve_ref(self, run: RunState, node: CompiledNode, dep: str, parent_path: tuple[int, ...]) -> Any:
        """A node's output as seen from `node`: within shared foreach items, one value;
        across a foreach that is not shared, the list of its items' outputs."""
        shared, _chain = self._dep_chain(run, node, dep)
        prefix = parent_path[:shared]
        target = run.compiled.nodes[dep]
        results = run.results.get(dep, {})
        depth = len(target.loops) - shared
        if depth == 0:
            result = results.get(prefix)
            return result.value if result is not None and result.status == "done" else None
        tree: dict[Any, Any] = {}
        for path, result in sorted(results.items()):
            if path[:shared] != prefix or result.status != "done":
                continue
            level = tree
            for index in path[shared:-1]:
                level = level.setdefault(index, {})
            level[path[-1]] = result.value
        return _nested_list(tree, depth)

    # --- instances ------------------------------------------------------------------------
    def _start(self, inst: Instance) -> None:
        run, node = inst.run, inst.node
        if run.failed:
            self._done(inst, None, status=None)
            return
        inst.attempts += 1
        inst.started = time.time()
        inst.picks = []
        stored = self._stored_for(inst) if inst.attempts == 1 else None
        if stored is not None and stored.seed is not None:
            inst.seed = stored.seed  # the subtree sees the vars and picks it saw before
        scope = inst.scope
        try:
            if node.vars:
                # Vars are rendered once per execution and seen by the node and its subtree.
                scope = dict(scope)
                for name, compiled in node.vars:
                    scope[name] = compiled.evaluate(scope, field_rng(inst.seed, f"vars.{name}"), inst.picks)
                inst.scope = scope
            if node.when is not None and not node.when.evaluate(scope, field_rng(inst.seed, "when"), inst.picks):
                self._finish(inst, NodeResult("skipped", error="when is false"))
                return
            if stored is not None and stored.status == "done" and self._reuse(inst, stored, "stored"):
                return
            spec = self._render_params(inst, scope)
            if self._from_cache(inst):
                return
            inst.ctx = ExecutionContext(node_id=node.id, path=inst.path, seed=inst.seed, run=run, log=self._logger(inst))
            out = node.kind.run(inst.ctx, spec)
        except Exception as exc:  # a node's error is reported on the node, never a crash
            self._error(inst, exc)
            return
        if inspect.isgenerator(out):
            inst.gen = out
            self._advance(inst, None, first=True)
        else:
            self._finish(inst, NodeResult("done", out))

    def _stored_for(self, inst: Instance) -> StoredExecution | None:
        """The run's own finished execution (resume), or the source run's (rerun, --only)."""
        plan = inst.run.reuse
        if plan is None:
            return None
        key = (inst.node.id, inst.path)
        kept = plan.kept.get(key)
        if kept is not None:
            inst.kept, inst.stored = True, kept
            return kept
        return plan.prior_for(*key)

    def _reuse(self, inst: Instance, stored: StoredExecution, how: str) -> bool:
        """Finish `inst` with a stored output; False when its images are gone."""
        run = inst.run
        ok, value = adopt_output(run, stored, inst.node.id, inst.path)
        if not ok:
            self._log(run, "warning", f"execution {stored.id} cannot be reused (an image of it is missing or changed); running it again", inst)
            inst.kept, inst.stored = False, None
            return False
        inst.stored = stored
        if not inst.kept:
            self._log(run, "info", f"reused ({how}): execution {stored.origin} of run {stored.run_id[:8]}", inst)
        self._finish(inst, NodeResult("done", value))
        return True

    def _from_cache(self, inst: Instance) -> bool:
        """Reuse an identical stored execution (same key) from any run, when allowed."""
        run, node = inst.run, inst.node
        inst.kept, inst.stored = False, None
        if run.reuse is None or not node.kind.cacheable:
            return False
        try:
            model = model_identity(run, node, inst.params)
        except Exception:  # an unusable model: the run function reports it properly
            return False
        inst.cache_key = cache_key(node.kind.name, inst.params, model, inst.seed)
        if not run.reuse.cache_allowed(node.id, inst.path):
            return False
        for candidate in cached_executions(run.store, inst.cache_key):
            if self._reuse(inst, candidate, "cache"):
                return True
        return False

    def _render_params(self, inst: Instance, scope: dict[str, Any]) -> Any:
        node = inst.node
        spec = node.spec
        rendered: dict[str, Any] = {}
        for name, compiled in node.params.items():
            if compiled.dynamic:
                rendered[name] = compiled.evaluate(scope, field_rng(inst.seed, name), inst.picks)
        inst.params = {name: getattr(spec, name) for name in node.params} | rendered
        if not rendered:
            return spec
        # Validate only the rendered fields against their declared types (cheap, per field).
        problems = []
        for name, value in rendered.items():
            adapter = _field_adapter(type(spec), name)
            if adapter is None:
                continue
            try:
                rendered[name] = adapter.validate_python(value)
            except ValidationError as exc:
                alias = type(spec).model_fields[name].alias or name
                problems.append(f"{alias}: {exc.errors()[0]['msg']} (got {str(value)[:60]!r})")
        if problems:
            raise RenderError("rendered values are invalid: " + "; ".join(problems))
        return spec.model_copy(update=rendered)

    def _advance(self, inst: Instance, value: Any, first: bool = False, error: BaseException | None = None) -> None:
        assert inst.gen is not None
        try:
            if error is not None:
                request = inst.gen.throw(error)
            elif first:
                request = next(inst.gen)
            else:
                request = inst.gen.send(value)
        except StopIteration as stop:
            self._finish(inst, NodeResult("done", stop.value))
            return
        except Exception as exc:
            self._error(inst, exc)
            return
        invokes = request if isinstance(request, list) else [request]
        inst.yielded_list = isinstance(request, list)
        inst.waiting = [None] * len(invokes)
        inst.pending = len(invokes)
        if not invokes:
            self._advance(inst, [])
            return
        for position, invoke in enumerate(invokes):
            self._enqueue(Request(inst, invoke, position))

    def _enqueue(self, request: Request) -> None:
        request.attempt = request.instance.attempts
        invoke = request.invoke
        key = (invoke.model.key, batch_key(invoke.invocation.task, invoke.invocation.settings))
        q = self.queues.get(key)
        if q is None:
            q = self.queues[key] = ModelQueue(invoke.model, invoke.invocation.task)
        q.items.append(request)

    def _dispatch(self, pool: ThreadPoolExecutor) -> None:
        for q in self.queues.values():
            if not q.items or q.spec.key in self.busy_models:
                continue
            limit = q.max_batch or self.options.batch_size
            batch = [q.items.popleft() for _ in range(min(limit, len(q.items)))]
            self.busy_models.add(q.spec.key)
            self.in_flight += 1
            pool.submit(self._run_batch, q, batch)

    def _run_batch(self, q: ModelQueue, batch: list[Request]) -> None:
        """On a worker thread: load the model once, run one batch, post the results."""
        try:
            model = self.models.get(q.spec, self.options.device)
            began = time.perf_counter()
            # A model's own bound (memory), unless its spec's options set `max_batch`.
            limit = int(q.spec.option_dict.get("max_batch") or getattr(model, "max_batch", 0) or len(batch))
            results = []
            with own_stream(getattr(model, "device", None)):
                for start in range(0, len(batch), limit):
                    chunk = batch[start : start + limit]
                    results.extend(model.run(q.task, [r.invoke.invocation for r in chunk]))
                    q.batches += 1
            if len(results) != len(batch):
                raise RuntimeError(f"model returned {len(results)} results for {len(batch)} inputs")
            q.ran += len(batch)
            q.seconds += time.perf_counter() - began
            self.events.put((batch, results, None))
        except BaseException as exc:  # reported to the instances, on the scheduler thread
            self.events.put((batch, None, exc))

    def model_stats(self) -> list[dict[str, Any]]:
        """Per model and task: calls made (batches), items, mean batch size and seconds busy."""
        return [
            {"model": q.spec.label(), "task": q.task, "batches": q.batches, "items": q.ran, "mean_batch": round(q.ran / q.batches, 1), "seconds": round(q.seconds, 3)}
            for q in self.queues.values()
            if q.batches
        ]

    @property
    def models(self) -> Any:
        if self._models is None:
            from genarun.models.cache import model_cache

            self._models = model_cache()
        return self._models

    def _on_batch(self, batch: list[Request], results: list[Any] | None, error: BaseException | None) -> None:
        self.in_flight -= 1
        spec_key = batch[0].invoke.model.key
        self.busy_models.discard(spec_key)
        if error is not None:
            if len(batch) > 1 and not isinstance(error, KeyboardInterrupt):
                # Smaller batches: out of memory halves them, and one bad input is isolated.
                key = (spec_key, batch_key(batch[0].invoke.invocation.task, batch[0].invoke.invocation.settings))
                q = self.queues[key]
                q.max_batch = max(1, len(batch) // 2)
                q.good_batches = 0
                q.items.extendleft(reversed(batch))
                self._log(batch[0].instance.run, "warning", f"batch of {len(batch)} failed ({_short(error)}); retrying in batches of {q.max_batch}")
                return
            for request in batch:
                inst = request.instance
                if inst.gen is not None and not _stale(request):
                    self._error(inst, error)
            return
        assert results is not None
        self._regrow(batch[0], len(batch))
        for request, result in zip(batch, results, strict=True):
            inst = request.instance
            if _stale(request):
                # Another request of the same yield failed and the instance was restarted.
                continue
            inst.waiting[request.slot] = result
            inst.pending -= 1
            if inst.pending == 0:
                value = inst.waiting if inst.yielded_list else inst.waiting[0]
                self._advance(inst, value)

    def _regrow(self, request: Request, size: int) -> None:
        """Double a halved batch size again after REGROW_AFTER good batches: a passing memory
        spike must not slow the rest of a weeks-long experiment."""
        invocation = request.invoke.invocation
        q = self.queues[(request.invoke.model.key, batch_key(invocation.task, invocation.settings))]
        if q.max_batch is None or size < q.max_batch:
            return
        q.good_batches += 1
        if q.good_batches >= REGROW_AFTER:
            q.max_batch = None if q.max_batch * 2 >= self.options.batch_size else q.max_batch * 2
            q.good_batches = 0
            shown = q.max_batch or self.options.batch_size
            self._log(request.instance.run, "info", f"{q.spec.label()}: {REGROW_AFTER} batches ran well; trying batches of {shown} again")

    # --- finishing ------------------------------------------------------------------------
    def _error(self, inst: Instance, exc: BaseException) -> None:
        node = inst.node
        message = _short(exc)
        # Close the failed attempt's generator now (not whenever it is garbage collected), so a
        # kind can record how far it got; a retry starts a fresh one.
        if inst.gen is not None:
            gen, inst.gen = inst.gen, None
            with contextlib.suppress(Exception):
                gen.close()
        if inst.attempts <= node.spec.retries:
            self._log(inst.run, "warning", f"attempt {inst.attempts} failed: {message}; retrying", inst)
            self.ready.append(inst)
            return
        if not isinstance(exc, RenderError | ValueError):
            self._log(inst.run, "debug", "".join(traceback.format_exception(exc)), inst)
        self._finish(inst, NodeResult("failed", error=message))

    def _finish(self, inst: Instance, result: NodeResult) -> None:
        run, node = inst.run, inst.node
        run.results.setdefault(node.id, {})[inst.path] = result
        ended = time.time()
        # A reused execution keeps the stored one's params, hashes, model and picks.
        stored = inst.stored if inst.stored is not None and inst.stored.status == result.status else None
        params_json = json_text(inst.params, sort_keys=True)
        model = inst.ctx.model_name if inst.ctx else None
        if stored is not None:
            params_json = params_json if inst.params else (stored.params or "{}")
            model = stored.model
        if not (inst.kept and stored is not None):  # resume: the run's own rows stay as they are
            self.finished_rows.append(
                {
                    "run_id": run.id,
                    "node_id": node.id,
                    "path": json.dumps(list(inst.path)),
                    "kind": node.kind.name,
                    "params": params_json,
                    "input_hash": stored.input_hash if stored is not None else hashlib.sha256(f"{node.kind.name}\0{model}\0{params_json}".encode()).hexdigest(),
                    "cache_key": inst.cache_key or (stored.cache_key if stored is not None else None),
                    "output": json_text(result.value) if result.status == "done" else None,
                    "seed": inst.seed,
                    "model": model,
                    "status": result.status,
                    "started": inst.started,
                    "ended": ended,
                    "duration": ended - inst.started,
                    "error": result.error,
                    "picks": stored.picks if stored is not None else (dumps([p.to_json() for p in inst.picks]) if inst.picks else None),
                    "attempts": inst.attempts,
                    "reused_from": stored.origin if stored is not None else None,
                }
            )
        # Kept executions count as they did before the interruption: done, or reused.
        reused = stored is not None and result.status == "done" and not (inst.kept and stored.reused_from is None)
        counted = "reused" if reused else result.status
        run.counts[counted] = run.counts.get(counted, 0) + 1
        if result.status == "failed":
            run.failed.append(f"{node.id}{''.join(f'[{i}]' for i in inst.path)}: {result.error}")
            self._log(run, "error", f"failed: {result.error}", inst)
        if self.progress:
            self.progress.finished(run, node.id, counted)
        self._done(inst, result, status=result.status)

    def _done(self, inst: Instance, result: NodeResult | None, status: str | None) -> None:
        run, node = inst.run, inst.node
        # Break inst -> ctx -> log -> inst: the instance is freed now rather than left to the
        # cyclic GC, whose full collections over 10,000s of them cost more than running them.
        inst.ctx = None
        if result is not None and result.status == "done" and not run.failed and node.children:
            child_scope = dict(inst.scope)
            child_scope[node.id] = result.value
            for child_id in node.children:
                self._add_slot(Slot(run, run.compiled.nodes[child_id], inst.path, child_scope))
        parent_path = inst.path[:-1] if node.foreach is not None else inst.path
        self._pending_add(run, node.id, parent_path, -1)

    def _record_skip(self, run: RunState, node: CompiledNode, parent_path: tuple[int, ...], reason: str) -> None:
        kept = run.reuse.kept.get((node.id, parent_path)) if run.reuse is not None else None
        if kept is not None and kept.status == "skipped":  # recorded before the interruption
            return
        self.finished_rows.append(
            {"run_id": run.id, "node_id": node.id, "path": json.dumps(list(parent_path)), "kind": node.kind.name, "status": "skipped", "error": reason, "started": time.time(), "ended": time.time(), "duration": 0.0}
        )

    def _fail_slot(self, slot: Slot, message: str) -> None:
        run, node = slot.run, slot.node
        inst = Instance(run, node, slot.parent_path, slot.scope, 0, attempts=1, started=time.time())
        self._pending_add(run, node.id, slot.parent_path, +1)
        self._pending_add(run, node.id, slot.parent_path, -1)
        self._finish(inst, NodeResult("failed", error=message))

    # --- logs and storage -----------------------------------------------------------------
    def _logger(self, inst: Instance) -> Any:
        return lambda level, message: self._log(inst.run, level, message, inst)

    def _log(self, run: RunState, level: str, message: str, inst: Instance | None = None) -> None:
        self.log_rows.append(
            {
                "run_id": run.id,
                "node_id": inst.node.id if inst else None,
                "path": json.dumps(list(inst.path)) if inst else None,
                "time": time.time(),
                "level": level,
                "message": message,
            }
        )
        if self.progress and level in ("warning", "error"):
            where = f"{inst.node.id}{''.join(f'[{i}]' for i in inst.path)}: " if inst else ""
            self.progress.message(f"{level}: {where}{message}")

    def _flush(self) -> None:
        """Commit finished executions and logs: nothing finished is ever lost."""
        if not self.finished_rows and not self.log_rows:
            return
        store = self.runs[0].store
        if self.finished_rows:
            store.record_executions(self.finished_rows)
            self.finished_rows = []
        if self.log_rows:
            store.add_logs(self.log_rows)
            self.log_rows = []


@lru_cache(maxsize=512)
def _field_adapter(model: type, name: str) -> TypeAdapter[Any] | None:
    """A validator for one field of a kind's model; None for fields typed Any."""
    annotation = model.model_fields[name].annotation
    return None if annotation is Any else TypeAdapter(annotation)


def _stale(request: Request) -> bool:
    """A request from an earlier attempt of its instance (or of one that has finished)."""
    return request.attempt != request.instance.attempts or request.instance.gen is None


def _nested_list(tree: dict[Any, Any], depth: int) -> list[Any]:
    if depth == 1:
        return [tree[k] for k in sorted(tree)]
    return [_nested_list(tree[k], depth - 1) for k in sorted(tree)]


def _not_a_list(value: Any) -> str:
    """Why a foreach value cannot be iterated, and how to fix it."""
    shown = f"{type(value).__name__}: {str(value)[:80]!r}"
    if isinstance(value, str):
        fix = "parse the output it comes from into a list (parse: json or parse: lines), or split it (foreach: plan.split(','))"
    elif isinstance(value, int):
        fix = f"to run {value} times, write foreach: range({value})"
    else:
        fix = "give a list, a mapping, or a node whose output is one"
    return f"foreach: expected a list, got {shown} ({fix})"


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, RenderError | ValueError) and type(exc).__name__ not in text:
        text = f"{type(exc).__name__}: {text}"
    return text.splitlines()[0][:500] if len(text) > 500 else text
