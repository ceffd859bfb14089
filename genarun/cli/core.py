"""`genarun run`, `validate`, `graph` and `schema`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from genarun.cli.common import db_option, handle_errors, parse_set


@click.command()
@click.argument("tree", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--seed", type=int, help="Run seed (overrides the tree's seed).")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="Override a var or fix a matrix key.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Root of output folders (default: beside the tree).")
@db_option
@click.option("--skip", multiple=True, metavar="ID", help="Do not run this node (nor what depends on it).")
@click.option("--only", multiple=True, metavar="ID", help="Run only this node and its subtree; take what it needs from an earlier run.")
@click.option("--from", "from_run", metavar="RUN", help="With --only: the run to take the other outputs from (default: the latest of this tree).")
@click.option("--no-cache", is_flag=True, help="Execute everything, even executions identical to stored ones.")
@click.option("--device", help="cuda, cuda:1, mps or cpu (default: the best available).")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=16, show_default=True, help="Most invocations sent to a model at once.")
@click.option("--dry-run", is_flag=True, help="Validate, compile and check models, then stop.")
@handle_errors
def run(
    tree: Path, seed: int | None, sets: tuple[str, ...], out: Path | None, db: Path | None, skip: tuple[str, ...],
    only: tuple[str, ...], from_run: str | None, no_cache: bool, device: str | None, batch_size: int, dry_run: bool,
) -> None:
    """Run TREE: every node, every matrix combination.

    Executions identical to stored ones (same kind, rendered parameters, inputs, model and
    seed) are reused from the database unless --no-cache is given.
    """
    from genarun.cli.history import echo_outcome
    from genarun.errors import UserError
    from genarun.run.progress import Progress
    from genarun.run.runner import (
        RunOptions,
        check_all_models,
        matrix_bindings,
        prepare,
        run_tree,
    )

    if from_run and not only:
        raise UserError("--from RUN goes with --only ID: it names the run to take the other nodes' outputs from")
    options = RunOptions(
        seed=seed, overrides=parse_set(sets), out=out, db=db, device=device, batch_size=batch_size, skip=set(skip),
        only=set(only), from_run=from_run, cache=not no_cache,
    )
    if dry_run:
        compiled = prepare(tree, options)
        check_all_models(compiled)
        runs = len(matrix_bindings(compiled))
        click.echo(f"{tree}: valid; {len(compiled.nodes)} nodes, {runs} run{'s' if runs > 1 else ''}; nothing was run (--dry-run)")
        return
    options.progress = Progress()
    outcome = run_tree(tree, options)
    echo_outcome(outcome, db)


@click.command()
@click.argument("trees", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE")
@handle_errors
def validate(trees: tuple[Path, ...], sets: tuple[str, ...]) -> None:
    """Check TREES: format, names, dependencies and models (exit 0 or 2); runs nothing."""
    from genarun.errors import TreeError
    from genarun.graph.compile import compile_tree
    from genarun.run.runner import check_all_models
    from genarun.tree.validate import read_tree

    failed = False
    for tree in trees:
        try:
            compiled = compile_tree(read_tree(tree), parse_set(sets))
            check_all_models(compiled)
        except TreeError as exc:
            failed = True
            click.secho(f"error: {exc}", fg="red", err=True)
            continue
        click.echo(f"{tree}: valid ({len(compiled.nodes)} nodes)")
    if failed:
        sys.exit(2)


@click.command()
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


@click.command()
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


def register(main: click.Group) -> None:
    main.add_command(run)
    main.add_command(validate)
    main.add_command(graph)
    main.add_command(schema)
