"""The typed contracts of a `NodeKind`'s optional hooks.

Each hook is called with keyword arguments only and returns these records, never tuples:

- `model_refs(*, node, scope) -> list[ModelRef]`: other models the node uses (a cycle's network
  and embedders), resolved and checked before the run;
- `check(*, node, scope, resolve) -> list[FieldProblem]`: checks that need the resolved models
  (`resolve(ref) -> ModelSpec`), before the run;
- `adopt(adoption: Adoption) -> output`: copy the rows a kind keeps outside the executions
  table when another run reuses its output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genarun.run.reuse import StoredExecution
    from genarun.run.trajectory_rows import TrajectoryRows


@dataclass(frozen=True)
class ModelRef:
    """A model a node uses besides its `model` field."""

    ref: Any  # an alias, catalog name, id, path or spec, as the tree writes it
    task: str | None  # the task it must do; None: only resolve it and check its weights
    field: str = "model"  # the field naming it: where an error about it points


@dataclass(frozen=True)
class FieldProblem:
    """A problem found before the run, at one field of the node."""

    field: str
    message: str  # says what is wrong and how to fix it


@dataclass(frozen=True, kw_only=True)
class Adoption:
    """A stored execution whose output another run takes (rerun, --only, the cache).

    `output` is its output as tagged JSON, its images already copied into the run; `image(rel)`
    copies one more image of the stored run's folder (a path relative to it) and returns the
    copy's path; `trajectory` is the taking run's rows for this node and foreach path. The
    hook returns the output, pointing at what it copied. Never called for the run's own rows.
    """

    stored: StoredExecution
    output: Any
    image: Callable[[str], str]
    trajectory: TrajectoryRows
