"""The rows a trajectory keeps outside the executions table, as a node kind sees them.

A `cycle` execution writes its trajectory, steps and embeddings; a `persistence` execution
reads another cycle's and writes diagrams. Both reach them through `ExecutionContext`
(`ctx.trajectory()`, `ctx.trajectory_of(node_id)`), and a cycle's `adopt` hook (`Adoption`),
which hand them one of these, bound to one (run, node, foreach path): kinds never hold the
store or the run's state.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genarun.analysis import Diagrams
    from genarun.experiments.topology import DiagramJob
    from genarun.run.reuse import StoredExecution
    from genarun.store.db import Store


class TrajectoryRows:
    """One trajectory's rows: its row, its steps, its embeddings' points and its diagrams."""

    def __init__(self, store: Store, run_id: str, node_id: str, path: str) -> None:
        self._store = store
        self.run_id = run_id
        self.node_id = node_id
        self.path = path  # the foreach path as stored (`path_key`)

    # --- a cycle's own trajectory ---------------------------------------------------------
    def stored_steps(self) -> list[dict[str, Any]]:
        """Its steps already stored (an earlier attempt, an interrupted run), in order."""
        from genarun.store import trajectories as tstore

        return tstore.stored_steps(self._store, self.run_id, self.node_id, self.path)

    def begin(self, **values: Any) -> None:
        """Create its row, or mark an existing one (resume) running again."""
        from genarun.store import trajectories as tstore

        tstore.begin_trajectory(self._store, {**self._key(), **values})

    def update(self, **values: Any) -> None:
        from genarun.store import trajectories as tstore

        tstore.update_trajectory(self._store, self.run_id, self.node_id, self.path, **values)

    def add_step(self, **values: Any) -> None:
        """Store one finished step (committed at once unless inside `transaction()`)."""
        from genarun.store import trajectories as tstore

        tstore.add_step(self._store, {**self._key(), **values})

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Commit what is written inside (a step and its embeddings) together."""
        with self._store.transaction():
            yield

    # --- reading another cycle's trajectory -----------------------------------------------
    def embedding_models(self) -> list[str]:
        """The embedding models it stored vectors of."""
        from genarun.store import trajectories as tstore

        return tstore.embedding_models_of(self._store, self.run_id, self.node_id, self.path)

    def diagram_job(self, model: str, maxdim: int, metric: str) -> DiagramJob:
        """Its points by `model` and the stored diagrams if they still answer; the job's
        `compute()` is the CPU work, to run as a `Compute`."""
        from genarun.experiments.topology import DiagramKey, plan_diagrams

        key = DiagramKey(self.run_id, self.node_id, self.path, model, maxdim)
        return plan_diagrams(self._store, key, metric=metric)

    def save_diagrams(self, job: DiagramJob, diagrams: Diagrams, seconds: float) -> None:
        """Store diagrams computed for `job` (replacing a stale row)."""
        from genarun.experiments.topology import save_diagrams

        save_diagrams(self._store, job, diagrams, seconds)

    # --- another run reusing the trajectory -----------------------------------------------
    def copy_from(
        self, stored: StoredExecution, image: Callable[[int, str], str]
    ) -> dict[int, int]:
        """Copy the trajectory of a stored execution (rerun, --only, the cache) to this one:
        its row, steps, embeddings and diagrams; `image(step, path)` -> the adopted image's
        path. Returns the new embedding id of each copied one."""
        from genarun.store import trajectories as tstore
        from genarun.store.db import path_key

        source = (stored.run_id, stored.node_id, path_key(stored.path))
        if not tstore.has_trajectory(self._store, source) and stored.reused_from is not None:
            # Reused before reuses copied trajectories: the rows are still the original run's.
            source = tstore.execution_key(self._store, stored.reused_from) or source
        return tstore.copy_trajectory(
            self._store, source, (self.run_id, self.node_id, self.path), image
        )

    def _key(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "node_id": self.node_id, "path": self.path}


def timed(job: DiagramJob) -> tuple[Diagrams, float]:
    """Compute `job`'s diagrams and how long it took (what a `Compute` runs)."""
    started = time.perf_counter()
    diagrams = job.compute()
    return diagrams, time.perf_counter() - started
