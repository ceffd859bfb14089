"""Executing prepared runs together, then storing how each ended and writing their folders;
the Outcome and the error a failed one raises for the CLI."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genarun.errors import GenarunError, NodeFailed
from genarun.run.executor import Executor, ExecutorOptions
from genarun.run.options import RunOptions
from genarun.run.pausing import drop_pauses
from genarun.run.run_log import summary_logs
from genarun.run.state import Failure, RunState, RunStatus
from genarun.store.claims import Heartbeat
from genarun.store.confined import FolderNotWritable, as_folder_error
from genarun.store.db import Store
from genarun.store.folders import refresh_latest


@dataclass
class Outcome:
    """How the runs of one `run_tree` call went: their experiment, folder and status."""

    experiment_id: str
    runs: list[RunState]
    folder: Path
    status: str  # completed, failed, interrupted, waiting (RunStatus)
    model_stats: list[dict[str, Any]] = field(
        default_factory=list
    )  # per model: batches, items, seconds
    stopped: str | None = None  # why an interrupted run stopped by itself (its --budget)

    @property
    def failures(self) -> list[Failure]:
        return [f for run in self.runs for f in run.failed]


def execute_runs(
    store: Store,
    runs: list[RunState],
    options: RunOptions,
    *,
    tree_folder: Path,
    folder: Path,
    experiment_id: str,
    refresh: bool = True,
) -> Outcome:
    """Execute prepared runs together, then store their status and write their folders;
    `refresh`: make `latest/` a copy of `folder` when they complete."""
    backend = None
    if options.executor == "ray":
        from genarun.run.ray_backend import RayBackend

        backend = RayBackend(options.ray_address, options.ray_actors)
        backend.connect()
        # Every model the runs name (checked before the run): their actors start at once.
        specs = {spec.key: spec for state in runs for spec in state.models_used.values()}
        backend.prestart(list(specs.values()), options.device)
    executor = Executor(
        runs,
        ExecutorOptions(
            workers=options.workers,
            batch_size=options.batch_size,
            device=options.device,
            progress=options.progress,
            backend=backend,
            budget=_budget_guard(store, runs, options.budget),
        ),
    )
    if options.progress:
        options.progress.start(runs)
    status = "completed"
    unwritable: FolderNotWritable | None = None
    stopped: GenarunError | None = None  # --budget reached
    heartbeat = Heartbeat(store, [state.id for state in runs])
    heartbeat.start()
    began = time.time()
    try:
        executor.execute()
    except KeyboardInterrupt:
        status = "interrupted"
    except FolderNotWritable as exc:  # finished work is stored: resumable once it is writable
        status, unwritable = "interrupted", exc
    except GenarunError as exc:
        # --budget reached: finished work is stored, resumable with a larger budget.
        stopped = exc if _budget_reached(exc) else None
        status = "interrupted" if exc.exit_code == 130 or stopped else "failed"
        if status == "failed":
            for state in runs:
                state.failed.append(Failure(None, (), str(exc)))
    finally:
        heartbeat.stop()
        if options.progress:
            options.progress.stop()
        if backend is not None:
            backend.close()
    for state in runs:
        state.wait_for_assets()
        run_status = status if status != "completed" else _run_status(state)
        # Per node start and end, model loads and batches: the log of a run that went well.
        with contextlib.suppress(Exception):  # best effort: never hides how the run ended
            store.add_logs(
                summary_logs(store, state.id, since=began, model_stats=executor.model_stats())
            )
        try:
            state.write_folder(run_status, _logs_json(store, state.id))
        except (FolderNotWritable, OSError) as exc:
            # Stored as interrupted: `resume` writes the folder once it can.
            unwritable = unwritable or as_folder_error(state.folder, exc)
            run_status = "interrupted"
        store.update_run(
            state.id,
            status=run_status,
            ended=time.time(),
            error="\n".join(map(str, state.failed))
            or (str(unwritable) if unwritable else None)
            or (str(stopped) if stopped else None),  # why it stopped: `runs show` says
            summary=json.dumps(state.counts),
            models=state.models_json(),  # with models named through outputs, known only now
        )
        if run_status != "interrupted":  # a stopped run stays paused when resumed
            drop_pauses(store, [state.id])
    if unwritable is not None:
        store.close()
        ids = " ".join(state.id[:12] for state in runs)
        raise FolderNotWritable(
            f"{unwritable}; the run stopped, its finished work is saved: make the folder "
            f"writable, then: genarun resume {ids}"
        )
    ended = {_run_status(state) for state in runs}
    overall = status
    if status == "completed":  # a failure outweighs a wait, a wait a completion
        overall = next(
            (s for s in (RunStatus.FAILED, RunStatus.WAITING) if s in ended), RunStatus.COMPLETED
        )
    if overall == "completed" and refresh:
        refresh_latest(tree_folder, folder)
    store.close()
    return Outcome(
        experiment_id,
        runs,
        folder,
        overall,
        executor.model_stats(),
        stopped=str(stopped) if stopped else None,
    )


def _budget_reached(exc: BaseException) -> bool:
    from genarun.usage.budget import BudgetReached

    return isinstance(exc, BudgetReached)


def _budget_guard(store: Store, runs: list[RunState], budget: float | None) -> Any:
    """The guard that stops the runs at --budget (None without one)."""
    if budget is None:
        return None
    from genarun.usage.budget import BudgetGuard

    return BudgetGuard(store, [state.id for state in runs], budget)


def _run_status(state: RunState) -> RunStatus:
    """How a run that was not interrupted ended."""
    if state.failed:
        return RunStatus.FAILED
    return RunStatus.WAITING if state.waiting else RunStatus.COMPLETED


def _logs_json(store: Store, run_id: str) -> list[dict[str, Any]]:
    return [
        {
            "time": row["time"],
            "level": row["level"],
            "node": row["node_id"],
            "path": json.loads(row["path"]) if row["path"] else None,
            "message": row["message"],
        }
        for row in sorted(store.run_logs(run_id), key=lambda r: (r["time"], r["id"]))
        if row["level"] != "debug"
    ]


def raise_for(outcome: Outcome) -> None:
    """Turn a failed outcome into the error the CLI reports (exit code 1)."""
    if outcome.status == "failed":
        failures = outcome.failures
        first = failures[0] if failures else Failure(None, (), "a node failed")
        error = first.error
        if len(failures) > 1:
            more = len(failures) - 1
            error += f" (and {more} more failure{'s' if more > 1 else ''}: genarun runs show {outcome.runs[0].id[:8]})"
        if first.node is None:  # the run's own failure, not a node's
            raise GenarunError(error)
        # A node's failure stopped only what depends on it; the rest ran and is stored.
        failed = " ".join(run.id[:8] for run in outcome.runs if run.failed)
        error += (
            "; everything that did not depend on it ran. Once the cause is fixed, "
            f"genarun resume {failed} runs what failed and what waited on it"
        )
        compiled = outcome.runs[0].compiled if outcome.runs else None
        found = compiled.nodes.get(first.node) if compiled else None
        if compiled is None or found is None:
            raise NodeFailed(first.node, first.path, error)
        raise NodeFailed(first.node, first.path, error, str(compiled.loaded.path), found.line)
