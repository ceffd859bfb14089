"""Running a tree: validate, compile, expand the matrix, check models, start the runs (their
database rows and folders), then execute them (run/outcome.py)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, cast

from genarun.errors import GenarunError, Problem, TreeError, UserError
from genarun.graph.compiled import CompiledTree
from genarun.graph.matrix import matrix_bindings
from genarun.run.model_checks import check_models
from genarun.run.only import plan_runs, source_store
from genarun.run.options import RunOptions
from genarun.run.outcome import Outcome, execute_runs
from genarun.run.seeds import fresh_seed
from genarun.run.state import RunState
from genarun.run.tree_checks import checked_tree
from genarun.store.db import Store, new_id
from genarun.store.folders import dated_folder, output_folder_of, run_label, write_json
from genarun.tree.template_core import RenderError
from genarun.values import to_json


def prepare(path: Path | str, options: RunOptions) -> CompiledTree:
    """Validate and compile a tree: every error surfaces here, before anything runs."""
    compiled = checked_tree(path, options.overrides, options.skip, options.max_runs)
    options.overrides = compiled.overrides
    loaded = compiled.loaded
    if options.seed is not None and "seed" in compiled.matrix:  # it would be ignored
        values = ", ".join(map(str, compiled.matrix["seed"]))
        raise UserError(
            f"--seed {options.seed}: seed is a matrix key of {loaded.path} (seed: [{values}]), so each run has its own seed; "
            f"to run one seed, use --set seed={options.seed}"
        )
    return compiled


def run_tree(path: Path | str, options: RunOptions | None = None) -> Outcome:
    """Run a tree file (all runs of its matrix) and return how it went."""
    options = options or RunOptions()
    compiled = prepare(path, options)
    if options.device and options.device != "cpu":
        from genarun.models.device import pick_device

        pick_device(options.device)  # a device that is not here: said before anything runs
    if options.executor == "ray":  # a placement that does not exist: said before anything runs
        from genarun.run.ray_sharing import actors_placement

        options.ray_actors = actors_placement(options.ray_actors)
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
            state.scope = run_scope(state)
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


def run_scope(state: RunState) -> dict[str, Any]:
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
            # A --set value is not on the var's line (its message names --set NAME).
            line = None if name in compiled.overrides else compiled.loaded.line(("vars", name))
            raise TreeError(Problem(str(exc), str(compiled.loaded.path), line)) from None
    return scope


def _remove_empty(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
