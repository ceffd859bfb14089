"""`genarun run`, `validate`, `graph` and `schema`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from genarun.cli.common import (
    Number,
    SeedType,
    WholeNumber,
    batch_size_option,
    db_option,
    device_option,
    executor_options,
    handle_errors,
    one_tree,
    parse_set,
    startup_objects_frozen,
    verbosity_options,
)

# genarun.graph.matrix.MAX_RUNS, written here so that --help does not import the compiler.
_MAX_RUNS = 10_000
max_runs_option = click.option(
    "--max-runs",
    type=WholeNumber(1),
    default=_MAX_RUNS,
    show_default=True,
    help="The most runs the tree's matrix may expand into; a larger matrix is refused.",
)


@click.command()
@click.argument("tree", type=click.Path(path_type=Path))
@click.option(
    "--seed",
    type=SeedType(),
    help="Run seed (overrides the tree's seed); random draws a fresh one, recorded.",
)
@click.option(
    "--set", "sets", multiple=True, metavar="NAME=VALUE", help="Override a var or fix a matrix key."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Root of output folders (default: beside the tree).",
)
@db_option
@click.option(
    "--skip", multiple=True, metavar="ID", help="Do not run this node (nor what depends on it)."
)
@click.option(
    "--only",
    multiple=True,
    metavar="ID",
    help="Run only this node and its subtree; take what it needs from an earlier run.",
)
@click.option(
    "--from",
    "from_run",
    metavar="RUN",
    help="With --only: the run to take the other outputs from (default: the latest of this tree).",
)
@click.option(
    "--no-cache", is_flag=True, help="Execute everything, even executions identical to stored ones."
)
@device_option
@batch_size_option
@click.option("--dry-run", is_flag=True, help="Validate, compile and check models, then stop.")
@click.option(
    "--budget",
    type=Number(example="5"),
    metavar="AMOUNT",
    help="Most to spend, in the price table's currency (USD): refuse to start when the estimate "
    "exceeds it; stop, resumable, when the recorded spend reaches it.",
)
@max_runs_option
@verbosity_options
@executor_options
@handle_errors
def run(
    tree: Path,
    seed: int | str | None,
    sets: tuple[str, ...],
    out: Path | None,
    db: Path | None,
    skip: tuple[str, ...],
    only: tuple[str, ...],
    from_run: str | None,
    no_cache: bool,
    device: str | None,
    batch_size: int,
    dry_run: bool,
    budget: float | None,
    max_runs: int,
    verbosity: str | None,
    executor: str,
    ray_address: str | None,
    ray_actors: str,
) -> None:
    """Run TREE: every node, every matrix combination.

    Executions identical to stored ones (same kind, rendered parameters, inputs, model and
    seed) are reused from the database unless --no-cache is given.
    """
    from genarun.cli import collection_paused

    with collection_paused():
        from genarun.cli.history import echo_outcome
        from genarun.errors import UserError
        from genarun.graph.matrix import matrix_bindings
        from genarun.run.model_checks import check_all_models
        from genarun.run.progress import Progress
        from genarun.run.runner import RunOptions, prepare, run_tree

    tree = one_tree(tree)
    if from_run and not only:
        raise UserError(
            "--from RUN goes with --only ID: it names the run to take the other nodes' outputs from"
        )
    options = RunOptions(
        seed=seed,
        overrides=parse_set(sets),
        out=out,
        db=db,
        device=device,
        batch_size=batch_size,
        skip=set(skip),
        only=set(only),
        from_run=from_run,
        cache=not no_cache,
        max_runs=max_runs,
        executor=executor,
        ray_address=ray_address,
        ray_actors=ray_actors,
        budget=budget,
    )
    if executor == "ray":  # before anything is written: say how to install it
        from genarun.run.ray_backend import import_ray

        import_ray()
    if budget is not None:  # refused before anything is written
        from genarun.cli.estimate import check_budget
        from genarun.usage.budget import check_budget_value

        check_budget_value(budget)
        check_budget(prepare(tree, options), db, seed, no_cache, budget)
    if dry_run:
        compiled = prepare(tree, options)
        check_all_models(compiled)
        runs = len(matrix_bindings(compiled))
        from genarun.cli.estimate import estimate_text

        # Estimated first: a price table that cannot be used is the one thing said (exit 2).
        estimated = estimate_text(compiled, db, seed, no_cache, as_json=False)
        click.echo(
            f"{tree}: valid; {_count(len(compiled.nodes), 'node')}, {_count(runs, 'run')}; nothing was run (--dry-run)"
        )
        click.echo(estimated)
        return
    options.progress = Progress(verbosity=verbosity or "normal")
    with startup_objects_frozen():
        outcome = run_tree(tree, options)
    echo_outcome(outcome, db)


@click.command()
@click.argument("trees", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override a var or fix a matrix key, as `run` would.",
)
@max_runs_option
@handle_errors
def validate(trees: tuple[Path, ...], sets: tuple[str, ...], max_runs: int) -> None:
    """Check TREES: format, names, dependencies and models (exit 0 or 2); runs nothing.

    A folder stands for the trees in it (its .yaml, .yml and .json files that start a tree
    with a 'genarun:' line)."""
    from genarun.errors import Interrupted, TreeError
    from genarun.run.model_checks import check_all_models
    from genarun.run.tree_checks import checked_tree

    failed = False
    trees = tuple(_expand_folders(trees))
    for position, tree in enumerate(trees):
        try:
            compiled = checked_tree(tree, parse_set(sets), max_runs=max_runs)
            check_all_models(compiled)
        except KeyboardInterrupt:
            done = f" ({position} of {len(trees)} checked)" if len(trees) > 1 else ""
            raise Interrupted(
                f"interrupted while validating {tree}{done}; nothing was written"
            ) from None
        except TreeError as exc:
            failed = True
            click.secho(f"error: {exc}", fg="red", err=True)
            continue
        click.echo(f"{tree}: valid ({_count(len(compiled.nodes), 'node')})")
    if failed:
        sys.exit(2)


@click.command()
@click.argument("tree", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "mermaid", "both"]),
    default="both",
    show_default=True,
    help="Indented text, a Mermaid flowchart (for Markdown), or both.",
)
@handle_errors
def graph(tree: Path, fmt: str) -> None:
    """Print the structure of TREE as indented text and as a Mermaid flowchart."""
    from genarun.graph.compile import compile_tree
    from genarun.graph.render import render_mermaid, render_text
    from genarun.tree.validate import read_tree

    compiled = compile_tree(read_tree(one_tree(tree)), max_runs=None)  # not expanded
    if fmt in ("text", "both"):
        click.echo(render_text(compiled))
    if fmt == "both":
        click.echo()
    if fmt in ("mermaid", "both"):
        click.echo(render_mermaid(compiled))


@click.command()
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to a file instead of stdout.",
)
@click.option(
    "--site",
    "site_tree",
    type=click.Path(path_type=Path),
    metavar="TREE",
    help="Instead: the JSON Schema of the site-data.json that TREE's runs export.",
)
@handle_errors
def schema(output: Path | None, site_tree: Path | None) -> None:
    """Print the JSON Schema of the tree format (for editors' YAML language servers), or with
    --site TREE the schema of the site-data.json a run of TREE exports (no run needed)."""
    if site_tree is not None:
        from genarun.publish.export import site_schema_of_tree

        document = site_schema_of_tree(one_tree(site_tree))
    else:
        from genarun.tree.jsonschema import tree_json_schema

        document = tree_json_schema()
    text = json.dumps(document, indent=2, ensure_ascii=False)
    if output:
        output.write_text(text + "\n")
        click.echo(f"wrote {output}")
    else:
        click.echo(text)


def _expand_folders(paths: tuple[Path, ...]) -> list[Path]:
    """Folders given to validate become the tree files in them; files that are no tree (no
    'genarun:' key: output.json, a CI config) are named and left out."""
    from genarun.errors import UserError
    from genarun.tree.discover import no_trees_message, trees_in

    out: list[Path] = []
    for path in paths:
        if not path.is_dir():
            out.append(path)
            continue
        found, others = trees_in(path)
        if others:
            names = ", ".join(p.name for p in others)
            click.echo(f"{path}: not trees (no 'genarun:' key), left out: {names}", err=True)
        if not found:
            raise UserError(no_trees_message(path, several=True))
        out.extend(found)
    return out


def register(main: click.Group) -> None:
    main.add_command(run)
    main.add_command(validate)
    main.add_command(graph)
    main.add_command(schema)


def _count(n: int, noun: str) -> str:
    """'1 node', '3 nodes'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
