"""`genarun runs list`, `runs show`, and pausing and stopping a running run."""

from __future__ import annotations

import json
from pathlib import Path

import click

from genarun.cli.common import db_option, handle_errors, limit_option, with_db


@click.group()
def runs() -> None:
    """List and inspect stored runs."""


@runs.command("list")
@db_option
@limit_option
@click.option("--json", "as_json", is_flag=True, help="The runs as JSON.")
@handle_errors
def runs_list(db: Path | None, limit: int, as_json: bool) -> None:
    """The newest runs in the database."""
    from genarun.store.db import Store
    from genarun.store.processes import display_status
    from genarun.store.reports import runs_table, trajectory_summary
    from genarun.store.trajectories import trajectories_of

    store = Store.existing(db)
    rows = store.list_runs(limit)
    by_run: dict[str, list[dict]] = {}
    for t in trajectories_of(store, [r["id"] for r in rows]):
        by_run.setdefault(t["run_id"], []).append(t)
    for r in rows:
        r["status"] = display_status(r)  # `crashed` for a killed run, as `runs show` says
        if r["id"] in by_run:
            r["trajectory"] = trajectory_summary(by_run[r["id"]], r["status"])
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
    else:
        click.echo(runs_table(rows) if rows else f"no runs in {store.path}")


@runs.command("show")
@click.argument("run_ref", metavar="RUN")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Every execution as JSON.")
@handle_errors
def runs_show(run_ref: str, db: Path | None, as_json: bool) -> None:
    """One run (id, unique prefix or `latest`): its executions, statuses, seeds, timings."""
    from genarun.human.history import run_summaries, summaries_text
    from genarun.store.assembled import assembled_of_run, assembled_report
    from genarun.store.db import Store
    from genarun.store.pauses import paused_since
    from genarun.store.reports import run_report, run_report_json
    from genarun.store.responses import responses_of, responses_report
    from genarun.usage.summary import run_usage, usage_table

    store = Store.existing(db)
    run_row = store.resolve_run(run_ref)
    run_row["paused"] = paused_since(store, run_row["id"])  # genarun runs pause
    executions = store.run_executions(run_row["id"])
    responses = responses_of(store, run_row["id"])  # what fetch nodes were answered
    assembled = assembled_of_run(store, run_row["id"])  # what models filled into requests
    human = run_summaries(store, run_row["id"])  # what it asked people, and their answers
    usage = run_usage(store, run_row)  # the same figures as the run page's
    if as_json:
        report = run_report_json(run_row, executions)
        if responses:
            report["responses"] = responses
        if assembled:
            report["assembled"] = assembled
        if human:
            report["human"] = human
        report["usage"] = usage.to_json()
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        click.echo(with_db(run_report(run_row, executions), db))
        if assembled:
            click.echo(assembled_report(assembled))
        if responses:
            click.echo(responses_report(responses))
        if human:
            click.echo("\n".join(summaries_text(human)))
        click.echo("\n" + usage_table(usage))


def register(main: click.Group) -> None:
    main.add_command(runs)


@runs.command("pause")
@click.argument("run_ref", metavar="RUN")
@db_option
@handle_errors
def runs_pause(run_ref: str, db: Path | None) -> None:
    """Pause a running run: no new executions start (running ones finish and are stored)
    until `genarun runs unpause RUN`. Works for a run of any process, the server's included."""
    from genarun.store.db import Store
    from genarun.store.pauses import pause_run

    store = Store.existing(db)
    run = store.resolve_run(run_ref)
    pause_run(store, run, by="cli")
    click.echo(
        f"run {run['id'][:8]} paused: no new executions start (genarun runs unpause {run['id'][:8]})"
    )


@runs.command("stop")
@click.argument("run_ref", metavar="RUN")
@db_option
@handle_errors
def runs_stop(run_ref: str, db: Path | None) -> None:
    """Stop a running run as Ctrl-C in its terminal would: nothing new starts, what runs
    finishes and is stored, the run ends `interrupted`; `genarun resume RUN` continues it.
    A run of another process on this host (the server's workers included)."""
    from genarun.errors import UserError
    from genarun.server.control import ControlError, stop_run
    from genarun.store.db import Store

    store = Store.existing(db)
    try:
        done = stop_run(store, run_ref)
    except ControlError as exc:
        raise UserError(str(exc)) from None
    short = done["run"][:8]
    click.echo(
        with_db(
            f"run {short} stopping: what runs finishes and is stored, nothing new starts "
            f"(genarun resume {short} continues it)",
            db,
        )
    )


@runs.command("unpause")
@click.argument("run_ref", metavar="RUN")
@db_option
@handle_errors
def runs_unpause(run_ref: str, db: Path | None) -> None:
    """Let a paused run start new executions again. (`genarun resume` is another thing: it
    finishes a run whose process was interrupted or killed.)"""
    from genarun.store.db import Store
    from genarun.store.pauses import unpause_run

    store = Store.existing(db)
    run = store.resolve_run(run_ref)
    unpause_run(store, run)
    click.echo(f"run {run['id'][:8]} unpaused: new executions start again")
