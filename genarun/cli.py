"""The `genarun` command line: parse arguments, call the core, render errors.

Heavy modules are imported inside commands, so `genarun --help`, `validate` and `graph` never
import torch.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from genarun import __version__
from genarun.errors import GenarunError


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """User errors become a message and an exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GenarunError as exc:
            click.secho(f"error: {exc}" if exc.exit_code != 130 else str(exc), fg="red", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as exc:
            if os.environ.get("GENARUN_DEBUG"):
                raise
            click.secho(f"internal error: {type(exc).__name__}: {exc}", fg="red", err=True)
            click.echo("(this is a bug in genarun; set GENARUN_DEBUG=1 to see the traceback)", err=True)
            sys.exit(1)

    return wrapper


def parse_set(values: tuple[str, ...]) -> dict[str, Any]:
    """`--set name=value` pairs; values are read as YAML scalars (42 is a number)."""
    import yaml

    from genarun.errors import UserError

    out: dict[str, Any] = {}
    for item in values:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--set {item!r}: expected name=value")
        try:
            out[name.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[name.strip()] = raw
    return out


db_option = click.option("--db", type=click.Path(dir_okay=False, path_type=Path), envvar="GENARUN_DB", help="SQLite database (default genarun.db here; or $GENARUN_DB).")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="genarun")
def main() -> None:
    """genarun: declarative, recursive pipeline trees for generative AI.

    Write a tree (YAML or JSON) of nodes, then `genarun run tree.yaml`.
    Outputs go to SQLite and to a dated folder beside the tree.
    """


@main.command()
@click.argument("tree", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--seed", type=int, help="Run seed (overrides the tree's seed).")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="Override a var or fix a matrix key.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Root of output folders (default: beside the tree).")
@db_option
@click.option("--skip", multiple=True, metavar="ID", help="Do not run this node (nor what depends on it).")
@click.option("--device", help="cuda, cuda:1, mps or cpu (default: the best available).")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=16, show_default=True, help="Most invocations sent to a model at once.")
@click.option("--dry-run", is_flag=True, help="Validate, compile and check models, then stop.")
@handle_errors
def run(tree: Path, seed: int | None, sets: tuple[str, ...], out: Path | None, db: Path | None, skip: tuple[str, ...], device: str | None, batch_size: int, dry_run: bool) -> None:
    """Run TREE: every node, every matrix combination."""
    from genarun.run.progress import Progress
    from genarun.run.runner import RunOptions, check_models, matrix_bindings, prepare, raise_for, run_tree

    options = RunOptions(seed=seed, overrides=parse_set(sets), out=out, db=db, device=device, batch_size=batch_size, skip=set(skip))
    if dry_run:
        compiled = prepare(tree, options)
        for bindings in matrix_bindings(compiled):
            check_models(compiled, {"seed": 0, "run": {}, **bindings, **{n: None for n, _ in compiled.tree_vars}})
        runs = len(matrix_bindings(compiled))
        click.echo(f"{tree}: valid; {len(compiled.nodes)} nodes, {runs} run{'s' if runs > 1 else ''}; nothing was run (--dry-run)")
        return
    options.progress = Progress()
    outcome = run_tree(tree, options)
    for state in outcome.runs:
        counts = state.counts
        summary = ", ".join(f"{counts[k]} {k}" for k in ("done", "reused", "skipped", "failed") if counts.get(k))
        click.echo(f"run {state.id[:8]} {state.label if len(outcome.runs) > 1 else ''}".rstrip() + f": {summary or 'nothing to do'}")
    click.echo(f"output: {outcome.folder}")
    raise_for(outcome)


@main.command()
@click.argument("trees", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE")
@handle_errors
def validate(trees: tuple[Path, ...], sets: tuple[str, ...]) -> None:
    """Check TREES against the format and compile them (exit 0 or 2); runs nothing."""
    from genarun.errors import TreeError
    from genarun.graph.compile import compile_tree
    from genarun.tree.validate import read_tree

    failed = False
    for tree in trees:
        try:
            compiled = compile_tree(read_tree(tree), parse_set(sets))
        except TreeError as exc:
            failed = True
            click.secho(f"error: {exc}", fg="red", err=True)
            continue
        click.echo(f"{tree}: valid ({len(compiled.nodes)} nodes)")
    if failed:
        sys.exit(2)


@main.command()
@click.argument("tree", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "mermaid", "both"]), default="both", show_default=True)
@handle_errors
def graph(tree: Path, fmt: str) -> None:
    """Print the structure of TREE as indented text and as a Mermaid flowchart."""
    from genarun.graph.compile import compile_tree
    from genarun.graph.render import render_mermaid, render_text
    from genarun.tree.validate import read_tree

    compiled = compile_tree(read_tree(tree))
    if fmt in ("text", "both"):
        click.echo(render_text(compiled))
    if fmt == "both":
        click.echo()
    if fmt in ("mermaid", "both"):
        click.echo(render_mermaid(compiled))


@main.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file instead of stdout.")
@handle_errors
def schema(output: Path | None) -> None:
    """Print the JSON Schema of the tree format (for editors' YAML language servers)."""
    from genarun.tree.jsonschema import tree_json_schema

    text = json.dumps(tree_json_schema(), indent=2)
    if output:
        output.write_text(text + "\n")
        click.echo(f"wrote {output}")
    else:
        click.echo(text)


@main.group()
def runs() -> None:
    """List and inspect stored runs."""


@runs.command("list")
@db_option
@click.option("--limit", type=int, default=30, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def runs_list(db: Path | None, limit: int, as_json: bool) -> None:
    """The newest runs in the database."""
    from genarun.store.db import Store
    from genarun.store.reports import runs_table

    store = Store(db)
    rows = store.list_runs(limit)
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
    from genarun.store.db import Store
    from genarun.store.reports import run_report, run_report_json

    store = Store(db)
    run_row = store.resolve_run(run_ref)
    executions = store.run_executions(run_row["id"])
    if as_json:
        click.echo(json.dumps(run_report_json(run_row, executions), indent=2, default=str))
    else:
        click.echo(run_report(run_row, executions))


@main.group()
def models() -> None:
    """The model catalog."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def models_list(as_json: bool) -> None:
    """Name, provider, task, source, size and whether the weights are here."""
    from genarun.models.listing import catalog_rows, catalog_table

    rows = catalog_rows()
    click.echo(json.dumps(rows, indent=2) if as_json else catalog_table(rows))


if __name__ == "__main__":  # pragma: no cover
    main()
