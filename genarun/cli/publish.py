"""`genarun export site` and `genarun watch`: publishing runs as sites."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from genarun.cli.common import NumberRange, db_option, handle_errors


@click.command("site")
@click.argument("run_ref", metavar="RUN")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The export folder; nothing is written outside it.",
)
@click.option(
    "--template",
    metavar="NAME|DIR",
    help="A site template to export into (astro-blog), or a template folder; default: the "
    "tree's site.template, else site-data only.",
)
@click.option(
    "--from",
    "from_node",
    metavar="NODE",
    help="Apply this node's {files, commands} output to the export (default: site.generator).",
)
@click.option(
    "--allow",
    multiple=True,
    metavar="GLOB",
    help="Let the site-gen node also write paths matching GLOB (src/pages/*.md).",
)
@click.option("--force", is_flag=True, help="Write into a non-empty folder, replacing files.")
@click.option("--partial", is_flag=True, help="Exit 0 even when outputs are missing.")
@click.option(
    "--run-commands",
    is_flag=True,
    help="Run the site-gen node's commands (only allowlisted ones: npm ci, npm run build).",
)
@db_option
@handle_errors
def export_site_command(
    run_ref: str,
    out: Path,
    template: str | None,
    from_node: str | None,
    allow: tuple[str, ...],
    force: bool,
    partial: bool,
    run_commands: bool,
    db: Path | None,
) -> None:
    """Export RUN (id, prefix, latest or its folder) for a static site: site-data.json, its
    JSON Schema and the images, optionally inside a site template (an Astro blog)."""
    from genarun.publish.export import ExportOptions, export_site
    from genarun.publish.sitegen import command_problem
    from genarun.publish.sitegen import run_commands as run_sitegen_commands
    from genarun.store.db import Store

    store = Store.existing(db)
    options = ExportOptions(
        out=out, template=template, from_node=from_node, force=force, allow=allow
    )
    result = export_site(store, run_ref, options)
    site = result.site
    data = f"{out}/{result.data_dir}site-data.json"
    click.echo(
        f"exported run {site.data['site']['run'][:8]} to {out}: {data}, "
        f"{len(site.images)} image{'s' if len(site.images) != 1 else ''}"
        + (f", template {result.template.name}" if result.template else "")
    )
    if result.removed:
        click.echo(f"removed {len(result.removed)} image(s) of an earlier export")
    if result.sitegen is not None:
        click.echo(f"site-gen: wrote {', '.join(result.sitegen.files) or 'no files'}")
        for command in result.sitegen.commands:
            problem = command_problem(command)
            note = f"  (refused: {problem})" if problem else ""
            click.echo(f"site-gen command: {command}{note}")
        if run_commands and result.sitegen.commands:
            run_sitegen_commands(result.sitegen.commands, out, click.echo)
    if result.template and not (run_commands and result.sitegen and result.sitegen.commands):
        click.echo(f"build it: cd {out} && npm ci && npm run build   (the site is in {out}/dist)")
    if site.missing:
        for line in site.missing:
            click.secho(f"missing: {line}", fg="yellow", err=True)
        if not partial:
            click.secho(
                f"error: the export is incomplete ({len(site.missing)} missing, marked in "
                "site-data.json); --partial accepts it",
                fg="red",
                err=True,
            )
            sys.exit(1)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--interval",
    type=NumberRange(0.1, 3600),
    default=1.0,
    show_default=True,
    help="Seconds between checks for changes.",
)
@click.option("--once", is_flag=True, help="Run every tree once (reusing the cache), then stop.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Root of output folders (default: beside each tree).",
)
@db_option
@handle_errors
def watch(
    paths: tuple[Path, ...], interval: float, once: bool, out: Path | None, db: Path | None
) -> None:
    """Rerun the trees in PATHS (tree files or folders of them) when a tree file, or a file it
    names, changes; every unchanged execution comes from the cache. A tree whose site: block
    has `out` gets its site export refreshed there. Ctrl-C stops."""
    from genarun.errors import UserError
    from genarun.publish.watch import Watcher

    watcher = Watcher(list(paths), db=db, out=out)
    if not watcher.trees():
        raise UserError(
            f"no tree files in {', '.join(map(str, paths))} (a .yaml, .yml or .json file with "
            "a 'genarun:' key)"
        )
    failed = False

    def report(event: Any) -> None:
        nonlocal failed
        if event.outcome is not None:
            for state in event.outcome.runs:
                counts = state.counts
                ran = counts.get("done", 0)
                click.echo(
                    f"{event.tree}: run {state.id[:8]}: {ran} ran, {counts.get('reused', 0)} reused"
                    + (f", {counts['failed']} failed" if counts.get("failed") else "")
                )
        for folder in event.exported:
            click.echo(f"{event.tree}: site export refreshed in {folder}")
        for line in event.missing:
            click.secho(f"{event.tree}: missing: {line}", fg="yellow", err=True)
        if event.error:
            failed = True
            click.secho(f"error: {event.error}", fg="red", err=True)

    if once:
        for event in watcher.poll():
            report(event)
        if failed:
            sys.exit(1)
        return
    click.echo(f"watching {len(watcher.trees())} tree(s); Ctrl-C stops", err=True)
    watcher.loop(report, interval=interval)


def register(main: click.Group) -> None:
    export = main.commands["export"]
    assert isinstance(export, click.Group)
    export.add_command(export_site_command)
    main.add_command(watch)
