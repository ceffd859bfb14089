"""The executor's units of work: slots and instances of nodes, and the model requests they make.

A *slot* is a node under one execution of its parent, not yet expanded by its foreach; an
*instance* is one execution of a node; a *request* is one model call an instance is waiting for
(`effect_pool.EffectRequest`: one I/O call or CPU work).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from genarun.graph.compiled import CompiledNode
from genarun.run.reuse import StoredExecution
from genarun.run.state import RunState
from genarun.usage.meter import ExecutionUsage

if TYPE_CHECKING:
    from genarun.nodes.base import ExecutionContext
    from genarun.nodes.effects import Invoke


@dataclass(eq=False)
class Slot:
    run: RunState
    node: CompiledNode
    parent_path: tuple[int, ...]
    scope: dict[str, Any]  # the parent's scope for its children


@dataclass(eq=False)
class Instance:
    """One execution of a node (one foreach item) as the executor drives it."""

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
    # What the models returned to the current attempt, last first: kept with a failure after
    # it (an unparseable answer), so a model's text is never thrown away.
    returned: Any = None
    step: int = 0  # the yields of the current attempt so far: results of an earlier one are stale
    # What its model calls used (tokens, images, time), every attempt's: stored with its row.
    usage: ExecutionUsage = field(default_factory=ExecutionUsage)
    # The first error of a write its run function deferred (ExecutionContext.defer): thrown
    # into the generator when it resumes.
    deferred_error: BaseException | None = None


@dataclass(eq=False)
class Request:
    instance: Instance
    invoke: Invoke
    slot: int  # position in the instance's current yield
    attempt: int = 0  # the instance's attempt that asked; a retry makes older requests stale
    step: int = 0  # the instance's yield that asked
    lost: int = 0  # times the Ray actor running its batch died


def is_stale(request: Any) -> bool:
    """A request (a `Request`, or an `EffectRequest`) from an earlier attempt or yield of its
    instance, or of one that has finished: an error thrown into the generator for another
    effect of the same yield moved it on."""
    inst = request.instance
    return request.attempt != inst.attempts or request.step != inst.step or inst.gen is None
