"""Running a tree: validate, compile, expand the matrix, check models, execute, write folders."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from genarun.errors import GenarunError, ModelError, NodeFailed, Problem, TreeError, UserError
from genarun.graph.compile import MAX_RUNS, CompiledTree, check_matrix_sets, compile_tree
from genarun.models.base import ModelSpec
from genarun.nodes.hooks import ModelRef
from genarun.run.executor import Executor, ExecutorOptions
from genarun.run.only import plan_runs, source_store
from genarun.run.pausing import drop_pauses
from genarun.run.run_log import summary_logs
from genarun.run.seeds import fresh_seed
from genarun.run.state import Failure, RunState, RunStatus, check_model_task
from genarun.store.claims import Heartbeat
from genarun.store.confined import FolderNotWritable, as_folder_error
from genarun.store.db import Store, new_id
from genarun.store.folders import (
    dated_folder,
    output_folder_of,
    refresh_latest,
    run_label,
    write_json,
)
from genarun.tree.templates import RenderError, field_rng
from genarun.tree.validate import read_tree
from genarun.values import to_json


@dataclass
class RunOptions:
    seed: int | str | None = None  # an int, or "random" (fresh entropy, recorded)
    overrides: dict[str, Any] = field(default_factory=dict)
    out: Path | None = None
    db: Path | None = None
    device: str | None = None
    batch_size: int = 16
    workers: int = 4
    skip: set[str] = field(default_factory=set)
    progress: Any = None
    only: set[str] = field(default_factory=set)  # run these subtrees, reuse what they need
    from_run: str | None = None  # where --only takes what it needs (default: latest run)
    cache: bool = True  # reuse identical stored executions from any run
    max_runs: int = MAX_RUNS  # the most runs the matrix may expand into (--max-runs)
    executor: str = "local"  # or "ray" (genarun.run.ray_backend)
    ray_address: str | None = None  # a Ray cluster to join (default: RAY_ADDRESS, or start one)
    # Stop (resumable) once the runs' recorded spend reaches it (genarun.usage.budget).
    budget: float | None = None


@dataclass
class Outcome:
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


def prepare(path: Path | str, options: RunOptions) -> CompiledTree:
    """Validate and compile a tree: every error surfaces here, before anything runs."""
    loaded = read_tree(path)
    options.overrides = check_matrix_sets(loaded, options.overrides)
    compiled = compile_tree(loaded, options.overrides, options.skip, options.max_runs)
    if options.seed is not None and "seed" in compiled.matrix:  # it would be ignored
        values = ", ".join(map(str, compiled.matrix["seed"]))
        raise UserError(
            f"--seed {options.seed}: seed is a matrix key of {loaded.path} (seed: [{values}]), so each run has its own seed; "
            f"to run one seed, use --set seed={options.seed}"
        )
    return compiled


def matrix_bindings(compiled: CompiledTree) -> list[dict[str, Any]]:
    keys = list(compiled.matrix)
    if not keys:
        return [{}]
    return [
        dict(zip(keys, combo, strict=True))
        for combo in itertools.product(*(compiled.matrix[k] for k in keys))
    ]


def check_models(compiled: CompiledTree, scope: dict[str, Any]) -> dict[str, ModelSpec]:
    """Resolve and check every model a node names, before any weight loads or API is called;
    returns them by the name the tree uses (alias or reference)."""
    from genarun.extras import MissingExtra, missing_extra_message, missing_modules, require_extra
    from genarun.models.catalog import resolve_model
    from genarun.plugins import registry
    from genarun.retrieval.checks import model_refs as retrieval_model_refs
    from genarun.retrieval.checks import tree_problems as retrieval_problems

    providers = registry().providers
    file = str(compiled.loaded.path)
    problems, bad_aliases = _alias_problems(compiled)
    problems += retrieval_problems(compiled)
    checked: set[str] = set()
    found: dict[str, ModelSpec] = {}
    for node in compiled.nodes.values():
        if node.skip_reason:
            continue
        refs = list(node.kind.model_refs(node=node, scope=scope)) if node.kind.model_refs else []
        refs += retrieval_model_refs(node)  # index: and novelty: models, on any kind
        compiled_ref = node.params.get("model")
        # A model named through outputs of other nodes is checked when the node runs.
        if (
            node.kind.model_task
            and compiled_ref is not None
            and not compiled_ref.names - set(scope)
        ):
            with contextlib.suppress(RenderError):
                refs.append(
                    ModelRef(
                        compiled_ref.evaluate(scope, field_rng(0, "model"), []),
                        node.kind.model_task,
                    )
                )
        refs_ok = True
        if node.kind.extra is not None:
            missing = missing_modules(node.kind.extra, node.kind.extra_modules)
            if missing:
                what = f"kind '{node.kind.name}'"
                problems.append(
                    Problem(
                        missing_extra_message(what, node.kind.extra, missing),
                        file,
                        compiled.loaded.line((*node.tree_node.loc, "kind")),
                        node.id,
                    )
                )
        for model_ref in refs:
            ref, task = model_ref.ref, model_ref.task
            line = compiled.loaded.line((*node.tree_node.loc, model_ref.field))
            if isinstance(ref, str) and ref in bad_aliases:
                refs_ok = False
                problems.append(
                    Problem(
                        f"model '{ref}': the alias defined on line {bad_aliases[ref]} names "
                        "no usable model",
                        file,
                        line,
                        node.id,
                        hint=f"fix the alias on line {bad_aliases[ref]}",
                    )
                )
                continue
            try:
                spec = resolve_model(ref, compiled.loaded.spec.models)
                found[spec.label()] = spec
                if task is not None:
                    check_model_task(spec, task, node.id)
                if spec.key not in checked:
                    provider = providers[spec.provider]
                    if provider.extra is not None:
                        what = f"model '{spec.label()}' (provider {provider.name})"
                        require_extra(what, provider.extra, provider.modules)
                    provider.check(spec)
                    checked.add(spec.key)
            except (ModelError, MissingExtra) as exc:
                refs_ok = False
                problems.append(Problem(str(exc), file, line, node.id))
        # Checks across a node's models (a cycle's types) run once each model is known good.
        if node.kind.check is not None and refs_ok:
            resolve = functools.partial(resolve_model, aliases=compiled.loaded.spec.models)
            for found_problem in node.kind.check(node=node, scope=scope, resolve=resolve):
                problems.append(
                    Problem(
                        found_problem.message,
                        file,
                        compiled.loaded.line((*node.tree_node.loc, found_problem.field)),
                        node.id,
                    )
                )
    if problems:
        raise TreeError(problems)
    return found


def _alias_problems(compiled: CompiledTree) -> tuple[list[Problem], dict[str, int | None]]:
    """Aliases under `models:` that name no model, reported at the line that defines them (a
    node using one is told which line to fix); returns the problems and the bad aliases with
    that line. Weights are checked where a model is used: an unused alias may name weights
    that this machine lacks."""
    from genarun.models.catalog import resolve_model

    loaded = compiled.loaded
    aliases = loaded.spec.models
    file = str(loaded.path)
    problems: list[Problem] = []
    failed: dict[str, int | None] = {}
    for alias, value in aliases.items():
        if isinstance(value, str) and value in aliases and value != alias:
            continue  # names another alias: that one is checked (and reported) itself
        line = loaded.line(("models", alias))
        try:
            resolve_model(value if isinstance(value, dict) else alias, aliases)
        except ModelError as exc:
            failed[alias] = line
            problems.append(Problem(f"model alias '{alias}': {exc}", file, line))
    bad = dict(failed)
    for alias in aliases:  # an alias of a bad alias is bad too, fixed at the same line
        seen, ref = {alias}, aliases[alias]
        while isinstance(ref, str) and ref in aliases and ref not in seen:
            if ref in failed:
                bad[alias] = failed[ref]
                break
            seen.add(ref)
            ref = aliases[ref]
    return problems, bad


def check_all_models(compiled: CompiledTree) -> None:
    """Check the models of every matrix combination, without running anything."""
    for bindings in matrix_bindings(compiled):
        names = {name: None for name, _ in compiled.tree_vars}
        check_models(compiled, {"seed": 0, "run": {}, **names, **bindings})


def run_tree(path: Path | str, options: RunOptions | None = None) -> Outcome:
    """Run a tree file (all runs of its matrix) and return how it went."""
    options = options or RunOptions()
    compiled = prepare(path, options)
    if options.device and options.device != "cpu":
        from genarun.models.device import pick_device

        pick_device(options.device)  # a device that is not here: said before anything runs
    tree_path = compiled.loaded.path.resolve()
    tree_text = compiled.loaded.doc.text
    tree_hash = hashlib.sha256(tree_text.encode()).hexdigest()
    bindings_list = matrix_bindings(compiled)

    base_seed = options.seed
    spec_seed = compiled.loaded.spec.seed
    root = Path(options.out) if options.out else tree_path.parent
    _check_output_root(root, compiled)
    # Nothing is written until every run has passed its checks: a tree rejected here (an
    # unknown model, a var that fails to render) leaves no database rows, no folder and no
    # experiment that would become `latest`. --only reads an earlier run, so its database must
    # exist; otherwise the database is opened (or made) only once the checks pass.
    store = source_store(options.db, compiled) if options.only else None
    started = time.time()
    runs: list[RunState] = []
    try:
        plans = plan_runs(
            store,
            compiled,
            bindings_list,
            only=options.only,
            from_run=options.from_run,
            cache=options.cache,
            skip=options.skip,
        )
        for bindings, plan in zip(bindings_list, plans, strict=True):
            seed_value = bindings.get("seed", base_seed if base_seed is not None else spec_seed)
            seed_random = seed_value is None or seed_value == "random"
            state = RunState(
                id=new_id(),
                compiled=compiled,
                store=_NOT_OPEN,  # set below, once the checks pass
                seed=int(seed_value)
                if seed_value is not None and not seed_random
                else fresh_seed(),
                seed_is_random=seed_random,
                bindings=bindings,
                folder=root,  # set below, once the checks pass
                started=started,
                reuse=plan,
            )
            state.scope = _run_scope(state)
            state.models_used.update(check_models(compiled, state.scope))
            runs.append(state)
    except BaseException:
        if store is not None:
            store.close()
        raise
    # Every check passed: from here on the run is written.
    tree_folder = root / compiled.name
    folder = dated_folder(tree_folder, started)
    try:
        store = store or Store(options.db, writing=True)
    except GenarunError:
        _remove_empty(folder)
        raise
    experiment_id = store.create_experiment(
        name=compiled.name,
        tree_path=str(tree_path),
        tree_hash=tree_hash,
        matrix=json.dumps(to_json(compiled.matrix)),
        out_dir=str(folder),
    )
    for position, state in enumerate(runs, start=1):
        state.store, state.experiment_id = store, experiment_id
        state.folder = folder if len(runs) == 1 else folder / run_label(position, state.bindings)
        state.label = state.folder.name
        store.create_run(
            id=state.id,
            experiment_id=experiment_id,
            name=compiled.name,
            tree_path=str(tree_path),
            tree_text=tree_text,
            tree_hash=tree_hash,
            seed=state.seed,
            seed_random=int(state.seed_is_random),
            bindings=json.dumps(to_json({**state.bindings, **options.overrides})),
            status="running",
            started=started,
            out_dir=str(state.folder),
            source_run_id=state.reuse.source_run_id if state.reuse else None,
            plan=state.reuse.to_json() if state.reuse else None,
            picks=json.dumps(state.var_picks, ensure_ascii=False),
            models=state.models_json(),
            **process_identity(),
        )
        state.start_folder()
    if len(runs) > 1:
        write_experiment_json(folder, experiment_id, compiled.name, compiled.matrix, runs)
    return execute_runs(
        store, runs, options, tree_folder=tree_folder, folder=folder, experiment_id=experiment_id
    )


def write_experiment_json(
    folder: Path, experiment_id: str, name: str, matrix: dict[str, Any], runs: list[RunState]
) -> None:
    """experiment.json in an experiment's folder: its runs, their sub-folders and values."""
    write_json(
        folder / "experiment.json",
        {
            "experiment": experiment_id,
            "tree": name,
            "matrix": to_json(matrix),
            "runs": [
                {
                    "run": r.id,
                    "folder": r.folder.name,
                    "bindings": to_json(r.bindings),
                    "seed": r.seed,
                }
                for r in runs
            ],
        },
    )


# A run's store before the checks pass: nothing may be written until then (see run_tree).
_NOT_OPEN = cast("Store", None)


def _check_output_root(root: Path, compiled: CompiledTree) -> None:
    """Outputs never go into another run's output folder: `latest/` is replaced by the next
    run (taking them with it), and a run folder's files are that run's record."""
    inside = output_folder_of(root)
    if inside is not None:
        raise UserError(
            f"{compiled.loaded.path}: its outputs would go to {root}, inside the output folder "
            f"of a run ({inside}), which the next run may replace; run the tree itself (a run "
            "folder's tree file is a copy), or choose another place with --out"
        )


def process_identity() -> dict[str, Any]:
    """The pid, host and heartbeat stored on a running run: its claim (store/claims.py); a run
    whose process is gone was killed."""
    from genarun.store.claims import identity

    return identity()


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

        backend = RayBackend(options.ray_address)
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


def _run_scope(state: RunState) -> dict[str, Any]:
    """What every node sees: tree vars (rendered once, in order), matrix values, seed, run."""
    compiled = state.compiled
    scope: dict[str, Any] = {
        "seed": state.seed,
        "run": {"id": state.id, "name": compiled.name, "started": state.started},
    }
    scope.update(state.bindings)
    state.var_picks = {}
    for name, value in compiled.tree_vars:
        try:
            scope[name] = state.draw_var(name, value, scope)
        except RenderError as exc:
            raise TreeError(
                Problem(str(exc), str(compiled.loaded.path), compiled.loaded.line(("vars", name)))
            ) from None  # names vars.NAME
    return scope


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


def _remove_empty(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


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
