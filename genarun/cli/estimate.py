"""`genarun estimate TREE`: executions, cache reuse, time and API calls before a run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from genarun.cli.common import SeedType, db_option, handle_errors, one_tree, parse_set

if TYPE_CHECKING:
    from genarun.graph.compiled import CompiledTree


@click.command()
@click.argument("tree", type=click.Path(path_type=Path))
@click.option("--seed", type=SeedType(), help="The seed the run would use (default: the tree's).")
@click.option(
    "--set", "sets", multiple=True, metavar="NAME=VALUE", help="Override a var or fix a matrix key."
)
@click.option("--no-cache", is_flag=True, help="Estimate a run that reuses nothing.")
@click.option("--json", "as_json", is_flag=True)
@db_option
@handle_errors
def estimate(
    tree: Path,
    seed: int | str | None,
    sets: tuple[str, ...],
    no_cache: bool,
    as_json: bool,
    db: Path | None,
) -> None:
    """Per node of TREE: planned executions (foreach sizes from the last run of TREE where
    the tree does not fix them), executions the cache will reuse, the time of one execution
    from past ones of the same kind and model (median, 90th percentile) and API calls.
    Runs and writes nothing."""
    from genarun.run.runner import RunOptions, prepare

    tree = one_tree(tree)
    compiled = prepare(tree, RunOptions(seed=seed, overrides=parse_set(sets)))
    click.echo(estimate_text(compiled, db, seed, no_cache, as_json))


def estimate_text(
    compiled: CompiledTree, db: Path | None, seed: int | str | None, no_cache: bool, as_json: bool
) -> str:
    """The estimate of a compiled tree as a table (or JSON); shared with `run --dry-run`."""
    from genarun.run.estimate import estimate as estimate_tree
    from genarun.run.estimate import estimate_json, estimate_table
    from genarun.run.runner import matrix_bindings
    from genarun.store.db import Store, default_db_path

    path = Path(db) if db else default_db_path()
    # No database yet: no history, nothing to reuse (and none is created here).
    store = Store(path) if path.is_file() else None
    try:
        fixed_seed = seed if isinstance(seed, int) else None
        if seed == "random":
            no_cache = True  # a fresh seed renders executions no stored one matches
        rows = estimate_tree(
            compiled, store, len(matrix_bindings(compiled)), fixed_seed, cache=not no_cache
        )
    finally:
        if store is not None:
            store.close()
    return estimate_json(rows) if as_json else estimate_table(rows)


def register(main: click.Group) -> None:
    main.add_command(estimate)
