"""Effect dispatch of the scheduler: advancing a kind's generator, sending what it yields to
the model batcher (`Invoke`) or the effect pool (`Call`, `Compute`), delivering the results
back, and parking executions on a `Wait` until the outside world answers.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from genarun.run.expansion import SlotExpansion
from genarun.run.state import NodeResult, Status
from genarun.run.work_units import Instance, Request, is_stale

# The effects and the pools' modules load with the first generator a kind returns (`_advance`,
# the executor's `effect_pool()`): a run whose kinds only return values never needs them.
if TYPE_CHECKING:
    from genarun.nodes.effects import Wait
    from genarun.run.batching import ModelBatcher
    from genarun.run.effect_pool import EffectDone, EffectPool


class Waiting:
    """An execution parked on a `Wait`, and when its poll is due again."""

    __slots__ = ("due", "instance", "wait")

    def __init__(self, instance: Instance, wait: Wait, due: float) -> None:
        self.instance, self.wait, self.due = instance, wait, due


class EffectDispatch(SlotExpansion):
    """Routes a generator's effects to the pools and their results back into it."""

    # What the pools finished: model batches (tuples) and effects (EffectDone).
    events: queue.Queue[Any]
    batcher: ModelBatcher
    effects: EffectPool | None  # made by effect_pool() for the first Call or Compute
    # The executor's: the pools of `Call`s and `Compute`s, started for the first one.
    effect_pool: Callable[[], EffectPool]
    waits: list[Waiting]

    def _busy(self) -> bool:
        """Whether a model batch, an I/O call or CPU work is running or queued."""
        effects = self.effects
        return bool(
            self.batcher.in_flight
            or (effects is not None and (effects.in_flight or effects.queued))
        )

    def _advance(
        self, inst: Instance, value: Any, first: bool = False, error: BaseException | None = None
    ) -> None:
        from genarun.nodes.effects import Call, Compute, Invoke, Wait

        assert inst.gen is not None
        self._flush_deferred(inst)
        if error is None and inst.deferred_error is not None:
            error = inst.deferred_error
        inst.deferred_error = None
        try:
            if error is not None:
                request = inst.gen.throw(error)
            elif first:
                request = next(inst.gen)
            else:
                inst.returned = value
                request = inst.gen.send(value)
        except StopIteration as stop:
            # Writes deferred after its last yield belong to the execution: before it finishes.
            self._flush_deferred(inst)
            if inst.deferred_error is not None:
                error, inst.deferred_error = inst.deferred_error, None
                self._error(inst, error)
                return
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
                from genarun.run.effect_pool import EffectRequest

                request = EffectRequest(inst, effect, position, inst.attempts, inst.step)
                self.effect_pool().submit(request)

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
        self.effect_pool().settle(done)
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
            if waiting.instance.gen is None:
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
            run.waiting.append((f"{node.id}{''.join(f'[{i}]' for i in inst.path)}", wait.key))
            self._flush_deferred(inst)
            gen, inst.gen, inst.ctx = inst.gen, None, None
            with contextlib.suppress(Exception):
                gen.close()
        self.waits = []
        return True
