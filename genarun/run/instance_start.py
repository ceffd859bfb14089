"""Starting an instance: its vars and `when`, reuse of a stored or cached execution, its
rendered parameters, and then the kind's run function.
"""

from __future__ import annotations

import functools
import inspect
import time
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from genarun.nodes.base import ExecutionContext
from genarun.retrieval.guard import guarded_run
from genarun.run.effect_dispatch import EffectDispatch
from genarun.run.reuse import (
    StoredExecution,
    adopt_output,
    cache_key,
    cached_executions,
    file_inputs,
    model_identity,
)
from genarun.run.state import NodeResult, Status
from genarun.run.work_units import Instance
from genarun.tree.template_core import RenderError, field_rng


class InstanceStart(EffectDispatch):
    """Turns a ready instance into a finished reuse or a running generator."""

    def _start(self, inst: Instance) -> None:
        run, node = inst.run, inst.node
        if node.progressive and not self._earlier_items_ready(inst):
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
                on_defer=functools.partial(self._note_deferred, inst),
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
        if plan is None or not (plan.kept or plan.prior):  # a fresh run: nothing stored
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
                from genarun.run.rendered_types import rendered_type_message  # messages only

                alias = type(spec).model_fields[name].alias or name
                template = getattr(spec, name)
                problems.append(rendered_type_message(alias, template, value, exc.errors()))
        if problems:
            raise RenderError("; ".join(problems))
        return _with_fields(spec, rendered)


def _with_fields(spec: BaseModel, update: dict[str, Any]) -> Any:
    """`spec.model_copy(update=update)` (a copy, its fields set marked set, not validated again)
    without pydantic's generic copying of every attribute: one per execution."""
    if (
        spec.__pydantic_extra__ is not None
        or getattr(spec, "__pydantic_private__", None) is not None
    ):
        return spec.model_copy(update=update)  # extra fields or private state: pydantic's way
    cls = type(spec)
    copied = cls.__new__(cls)
    object.__setattr__(copied, "__dict__", {**spec.__dict__, **update})
    object.__setattr__(copied, "__pydantic_extra__", None)
    object.__setattr__(
        copied, "__pydantic_fields_set__", spec.__pydantic_fields_set__ | update.keys()
    )
    object.__setattr__(copied, "__pydantic_private__", None)
    return copied


@lru_cache(maxsize=512)
def _field_adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any] | None:
    """A validator for one field of a kind's model; None for fields typed Any."""
    annotation = model.model_fields[name].annotation
    return None if annotation is Any or annotation is None else TypeAdapter(annotation)
