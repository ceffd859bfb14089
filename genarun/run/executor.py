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
"""

from __future__ import annotations

import contextlib
import inspect
import queue
import time
import traceback
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from genarun.errors import Interrupted
from genarun.graph.compile import CompiledNode
from genarun.nodes.base import ExecutionContext, SkipExecution
from genarun.nodes.effects import Call, Compute, Invoke, Wait
from genarun.retrieval.guard import guarded_run
from genarun.retrieval.progressive import earlier_items_ready
from genarun.run.batching import ModelBatcher
from genarun.run.effect_pool import (
    DEFAULT_IO_PER_HOST,
    DEFAULT_IO_WORKERS,
    EffectDone,
    EffectPool,
    EffectRequest,
)
from genarun.run.recording import ExecutionRecorder, kept_text, short_error
from genarun.run.reuse import (
    StoredExecution,
    adopt_output,
    cache_key,
    cached_executions,
    file_inputs,
    model_identity,
)
from genarun.run.seeds import derive_seed, fresh_seed
from genarun.run.state import Failure, NodeResult, RunState, Status
from genarun.run.work_units import Instance, Request, Slot, is_stale
from genarun.store.confined import FolderNotWritable
from genarun.tree.templates import RenderError, field_rng


@dataclass
class ExecutorOptions:
    workers: int = 4
    batch_size: int = 16
    device: str | None = None
    progress: Any = None  # run.progress.Progress
    io_workers: int = DEFAULT_IO_WORKERS  # threads for `Call`s (I/O waits, not CPU)
    io_per_host: int = DEFAULT_IO_PER_HOST  # `Call`s at once to one host
    cpu_workers: int | None = None  # threads for `Compute`s (default: up to 4, by CPU count)
    backend: Any = None  # run.ray_backend.RayBackend: model batches and CPU work on Ray


@dataclass(eq=False)
class Waiting:
    """An execution parked on a `Wait`, and when its poll is due again."""

    instance: Instance
    wait: Wait
    due: float


class Executor:
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
        )
        if self.progress and hasattr(self.progress, "watch"):
            self.progress.watch(self.batcher)
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
        self.waits: list[Waiting] = []
        self.stopped: FolderNotWritable | None = None  # the run folder became unwritable

    # --- public ---------------------------------------------------------------------------
    def execute(self) -> None:
        pool = ThreadPoolExecutor(
            max_workers=self.options.workers, thread_name_prefix="genarun-model"
        )
        try:
            for run in self.runs:
                for node_id in run.compiled.roots:
                    self._add_slot(Slot(run, run.compiled.nodes[node_id], (), run.scope))
            self._loop(pool)
        except KeyboardInterrupt:
            self.recorder.flush()
            raise Interrupted("interrupted") from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self.effects.shutdown()
            self.recorder.flush()

    def model_stats(self) -> list[dict[str, Any]]:
        """Per model and task: calls made (batches), items, mean batch size and seconds busy."""
        return self.batcher.model_stats()

    # --- the loop -------------------------------------------------------------------------
    def _loop(self, pool: ThreadPoolExecutor) -> None:
        while True:
            flushed = time.monotonic()
            while self.ready and self.stopped is None:
                work = self.ready.popleft()
                if isinstance(work, Slot):
                    self._try_expand(work)
                else:
                    self._start(work)
                # Long stretches of inline work commit in groups, at least every 0.1 s.
                if len(self.recorder.finished_rows) >= 500 or time.monotonic() - flushed > 0.1:
                    self.recorder.flush()
                    flushed = time.monotonic()
            if self.stopped is not None:
                raise self.stopped
            self.batcher.dispatch(pool)
            self.recorder.flush()
            if self.progress:
                self.progress.tick()
            if self.waits:
                self._poll_waits()
                if self.ready:
                    continue
            if not self._busy():
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
                if isinstance(event, EffectDone):
                    self._on_effect(event)
                else:
                    self._on_batch(*event)
                arrived = True
            if arrived:
                self._unblock()

    def _busy(self) -> bool:
        """Whether a model batch, an I/O call or CPU work is running or queued."""
        return bool(self.batcher.in_flight or self.effects.in_flight or self.effects.queued)

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

    # --- slots ----------------------------------------------------------------------------
    def _add_slot(self, slot: Slot) -> None:
        self._pending_add(slot.run, slot.node.id, slot.parent_path, +1)
        self.ready.append(slot)

    def _pending_add(
        self, run: RunState, node_id: str, parent_path: tuple[int, ...], delta: int
    ) -> None:
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

    def _dep_chain(
        self, run: RunState, node: CompiledNode, dep: str
    ) -> tuple[int, tuple[str, ...]]:
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
            self.recorder.record_skip(run, node, slot.parent_path, node.skip_reason)
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
                run.foreach_values[(node.id, (*slot.parent_path, index))] = item  # run.json
            run.foreach_items[(node.id, slot.parent_path)] = len(paths_scopes)  # for output.json
        if self.progress:
            self.progress.scheduled(node.id, len(paths_scopes))
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
        if self.awaiting_earlier:
            awaiting, self.awaiting_earlier = self.awaiting_earlier, []
            for inst in awaiting:
                if inst.run.failed or earlier_items_ready(
                    inst.run, inst.node, inst.path, self.pending, self.earlier_finished
                ):
                    self.ready.append(inst)
                else:
                    self.awaiting_earlier.append(inst)
        if not self.blocked:
            return
        still = []
        for slot in self.blocked:
            if slot.run.failed or self._deps_ready(slot):
                self.ready.append(slot)
            else:
                still.append(slot)
        self.blocked = still

    def _resolve_ref(
        self, run: RunState, node: CompiledNode, dep: str, parent_path: tuple[int, ...]
    ) -> Any:
        """A node's output as seen from `node`: within shared foreach items, one value;
        across a foreach that is not shared, the list of its items' outputs."""
        shared, _chain = self._dep_chain(run, node, dep)
        prefix = parent_path[:shared]
        target = run.compiled.nodes[dep]
        results = run.results.get(dep, {})
        depth = len(target.loops) - shared
        if depth == 0:
            result = results.get(prefix)
            return result.value if result is not None and result.status == Status.DONE else None
        tree: dict[Any, Any] = {}
        for path, result in sorted(results.items()):
            if path[:shared] != prefix or result.status != Status.DONE:
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
        if node.progressive and not earlier_items_ready(
            run, node, inst.path, self.pending, self.earlier_finished
        ):
            self.awaiting_earlier.append(inst)
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
                    scope[name] = compiled.evaluate(
                        scope, field_rng(inst.seed, f"vars.{name}"), inst.picks
                    )
                inst.scope = scope
            if node.when is not None and not node.when.evaluate(
                scope, field_rng(inst.seed, "when"), inst.picks
            ):
                self._finish(inst, NodeResult(Status.SKIPPED, error="when is false"))
                return
            if (
                stored is not None
                and stored.status == Status.DONE
                and self._reuse(inst, stored, "stored")
            ):
                return
            spec = self._render_params(inst, scope)
            if self._from_cache(inst):
                return
            inst.ctx = ExecutionContext(
                node_id=node.id,
                path=inst.path,
                seed=inst.seed,
                run=run,
                log=self.recorder.logger(inst),
                attempt=inst.attempts,
            )
            out = guarded_run(inst.ctx, node, spec, node.kind.run)
        except Exception as exc:  # a node's error is reported on the node, never a crash
            self._error(inst, exc)
            return
        if inspect.isgenerator(out):
            inst.gen = out
            self._advance(inst, None, first=True)
        else:
            self._finish(inst, NodeResult(Status.DONE, out))

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
            self.recorder.log(
                run,
                "warning",
                f"execution {stored.id} cannot be reused (an image of it is missing or changed); running it again",
                inst,
            )
            inst.kept, inst.stored = False, None
            return False
        inst.stored = stored
        if not inst.kept:
            self.recorder.log(
                run,
                "info",
                f"reused ({how}): execution {stored.origin} of run {stored.run_id[:8]}",
                inst,
            )
        self._finish(inst, NodeResult(Status.DONE, value))
        return True

    def _from_cache(self, inst: Instance) -> bool:
        """Reuse an identical stored execution (same key) from any run, when allowed."""
        run, node = inst.run, inst.node
        inst.kept, inst.stored = False, None
        # A novelty guard's output depends on what else is stored: never taken from the cache.
        if run.reuse is None or not node.kind.cacheable or node.spec.novelty is not None:
            return False
        try:
            model = model_identity(run, node, inst.params, inst.scope)
        except Exception:  # an unusable model: the run function reports it properly
            return False
        files = file_inputs(inst.params, run.tree_dir)
        inst.cache_key = cache_key(node.kind.name, inst.params, model, inst.seed, files)
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
            adapter = _field_adapter(type(spec), name)  # type: ignore[arg-type]
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

    def _advance(
        self, inst: Instance, value: Any, first: bool = False, error: BaseException | None = None
    ) -> None:
        assert inst.gen is not None
        try:
            if error is not None:
                request = inst.gen.throw(error)
            elif first:
                request = next(inst.gen)
            else:
                inst.returned = value
                request = inst.gen.send(value)
        except StopIteration as stop:
            self._finish(inst, NodeResult(Status.DONE, stop.value))
            return
        except Exception as exc:
            self._error(inst, exc)
            return
        inst.step += 1
        if isinstance(request, Wait):
            self._wait(inst, request)
            return
        effects = request if isinstance(request, list) else [request]
        inst.yielded_list = isinstance(request, list)
        for effect in effects:
            if not isinstance(effect, Invoke | Call | Compute):
                # A kind's bug, reported on its node: it yields only effects, and a Wait alone.
                what = "a Wait in a list" if isinstance(effect, Wait) else type(effect).__name__
                self._advance(
                    inst,
                    None,
                    error=TypeError(
                        f"a run function yields an effect (Invoke, Call, Compute, Wait alone) "
                        f"or a list of them, not {what}"
                    ),
                )
                return
        inst.waiting = [None] * len(effects)
        inst.pending = len(effects)
        if not effects:
            self._advance(inst, [])
            return
        for position, effect in enumerate(effects):
            if isinstance(effect, Invoke):
                self.batcher.enqueue(Request(inst, effect, position))
            else:
                self.effects.submit(EffectRequest(inst, effect, position, inst.attempts, inst.step))

    def _on_batch(
        self, batch: list[Request], results: list[Any] | None, error: BaseException | None
    ) -> None:
        if self.batcher.settle(batch, error):
            return
        if error is not None:
            for request in batch:
                inst = request.instance
                if inst.gen is not None and not is_stale(request):
                    self._error(inst, error)
            return
        assert results is not None
        for request, result in zip(batch, results, strict=True):
            inst = request.instance
            if is_stale(request):
                # Another request of the same yield failed and the instance was restarted.
                continue
            self._deliver(inst, request.slot, result)

    def _deliver(self, inst: Instance, slot: int, result: Any) -> None:
        """One result of the instance's current yield; the last one resumes its generator."""
        inst.waiting[slot] = result
        inst.pending -= 1
        if inst.pending == 0:
            value = inst.waiting if inst.yielded_list else inst.waiting[0]
            self._advance(inst, value)

    def _on_effect(self, done: EffectDone) -> None:
        self.effects.settle(done)
        request = done.request
        if is_stale(request):  # its instance failed, was retried or moved on meanwhile
            return
        if done.error is not None:
            # The kind's to handle (a fetch retries a timeout); uncaught, the execution fails.
            # The other effects of the same yield become stale.
            if isinstance(done.error, Exception):
                self._advance(request.instance, None, error=done.error)
            else:
                self._error(request.instance, done.error)
            return
        self._deliver(request.instance, request.slot, done.result)

    # --- waits ----------------------------------------------------------------------------
    def _wait(self, inst: Instance, wait: Wait) -> None:
        """An execution yielded a Wait: answered already, or parked until it is."""
        answered, answer = self._poll(inst, wait)
        if answered:
            self._advance(inst, answer)
        elif inst.gen is not None:  # a poll that raised has failed it
            self.recorder.log(inst.run, "info", f"waiting: {wait.key}", inst)
            self.waits.append(Waiting(inst, wait, time.monotonic() + wait.poll_every))

    def _poll(self, inst: Instance, wait: Wait) -> tuple[bool, Any]:
        if wait.poll is None:
            return False, None
        try:
            answer = wait.poll()
        except Exception as exc:
            self._advance(inst, None, error=exc)
            return False, None
        return answer is not None, answer

    def _poll_waits(self, force: bool = False) -> None:
        """Poll the waits that are due; an answered one resumes its generator."""
        now = time.monotonic()
        still: list[Waiting] = []
        answered: list[tuple[Waiting, Any]] = []
        for waiting in self.waits:
            if waiting.instance.gen is None or waiting.instance.run.failed:
                still.append(waiting)  # parked as it is at the end
                continue
            if not force and now < waiting.due:
                still.append(waiting)
                continue
            step = waiting.instance.step
            ok, answer = self._poll(waiting.instance, waiting.wait)
            if ok:
                answered.append((waiting, answer))
            elif waiting.instance.step == step and waiting.instance.gen is not None:
                waiting.due = now + waiting.wait.poll_every
                still.append(waiting)
        self.waits = still
        for waiting, answer in answered:
            self._advance(waiting.instance, answer)

    def _park_waits(self) -> bool:
        """Record every execution still waiting as `waiting`, with what it waits for; its
        dependents stay unrun, and `resume` re-enters it. False when a last look found an
        answer (the run goes on)."""
        self._poll_waits(force=True)
        if self.ready or self._busy():
            return False
        for waiting in self.waits:
            inst, wait = waiting.instance, waiting.wait
            if inst.gen is None:
                continue
            run, node = inst.run, inst.node
            result = NodeResult(Status.WAITING, {"key": wait.key, "payload": wait.payload})
            run.results.setdefault(node.id, {})[inst.path] = result
            self.recorder.record_execution(inst, result, None)
            run.counts[Status.WAITING.value] = run.counts.get(Status.WAITING.value, 0) + 1
            run.waiting.append(f"{node.id}{''.join(f'[{i}]' for i in inst.path)}: {wait.key}")
            gen, inst.gen, inst.ctx = inst.gen, None, None
            with contextlib.suppress(Exception):
                gen.close()
        self.waits = []
        return True

    # --- finishing ------------------------------------------------------------------------
    def _error(self, inst: Instance, exc: BaseException) -> None:
        if isinstance(exc, FolderNotWritable):  # not the node's fault: stop; resume runs it
            self.stopped = self.stopped or exc
            return
        if isinstance(exc, SkipExecution):  # the kind's decision, not a failure: no retry
            if inst.gen is not None:
                gen, inst.gen = inst.gen, None
                with contextlib.suppress(Exception):
                    gen.close()
            self._finish(inst, NodeResult(Status.SKIPPED, error=str(exc)))
            return
        node = inst.node
        message = short_error(exc)
        raw_output = kept_text(exc, inst.returned)
        inst.returned = None  # a retry's model calls are its own
        if raw_output is not None:
            message += f"; its text is kept: genarun runs show {inst.run.id[:8]}"
        # Close the failed attempt's generator now (not whenever it is garbage collected), so a
        # kind can record how far it got; a retry starts a fresh one.
        if inst.gen is not None:
            gen, inst.gen = inst.gen, None
            with contextlib.suppress(Exception):
                gen.close()
        if inst.attempts <= node.spec.retries:
            self.recorder.log(
                inst.run, "warning", f"attempt {inst.attempts} failed: {message}; retrying", inst
            )
            self.ready.append(inst)
            return
        if not isinstance(exc, RenderError | ValueError):
            self.recorder.log(inst.run, "debug", "".join(traceback.format_exception(exc)), inst)
        hint = getattr(exc, "hint", None)
        self._finish(
            inst,
            NodeResult(
                Status.FAILED,
                error=message,
                raw_output=raw_output,
                hint=hint if isinstance(hint, str) else None,
            ),
        )

    def _finish(self, inst: Instance, result: NodeResult) -> None:
        run, node = inst.run, inst.node
        run.results.setdefault(node.id, {})[inst.path] = result
        # The stored execution whose output this one reused (when it ended the same way).
        stored = (
            inst.stored if inst.stored is not None and inst.stored.status == result.status else None
        )
        self.recorder.record_execution(inst, result, stored)
        # Kept executions count as they did before the interruption: done, or reused.
        reused = (
            stored is not None
            and result.status == Status.DONE
            and not (inst.kept and stored.reused_from is None)
        )
        counted = "reused" if reused else result.status
        run.counts[counted] = run.counts.get(counted, 0) + 1
        if result.status == Status.FAILED:
            run.failed.append(Failure.of(node.id, inst.path, result))
            self.recorder.log(run, "error", f"failed: {result.error}", inst)
        if self.progress:
            self.progress.finished(run, node.id, counted)
        self._done(inst, result, status=result.status)

    def _done(self, inst: Instance, result: NodeResult | None, status: str | None) -> None:
        run, node = inst.run, inst.node
        # Break inst -> ctx -> log -> inst: the instance is freed now rather than left to the
        # cyclic GC, whose full collections over 10,000s of them cost more than running them.
        inst.ctx = None
        inst.returned = None  # the last model output (an image, say): not kept past the end
        if result is not None and result.status == Status.DONE and not run.failed and node.children:
            child_scope = dict(inst.scope)
            child_scope[node.id] = result.value
            for child_id in node.children:
                self._add_slot(Slot(run, run.compiled.nodes[child_id], inst.path, child_scope))
        parent_path = inst.path[:-1] if node.foreach is not None else inst.path
        self._pending_add(run, node.id, parent_path, -1)

    def _fail_slot(self, slot: Slot, message: str) -> None:
        run, node = slot.run, slot.node
        inst = Instance(run, node, slot.parent_path, slot.scope, 0, attempts=1, started=time.time())
        self._pending_add(run, node.id, slot.parent_path, +1)
        self._pending_add(run, node.id, slot.parent_path, -1)
        self._finish(inst, NodeResult(Status.FAILED, error=message))


@lru_cache(maxsize=512)
def _field_adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any] | None:
    """A validator for one field of a kind's model; None for fields typed Any."""
    annotation = model.model_fields[name].annotation
    return None if annotation is Any or annotation is None else TypeAdapter(annotation)


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
