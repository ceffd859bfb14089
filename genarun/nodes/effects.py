"""The effects a node kind's run function yields, and the executor carries out.

A run function is a generator: it yields an effect (or a list of them) and receives the
result (or the list of results, in order). The executor decides where each effect runs:

- `Invoke`: a model call, batched with other executions' calls to the same model and settings,
  on the model threads. A failed batch is retried in halves (out of memory); only model calls
  are ever sent again, never the other effects of the same execution.
- `Call`: a blocking call to the outside world (an HTTP request, a subprocess). It runs on the
  I/O pool, never batched, at most `Call.host`'s limit at once per host and the node's
  `concurrency:` at once per node, and exactly once per yield.
- `Compute`: CPU-heavy work (persistence diagrams, clustering) that must not hold the scheduler
  thread; it runs on the CPU pool. Its function must not touch the store (the store belongs to
  the scheduler thread): read what it needs before, write what it returns after.
- `Wait`: a durable wait on the outside world (a person's answer, a webhook). See `Wait`.

docs/internals/effects.md shows each in a kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genarun.models.base import Invocation, ModelSpec


@dataclass(frozen=True)
class Invoke:
    """A request from a run function to call a model; the executor batches these."""

    model: ModelSpec
    invocation: Invocation


@dataclass(frozen=True)
class Call:
    """A blocking call to the outside world, run once on the I/O pool; its return value (or
    its exception, thrown into the generator) is the yield's result.

    `host` groups calls for the per-host limit (the executor's `io_per_host`, default 8): name
    the host the call talks to (`api.example.com`), or None for calls that need no such limit.
    `label` names the call in logs (without secrets)."""

    fn: Callable[[], Any]
    host: str | None = None
    label: str = ""
    # Most calls at once to `host` while this call waits or runs, instead of `io_per_host`: a
    # node that declares its own `concurrency:` (a fetch) asks for that many.
    host_limit: int | None = None


@dataclass(frozen=True)
class Compute:
    """CPU-heavy work run on the CPU pool, off the scheduler thread; its return value (or its
    exception) is the yield's result. `fn` must not use the store or the run's state."""

    fn: Callable[[], Any]
    label: str = ""


@dataclass(frozen=True)
class Wait:
    """A durable wait on the outside world. Yield it alone (not in a list).

    The contract:
    - On the yield the executor calls `poll()`. A result other than None is the answer: it is
      sent into the generator at once (a wait answered before, found again on resume).
    - Otherwise the execution waits. The run goes on with every branch that does not need it;
      the nodes that do (its children, and nodes that name it) are parked: not run, not fed
      None, not failed. While other work runs, `poll()` is called again every `poll_every`
      seconds on the scheduler thread (keep it a cheap read), and an answer resumes it.
    - When only waits remain, the run stops: each waiting execution is recorded with status
      `waiting` (its `payload`, JSON, is stored as the row's output, for an inbox to show),
      its generator is closed, and the run ends with status `waiting`.
    - `genarun resume RUN` runs the waiting executions again from the start of their run
      function (they were never `done`): the kind yields the same `Wait` again, and `poll()`
      now finds the answer. So a kind keeps nothing between the two but what it stored itself
      (the question, under `key`), and must ask the same question (same `key`) on re-entry.

    `key` names what is waited for (unique within the run: use the node id and foreach path);
    `payload` describes it (the question, a form schema, a webhook URL)."""

    key: str
    payload: dict[str, Any] = field(default_factory=dict)
    poll: Callable[[], Any] | None = None
    poll_every: float = 1.0


Effect = Invoke | Call | Compute | Wait
