"""`genarun rerun` and `genarun resume`: new runs that reuse a stored run's finished work, and
finishing an interrupted run in place.

Both only build a `ReusePlan` and `RunState`s, then execute them like `genarun run` does; the
executor takes stored outputs instead of executing wherever the plan allows.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select

from genarun.errors import StoreError, TreeError, UserError
from genarun.graph.compile import compile_tree
from genarun.graph.compiled import CompiledTree
from genarun.graph.plan import (
    Target,
    changed_nodes,
    check_node_ids,
    dependents,
    format_target,
    parse_node_ref,
    run_bound_nodes,
)
from genarun.run.model_checks import check_models
from genarun.run.only import apply_only
from genarun.run.options import RunOptions
from genarun.run.outcome import Outcome, execute_runs
from genarun.run.reuse import ReusePlan, finished_executions, stored_var_picks
from genarun.run.runner import process_identity, run_scope, write_experiment_json
from genarun.run.seeds import fresh_seed
from genarun.run.state import RunState
from genarun.store.claims import claim_all, release
from genarun.store.db import Store, experiments, new_id
from genarun.store.folders import dated_folder
from genarun.tree.load import load_text
from genarun.tree.validate import LoadedTree, read_tree, validate_document
from genarun.values import to_json


@dataclass
class RerunResult:
    outcome: Outcome
    sources: list[dict[str, Any]]  # the runs rerun, in the order of outcome.runs
    rerun: dict[str, str]  # target label -> why it runs again
    changed: dict[str, str]  # node id -> what changed in its definition
    notes: list[str] = field(default_factory=list)
    experiment_runs: int = 1  # how many runs the sources' experiment has

    @property
    def source(self) -> dict[str, Any]:
        return self.sources[0]


@dataclass
class ResumeResult:
    outcome: Outcome
    kept: dict[str, int]  # run id -> executions finished before the interruption


def _tree_from_text(run: dict[str, Any]) -> LoadedTree:
    """The tree exactly as the run ran it (runs.tree_text)."""
    name = run["tree_path"] or f"{run['name']}.yaml"
    fmt: Literal["yaml", "json"] = "json" if name.lower().endswith(".json") else "yaml"
    return validate_document(load_text(run["tree_text"] or "", name, fmt))


def _split_bindings(
    run: dict[str, Any], loaded: LoadedTree
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The run's matrix values and --set overrides that still apply to `loaded`, and notes
    about those that do not."""
    stored = json.loads(run["bindings"]) if run["bindings"] else {}
    matrix = {k: v for k, v in stored.items() if k in loaded.spec.matrix}
    overrides = {k: v for k, v in stored.items() if k in loaded.spec.vars and k not in matrix}
    dropped = sorted(set(stored) - set(matrix) - set(overrides))
    notes = [
        f"'{k}' (set to {stored[k]!r} in the source run) is no longer a var or matrix key of the tree"
        for k in dropped
    ]
    return matrix, overrides, notes


def _tree_folder(store: Store, run: dict[str, Any]) -> tuple[Path, Path]:
    """The tree's output folder and the run's experiment folder."""
    row = store.conn.execute(
        select(experiments.c.out_dir).where(experiments.c.id == run["experiment_id"])
    ).first()
    experiment_folder = Path(row.out_dir) if row and row.out_dir else Path(run["out_dir"])
    return experiment_folder.parent, experiment_folder


def rerun_run(
    run_ref: str,
    node_refs: list[str],
    *,
    db: Path | None = None,
    same_seed: bool = False,
    cache: bool = True,
    out: Path | None = None,
    options: RunOptions | None = None,
    runs_of: list[str] | None = None,
) -> RerunResult:
    """New runs of RUN's tree that execute the selected nodes, what depends on them and what
    changed in the tree since; every other output is taken from the source run.

    RUN names one run (an id, its prefix or its folder), or a whole experiment: `latest` of a
    matrix experiment, or an experiment's folder, reruns each of its runs (`runs_of` picks
    some, by id, folder name or position). The new runs form one experiment, executed together
    like `genarun run`'s, and `latest/` becomes their folder once they complete."""
    options = options or RunOptions()
    store = Store.existing(db, writing=True)  # a run to continue: never a new database
    started = time.time()
    try:
        sources, members = _sources(store, run_ref, runs_of or [])
        planned = [
            _plan_rerun(store, source, node_refs, same_seed=same_seed, cache=cache, started=started)
            for source in sources
        ]
    except BaseException:
        store.close()
        raise
    # Checks are done: from here on the new runs are written.
    states = [p[0] for p in planned]
    first = states[0]
    tree_folder, _experiment_folder = _tree_folder(store, sources[0])
    if out is not None:
        tree_folder = Path(out) / first.compiled.name
    folder = dated_folder(tree_folder, started)
    matrix: dict[str, list[Any]] = {}
    for state in states:
        for key, value in state.bindings.items():
            if value not in matrix.setdefault(key, []):
                matrix[key].append(value)
    experiment_id = store.create_experiment(
        name=first.compiled.name,
        tree_path=str(first.compiled.loaded.path),
        matrix=json.dumps(to_json(matrix)),
        out_dir=str(folder),
    )
    for state, source, (_s, plan, *_rest) in zip(states, sources, planned, strict=True):
        state.folder = folder if len(states) == 1 else folder / Path(source["out_dir"]).name
        state.label, state.experiment_id = state.folder.name, experiment_id
        store.create_run(
            id=state.id,
            experiment_id=experiment_id,
            name=state.compiled.name,
            tree_path=str(state.compiled.loaded.path),
            tree_text=state.compiled.loaded.doc.text,
            seed=state.seed,
            seed_random=int(state.seed_is_random),
            bindings=json.dumps(to_json({**state.bindings, **state.compiled.overrides})),
            status="running",
            started=state.started,
            out_dir=str(state.folder),
            source_run_id=source["id"],
            plan=plan.to_json(),
            picks=json.dumps(state.var_picks, ensure_ascii=False),
            models=state.models_json(),
            **process_identity(),
        )
        state.start_folder()
    if len(states) > 1:
        write_experiment_json(folder, experiment_id, first.compiled.name, matrix, states)
    outcome = execute_runs(
        store, states, options, tree_folder=tree_folder, folder=folder, experiment_id=experiment_id
    )
    reasons: dict[str, str] = {}
    notes: list[str] = []
    for _state, _plan, why, _changed, run_notes in planned:
        reasons.update(why)
        notes += [n for n in run_notes if n not in notes]
    return RerunResult(outcome, sources, reasons, planned[0][3], notes, len(members))


def _sources(
    store: Store, run_ref: str, picks: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The runs a rerun starts from, and all runs of their experiment. A run named by id,
    prefix or folder is that run; `latest`, or an experiment's folder, is every run of the
    experiment; picks narrow it to some runs of that experiment."""
    experiment_json = Path(run_ref) / "experiment.json"
    if run_ref.strip().lower() != "latest" and experiment_json.is_file():
        try:
            experiment_id = str(json.loads(experiment_json.read_text())["experiment"])
        except (ValueError, KeyError, TypeError):
            raise StoreError(f"{experiment_json} is not an experiment's record") from None
        members = store.runs_of_experiment(experiment_id)
        if not members:
            raise StoreError(f"no runs of experiment {experiment_id[:8]} in {store.path}")
        whole = True
    else:
        source = store.resolve_run(run_ref)
        members = (
            store.runs_of_experiment(source["experiment_id"]) if source["experiment_id"] else []
        ) or [source]
        whole = run_ref.strip().lower() == "latest"
        if not picks and not whole:
            return [source], members
    members = sorted(members, key=lambda r: Path(r["out_dir"] or "").name)
    if not picks:
        return (members if whole else members[:1]), members
    chosen: list[dict[str, Any]] = []
    for pick in picks:
        row = _pick_run(members, pick)
        if row not in chosen:
            chosen.append(row)
    return chosen, members


def _pick_run(members: list[dict[str, Any]], pick: str) -> dict[str, Any]:
    """One run of an experiment by id prefix, folder name or position (1, 01)."""
    wanted = pick.strip().lower()
    found = [
        r
        for r in members
        if (len(wanted) >= 4 and r["id"].startswith(wanted))
        or Path(r["out_dir"] or "").name.lower() == wanted
        or (
            wanted.isdigit()
            and Path(r["out_dir"] or "").name.split("_")[0].lstrip("0") == wanted.lstrip("0")
        )
    ]
    if len(found) == 1:
        return found[0]
    shown = ", ".join(f"{Path(r['out_dir'] or '').name} ({r['id'][:8]})" for r in members)
    problem = "matches several runs" if found else "is not a run"
    raise UserError(
        f"--run {pick} {problem} of this experiment; its runs: {shown} "
        "(give a position, a folder name or a run id)"
    )


def _plan_rerun(
    store: Store,
    source: dict[str, Any],
    node_refs: list[str],
    *,
    same_seed: bool,
    cache: bool,
    started: float,
) -> tuple[RunState, ReusePlan, dict[str, str], dict[str, str], list[str]]:
    notes: list[str] = []
    tree_path = Path(source["tree_path"]) if source["tree_path"] else None
    if tree_path is not None and tree_path.is_file():
        loaded = read_tree(tree_path)
    else:
        notes.append(f"{tree_path} is gone: using the tree as the source run ran it")
        loaded = _tree_from_text(source)
    try:
        old: LoadedTree | None = _tree_from_text(source)
    except TreeError:
        old = None
    matrix, overrides, dropped = _split_bindings(source, loaded)
    notes += dropped
    source_plan = json.loads(source["plan"]) if source.get("plan") else {}
    skip = set(source_plan.get("skip", [])) & {tn.id for tn in loaded.walk()}
    compiled = compile_tree(loaded, {**matrix, **overrides}, skip)

    prior = finished_executions(store, source["id"])
    selected = _selected_targets(compiled, node_refs, source, store)
    changed = {
        n: r
        for n, r in changed_nodes(old, compiled).items()
        if compiled.nodes[n].skip_reason is None
    }
    targets = {t: "selected" for t in selected}
    for node_id, reason in changed.items():
        targets.setdefault((node_id, ()), f"changed: {reason}")
    # run.id and run.started are the new run's: what the stored outputs saw is gone.
    for node_id, reason in run_bound_nodes(compiled).items():
        if compiled.nodes[node_id].skip_reason is None:
            targets.setdefault((node_id, ()), reason)
    affected = dependents(compiled, targets)
    fresh = dependents(compiled, {t: "selected" for t in selected})
    plan = ReusePlan(
        cache=cache,
        source_run_id=source["id"],
        rerun=list(affected),
        no_cache=list(selected),
        fresh_seeds=list(fresh),
        seed_salt=None if same_seed else fresh_seed(),
        same_seed=same_seed,
        skip=sorted(skip),
        prior=prior,
        var_picks=stored_var_picks(source),
    )
    state = RunState(
        id=new_id(),
        compiled=compiled,
        store=store,
        seed=source["seed"],
        seed_is_random=seed_mode_of(store, source, compiled),
        bindings=matrix,
        folder=Path(source["out_dir"]),
        started=started,
        reuse=plan,
    )
    state.scope = run_scope(state)
    state.models_used.update(check_models(compiled, state.scope))
    reasons = {
        format_target(*t): why
        for t, why in affected.items()
        if compiled.nodes[t[0]].skip_reason is None
    }
    return state, plan, reasons, changed, notes


def seed_mode_of(store: Store, run: dict[str, Any], compiled: CompiledTree) -> bool:
    """Whether RUN's seed was drawn (`seed: random`): its resume and reruns keep that mode, so a
    trajectory goes on drawing fresh randomness per step instead of repeating one seed."""
    if run.get("seed_random") is not None:
        return bool(run["seed_random"])
    # A database from before runs.seed_random: a trajectory of a cycle without a seed of its
    # own drew per step only if the run's seed was random.
    from genarun.store.trajectories import trajectories_of

    inherits = {n.id for n in compiled.nodes.values() if n.spec.seed is None}
    return any(
        t["seed_random"] and t["node_id"] in inherits for t in trajectories_of(store, [run["id"]])
    )


def _selected_targets(
    compiled: CompiledTree, node_refs: list[str], source: dict[str, Any], store: Store
) -> list[Target]:
    """Parse and check --node values against the tree and the source run's executions."""
    if not node_refs:
        raise UserError(
            "name at least one node to run again: --node ID (or ID[3] for one foreach item)"
        )
    targets = [parse_node_ref(ref) for ref in node_refs]
    check_node_ids(compiled, [t[0] for t in targets], "--node")
    paths: dict[str, list[tuple[int, ...]]] = {}
    for row in store.run_executions(source["id"]):
        paths.setdefault(row["node_id"], []).append(tuple(json.loads(row["path"] or "[]")))
    for node_id, indexes in targets:
        node = compiled.nodes[node_id]
        if node.skip_reason:
            raise UserError(f"--node {node_id}: the node is not run ({node.skip_reason})")
        if len(indexes) > len(node.loops):
            levels = (
                f"{len(node.loops)} foreach level{'s' if len(node.loops) != 1 else ''}"
                if node.loops
                else "no foreach items"
            )
            raise UserError(
                f"--node {format_target(node_id, indexes)}: '{node_id}' has {levels}, so it takes at most {len(node.loops)} index{'es' if len(node.loops) != 1 else ''}"
            )
        if indexes and not any(p[: len(indexes)] == indexes for p in paths.get(node_id, [])):
            known = sorted({p[: len(indexes)] for p in paths.get(node_id, [])})
            shown = ", ".join(format_target(node_id, p) for p in known[:8]) + (
                " ..." if len(known) > 8 else ""
            )
            raise UserError(
                f"--node {format_target(node_id, indexes)}: item out of range; run {source['id'][:8]} has "
                + (shown if known else f"no executions of '{node_id}'")
            )
    return targets


# --- resume ------------------------------------------------------------------------------------
def resume_runs(
    run_refs: list[str],
    *,
    db: Path | None = None,
    force: bool = False,
    options: RunOptions | None = None,
) -> ResumeResult:
    """Finish interrupted, failed or killed runs in place (same id and folder): finished
    executions are kept, failed and unfinished ones run."""
    options = options or RunOptions()
    if options.executor == "ray":  # a placement that does not exist: said before anything runs
        from genarun.run.ray_sharing import actors_placement

        options.ray_actors = actors_placement(options.ray_actors)
    store = Store.existing(db, writing=True)  # a run to continue: never a new database
    try:
        rows = _resumable(store, run_refs, force)
    except BaseException:
        store.close()
        raise
    try:
        states = [_resume_state(store, row) for row in rows]
    except BaseException:
        release(store, rows)  # nothing ran: the runs are as they were
        store.close()
        raise
    kept = {
        s.id: len([e for e in s.reuse.kept.values() if e.status == "done"])
        for s in states
        if s.reuse
    }
    for state in states:
        store.update_run(
            state.id,
            status="running",
            ended=None,
            error=None,
            seed_random=int(state.seed_is_random),
            picks=json.dumps(state.var_picks, ensure_ascii=False),
            models=state.models_json(),
            **process_identity(),
        )
    tree_folder, experiment_folder = _tree_folder(store, rows[0])
    others = [r for r in store.runs_of_experiment(rows[0]["experiment_id"]) if r["id"] not in kept]
    refresh = all(r["status"] == "completed" for r in others)
    outcome = execute_runs(
        store,
        states,
        options,
        tree_folder=tree_folder,
        folder=experiment_folder,
        experiment_id=rows[0]["experiment_id"],
        refresh=refresh,
    )
    return ResumeResult(outcome, kept)


def _resumable(store: Store, run_refs: list[str], force: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for ref in run_refs:
        row = store.resolve_run(ref)
        if row["id"] in {r["id"] for r in rows}:
            continue
        short = row["id"][:8]
        if row["status"] == "completed":
            raise StoreError(
                f"run {short} is completed: nothing to resume (to run nodes again: genarun rerun {short} --node ID)"
            )
        rows.append(row)
    experiments_of = {r["experiment_id"] for r in rows}
    if len(experiments_of) > 1:
        raise StoreError(
            "these runs belong to different experiments: resume one experiment's runs at a time"
        )
    # One process resumes a run: of two resuming it at once, the second stops here.
    claim_all(store, rows, force=force)
    return rows


def _resume_state(store: Store, row: dict[str, Any]) -> RunState:
    loaded = _tree_from_text(row)
    stored = json.loads(row["bindings"]) if row["bindings"] else {}
    plan = ReusePlan.from_json(row.get("plan"), store)
    compiled = compile_tree(loaded, stored, set(plan.skip))
    if plan.only:
        apply_only(compiled, plan.only)
    plan.kept = finished_executions(store, row["id"], ("done", "skipped"))
    plan.var_picks = stored_var_picks(row)  # the draws its finished executions saw
    folder = Path(row["out_dir"])
    state = RunState(
        id=row["id"],
        compiled=compiled,
        store=store,
        seed=row["seed"],
        seed_is_random=seed_mode_of(store, row, compiled),
        bindings={k: v for k, v in stored.items() if k in loaded.spec.matrix},
        folder=folder,
        started=row["started"],
        experiment_id=row["experiment_id"],
        label=folder.name,
        reuse=plan,
    )
    state.scope = run_scope(state)
    state.models_used.update(check_models(compiled, state.scope))
    folder.mkdir(parents=True, exist_ok=True)
    return state
