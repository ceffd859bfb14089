"""Slots of the scheduler: when a node's dependencies have finished, its slot expands (by its
foreach) into instances; a finished instance records its result and adds its children's slots.

`SlotExpansion` is the first layer of the `Executor` (`run/executor.py`); `effect_dispatch` and
`instance_start` build on it.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections import deque
from typing import Any

from genarun.graph.compiled import CompiledNode
from genarun.nodes.base import SkipExecution
from genarun.run.recording import ExecutionRecorder, kept_text, short_error
from genarun.run.seeds import derive_seed, fresh_seed
from genarun.run.state import Failure, NodeResult, RunState, Status
from genarun.run.work_units import Instance, Slot
from genarun.store.confined import FolderNotWritable
from genarun.tree.template_core import RenderError, field_rng


class SlotExpansion:
    """Dependencies, foreach expansion and finishing of the executor's work units."""

    ready: deque[Slot | Instance]
    blocked: list[Slot]
    # Instances waiting for earlier foreach items of what they search (retrieval).
    awaiting_earlier: list[Instance]
    earlier_finished: dict[tuple[Any, ...], int]  # see earlier_items_ready
    # (run id, node id) -> prefix -> unfinished slots and instances
    pending: dict[tuple[str, str], dict[tuple[int, ...], int]]
    # (run id, node id) -> paths that failed or were dropped because something they depend on
    # failed (a slot's parent path, an instance's path)
    broken: dict[tuple[str, str], set[tuple[int, ...]]]
    progress: Any  # run.progress.Progress
    recorder: ExecutionRecorder
    stopped: FolderNotWritable | None  # the run folder became unwritable
    # Instances with writes deferred (ExecutionContext.defer) until their yield's model calls
    # are dispatched.
    deferring: list[Instance]

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

    def _blocked_by_failure(self, slot: Slot) -> bool:
        """Whether something the slot reads (a dependency, or an ancestor of one that is not
        the slot's own) failed or was not run for a failure, under the shared foreach items.

        A failure stops only what depends on it: the rest of its run (independent branches,
        the other items of a foreach) and the experiment's other runs go on, and `resume`
        runs the failed part again. A slot that reads a foreach's items across it stops when
        any item failed (it would see a partial list otherwise)."""
        run, node = slot.run, slot.node
        for dep in node.deps:
            k, chain = self._dep_chain(run, node, dep)
            prefix = slot.parent_path[:k]
            for member in chain:
                for path in self.broken.get((run.id, member), ()):
                    n = min(len(path), k)
                    if path[:n] == prefix[:n]:
                        return True
        return False

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
        if node.deps and not self._deps_ready(slot):
            self.blocked.append(slot)
            return
        if node.deps and self._blocked_by_failure(slot):
            # Not run, as a child of a failed node is not: what depends on it stops too.
            self.broken[(run.id, node.id)].add(slot.parent_path)
            self._pending_add(run, node.id, slot.parent_path, -1)
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
                path = (*slot.parent_path, index)
                paths_scopes.append((path, item_scope))
                run.foreach_values[(node.id, path)] = item  # run.json
            run.foreach_items[(node.id, slot.parent_path)] = len(paths_scopes)  # for output.json
        if self.progress:
            self.progress.scheduled(node.id, len(paths_scopes))
        # The slot's count becomes its instances' (nothing runs in between: one update).
        self._pending_add(run, node.id, slot.parent_path, len(paths_scopes) - 1)
        for path, item_scope in paths_scopes:
            self.ready.append(Instance(run, node, path, item_scope, self._seed_of(run, node, path)))

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

    def _earlier_items_ready(self, inst: Instance) -> bool:
        """Whether the earlier foreach items a progressive search looks at have finished
        (genarun/retrieval/progressive.py, loaded only for a tree that has such a search)."""
        from genarun.retrieval.progressive import earlier_items_ready

        return earlier_items_ready(
            inst.run, inst.node, inst.path, self.pending, self.earlier_finished
        )

    def _unblock(self) -> None:
        if self.awaiting_earlier:
            awaiting, self.awaiting_earlier = self.awaiting_earlier, []
            for inst in awaiting:
                if self._earlier_items_ready(inst):
                    self.ready.append(inst)
                else:
                    self.awaiting_earlier.append(inst)
        if not self.blocked:
            return
        still = []
        for slot in self.blocked:
            if self._deps_ready(slot):
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

    # --- deferred writes (ExecutionContext.defer) ------------------------------------------
    def _note_deferred(self, inst: Instance, _ctx: Any) -> None:
        self.deferring.append(inst)

    def _run_deferred(self) -> None:
        deferring, self.deferring = self.deferring, []
        for inst in deferring:
            self._flush_deferred(inst)

    def _flush_deferred(self, inst: Instance) -> None:
        """Run an instance's deferred writes; the first error waits for its generator."""
        if inst.ctx is None:
            return
        try:
            inst.ctx.run_deferred()
        except FolderNotWritable as exc:
            self.stopped = self.stopped or exc
            inst.deferred_error = exc
        except Exception as exc:
            inst.deferred_error = exc

    # --- finishing ------------------------------------------------------------------------
    def _error(self, inst: Instance, exc: BaseException) -> None:
        # What the attempt deferred is written first: it stands (a finished step), and a retry
        # must not race it.
        self._flush_deferred(inst)
        inst.deferred_error = None
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
            self.broken[(run.id, node.id)].add(inst.path)
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
        if result is not None and result.status == Status.DONE and node.children:
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
