"""`genarun rerun`, `resume` and `diff`: work with stored runs without paying twice."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from genarun.cli.common import (
    Number,
    batch_size_option,
    db_flag,
    db_option,
    device_option,
    executor_options,
    handle_errors,
    startup_objects_frozen,
    verbosity_options,
)


def echo_outcome(outcome: Any, db: Path | None) -> None:
    """Print each run's summary line and folder; exit 130 with how to resume if interrupted,
    and say how to go on (exit 0) when executions wait on the outside world."""
    from genarun.run.outcome import raise_for

    for state in outcome.runs:
        counts = state.counts
        summary = ", ".join(
            f"{counts[k]} {k}"
            for k in ("done", "reused", "skipped", "failed", "waiting")
            if counts.get(k)
        )
        click.echo(
            f"run {state.id[:8]} {state.label if len(outcome.runs) > 1 else ''}".rstrip()
            + f": {summary or 'nothing to do'}"
        )
    click.echo(f"output: {outcome.folder}")
    if db is None:
        from genarun.store.db import default_db_path, found_above

        stored = default_db_path()
        if found_above(stored):  # said: a user in a sub-folder may look for one here
            click.echo(f"database: {stored} (the project's, in a folder above)")
    if outcome.status == "interrupted":
        ids = " ".join(state.id[:12] for state in outcome.runs)
        db_part = db_flag(db)
        if outcome.stopped:  # its --budget was reached
            click.secho(
                f"{outcome.stopped}; to go on: genarun resume {ids}{db_part} --budget MORE",
                fg="yellow",
                err=True,
            )
            sys.exit(3)
        click.secho(
            f"interrupted: finished work is saved; to finish the run: genarun resume {ids}{db_part}",
            fg="yellow",
            err=True,
        )
        from genarun.run.interrupts import exit_interrupted

        exit_interrupted()
    if outcome.status == "waiting":
        from genarun.cli.human import echo_requests

        echo_requests(outcome.runs, db)  # each question, and how to answer it
        # Not an error: the tree waits on the outside world (a person's answer, say).
        waiting = [w for state in outcome.runs for w in state.waiting]
        ids = " ".join(state.id[:12] for state in outcome.runs if state.waiting)
        db_part = db_flag(db)
        people = [target for target, key in waiting if key.startswith("human:")]
        other = [f"{target}: {key}" for target, key in waiting if not key.startswith("human:")]
        shown = []
        if people:
            inbox = f"genarun inbox{db_part} lists the questions"
            shown.append(f"a person's answer to {_first(people, ', ')} ({inbox})")
        if other:
            shown.append(_first(other, "; "))
        click.secho(
            f"waiting{' for ' if people else ': '}{'; and '.join(shown)}; the rest of the run is "
            "done and saved; once answered: "
            f"genarun resume {ids}{db_part}",
            fg="yellow",
            err=True,
        )
        return
    raise_for(outcome)


def _first(items: list[str], sep: str) -> str:
    """The first three items, then how many more."""
    return sep.join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.option(
    "--node",
    "nodes",
    multiple=True,
    required=True,
    metavar="ID",
    help="A node to run again (ID[3] for one foreach item); repeatable.",
)
@click.option(
    "--run",
    "runs_of",
    multiple=True,
    metavar="RUN",
    help="Of a matrix experiment, rerun only this run (position, folder name or id); repeatable.",
)
@click.option(
    "--same-seed",
    is_flag=True,
    help="Keep the stored seeds of the nodes run again (default: new seeds).",
)
@click.option(
    "--no-cache", is_flag=True, help="Do not reuse identical executions of other runs either."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Root of output folders (default: the source run's).",
)
@db_option
@device_option
@batch_size_option
@verbosity_options
@handle_errors
def rerun(
    run_ref: str,
    nodes: tuple[str, ...],
    runs_of: tuple[str, ...],
    same_seed: bool,
    no_cache: bool,
    out: Path | None,
    db: Path | None,
    device: str | None,
    batch_size: int,
    verbosity: str | None,
) -> None:
    """A new run of RUN's tree that runs the selected nodes again, with everything depending on
    them, every node whose definition changed in the tree file since, and every node that reads
    run.id or run.started (they are the new run's); all other outputs are reused from RUN
    (images are copied, so the new run folder is self-contained).

    RUN of a matrix experiment: `latest` (or the experiment's folder) reruns every run of the
    experiment as one new experiment; --run picks some; a run's id reruns that run. latest/
    becomes the rerun's folder once it completes."""
    from genarun.run.progress import Progress
    from genarun.run.rerun import rerun_run
    from genarun.run.runner import RunOptions

    options = RunOptions(
        device=device, batch_size=batch_size, progress=Progress(verbosity=verbosity or "normal")
    )
    with startup_objects_frozen():
        result = rerun_run(
            run_ref,
            list(nodes),
            db=db,
            same_seed=same_seed,
            cache=not no_cache,
            out=out,
            options=options,
            runs_of=list(runs_of),
        )
    click.echo(_rerun_headline(result))
    for note in result.notes:
        click.echo(f"note: {note}")
    for node_id, reason in result.changed.items():
        click.echo(f"node '{node_id}': {reason}")
    if result.rerun:
        click.echo(
            "running again: " + ", ".join(f"{label} ({why})" for label, why in result.rerun.items())
        )
    for state in result.outcome.runs:
        _echo_seeds(state, state.label if len(result.outcome.runs) > 1 else "")
    echo_outcome(result.outcome, db)


def _rerun_headline(result: Any) -> str:
    """Which runs a rerun started from: never one run of an experiment without saying so."""
    sources, total = result.sources, result.experiment_runs
    new = result.outcome.runs
    experiment = (sources[0].get("experiment_id") or "")[:8]
    if len(sources) == 1:
        head = f"rerun of run {sources[0]['id'][:8]}"
        if total > 1:
            folder = Path(sources[0]["out_dir"])
            head += (
                f" ({folder.name}, 1 of the {total} runs of experiment {experiment}; to rerun "
                f"them all: genarun rerun {folder.parent} --node ...)"
            )
        return head + f": new run {new[0].id[:8]}"
    which = "all" if len(sources) == total else f"{len(sources)} of the"
    pairs = ", ".join(
        f"{Path(s['out_dir']).name} ({s['id'][:8]} -> {n.id[:8]})"
        for s, n in zip(sources, new, strict=True)
    )
    return f"rerun of {which} {total} runs of experiment {experiment}: {pairs}"


def _echo_seeds(state: Any, label: str = "") -> None:
    """The seeds of the executions that ran (stored too; shown so a good one can be kept)."""
    ran = [
        e
        for e in state.store.run_executions(state.id)
        if e["reused_from"] is None and e["status"] == "done" and e["seed"] is not None
    ]
    if ran:
        shown = ", ".join(
            f"{e['node_id']}{''.join(f'[{i}]' for i in json.loads(e['path']))}={e['seed']}"
            for e in ran[:12]
        )
        more = f" (+{len(ran) - 12} more)" if len(ran) > 12 else ""
        click.echo(f"seeds{' of ' + label if label else ''}: {shown}{more}")


@click.command()
@click.argument("run_refs", nargs=-1, required=True, metavar="RUN...")
@db_option
@click.option(
    "--force",
    is_flag=True,
    help="Resume a run marked running by a process genarun cannot check (another host, no recent heartbeat).",
)
@device_option
@batch_size_option
@click.option(
    "--budget",
    type=Number(example="5"),
    metavar="AMOUNT",
    help="Most the runs may have spent in all, earlier sessions included (price table's "
    "currency): stop, resumable, when the recorded spend reaches it.",
)
@verbosity_options
@executor_options
@handle_errors
def resume(
    run_refs: tuple[str, ...],
    db: Path | None,
    force: bool,
    device: str | None,
    batch_size: int,
    budget: float | None,
    verbosity: str | None,
    executor: str,
    ray_address: str | None,
    ray_actors: str,
) -> None:
    """Finish runs that were interrupted (Ctrl-C), killed or failed: same run id and folder;
    finished executions are kept, failed and unfinished ones run. RUN is a run id or prefix,
    an experiment id or prefix (its unfinished runs), or `latest` (the newest experiment's
    unfinished runs)."""
    from genarun.run.progress import Progress
    from genarun.run.rerun import resume_runs
    from genarun.run.runner import RunOptions
    from genarun.store.db import Store

    store = Store.existing(db)
    try:
        refs = unfinished_runs(store, run_refs)
        steps_kept = _trajectory_steps_kept(store, refs)
        if budget is not None:
            _check_spent(store, refs, budget)
    finally:
        store.close()
    if executor == "ray":  # before anything is written: say how to install it
        from genarun.run.ray_backend import import_ray

        import_ray()
    options = RunOptions(
        device=device,
        batch_size=batch_size,
        progress=Progress(verbosity=verbosity or "normal"),
        executor=executor,
        ray_address=ray_address,
        ray_actors=ray_actors,
        budget=budget,
    )
    with startup_objects_frozen():
        result = resume_runs(refs, db=db, force=force, options=options)
    for run_id, kept in result.kept.items():
        # A cycle's finished steps are kept too, though its execution had not finished:
        # "0 executions had finished" alone read as if the trajectory started over.
        steps = steps_kept.get(run_id)
        click.echo(
            f"resuming run {run_id[:8]}: {kept} execution{'s' if kept != 1 else ''} had finished"
            + (f"; trajectory steps kept: {steps}" if steps else "")
        )
    echo_outcome(result.outcome, db)


def _check_spent(store: Any, refs: list[str], budget: float) -> None:
    """Refuse a resume whose runs have spent --budget already (exit 2, nothing written)."""
    from genarun.errors import UserError
    from genarun.usage.budget import BudgetGuard, check_budget_value
    from genarun.usage.cost import money

    check_budget_value(budget)
    ids = [store.resolve_run(ref)["id"] for ref in refs]
    guard = BudgetGuard(store, ids, budget)
    if guard.check() is not None:
        currency = guard.table.currency
        raise UserError(
            f"the runs have spent {money(guard.spent, currency)} already (earlier sessions "
            f"included), at least --budget {money(budget, currency)}: give a larger --budget"
        )


def _trajectory_steps_kept(store: Any, refs: list[str]) -> dict[str, str]:
    """Per run id, its stored trajectory steps before resuming (`20/40`, `;`-separated)."""
    from genarun.errors import StoreError
    from genarun.store.trajectories import trajectories_of

    ids = []
    for ref in refs:
        try:
            ids.append(store.resolve_run(ref)["id"])
        except StoreError:
            continue  # resume_runs reports it
    kept: dict[str, list[str]] = {}
    for t in trajectories_of(store, ids):
        kept.setdefault(t["run_id"], []).append(f"{t['length']}/{t['max_steps']}")
    return {run_id: ", ".join(parts) for run_id, parts in kept.items()}


def unfinished_runs(store: Any, refs: tuple[str, ...]) -> list[str]:
    """The run ids RUN... names for resume: a run as given; an experiment (an id prefix that
    no run has, or `latest`, the newest experiment) as its runs that did not complete. A
    killed experiment has many runs: naming each one was the only way to resume it."""
    from sqlalchemy import func, select

    from genarun.errors import StoreError
    from genarun.store.db import runs
    from genarun.store.trajectories import resolve_experiment

    ids: list[str] = []
    for ref in refs:
        prefix = ref.strip().lower()
        is_run = prefix != "latest" and (
            not prefix.isalnum()  # not an id at all: resolve_run says so
            or store.conn.execute(select(func.count()).where(runs.c.id.like(prefix + "%"))).scalar()
        )
        if is_run:
            ids.append(ref)
            continue
        try:
            experiment = resolve_experiment(store, prefix)
        except StoreError:
            if prefix == "latest":
                raise
            raise StoreError(
                f"no run or experiment matches '{ref}' in {store.path} (see `genarun runs list` and `genarun experiments list`)"
            ) from None
        members = store.runs_of_experiment(experiment["id"])
        left = [r["id"] for r in members if r["status"] != "completed"]
        if not left and len(members) == 1:  # a tree without a matrix: speak of its run
            short = members[0]["id"][:8]
            raise StoreError(
                f"run {short} is completed: nothing to resume (to run nodes again: genarun"
                f" rerun {short} --node ID)"
            )
        if not left:
            raise StoreError(
                f"experiment {experiment['id'][:8]}: all {len(members)} runs completed, nothing to resume"
                " (to run nodes again: genarun rerun RUN --node ID)"
            )
        ids += left
    return list(dict.fromkeys(ids))


@click.command()
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Every (node, item) as JSON.")
@click.option("--all", "show_same", is_flag=True, help="List unchanged executions too.")
@handle_errors
def diff(run_a: str, run_b: str, db: Path | None, as_json: bool, show_same: bool) -> None:
    """Compare two runs per node and foreach item: same, changed (texts as a unified diff,
    images by sha256) or only in one."""
    from genarun.store.db import Store
    from genarun.store.diff import diff_document, diff_runs, render_diff

    store = Store.existing(db)
    row_a, row_b = store.resolve_run(run_a), store.resolve_run(run_b)
    entries = diff_runs(store, row_a["id"], row_b["id"])
    if as_json:
        data = diff_document(row_a, row_b, entries)
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        click.echo(render_diff(row_a, row_b, entries, show_same=show_same))


def register(main: click.Group) -> None:
    main.add_command(rerun)
    main.add_command(resume)
    main.add_command(diff)
