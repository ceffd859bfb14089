"""`genarun estimate TREE`: executions, cache reuse, time and API calls before a run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from genarun.cli.common import SeedType, db_option, handle_errors, one_tree, parse_set

if TYPE_CHECKING:
    from genarun.graph.compiled import CompiledTree
    from genarun.run.estimate import NodeEstimate


@click.command()
@click.argument("tree", type=click.Path(path_type=Path))
@click.option("--seed", type=SeedType(), help="The seed the run would use (default: the tree's).")
@click.option(
    "--set", "sets", multiple=True, metavar="NAME=VALUE", help="Override a var or fix a matrix key."
)
@click.option("--no-cache", is_flag=True, help="Estimate a run that reuses nothing.")
@click.option("--json", "as_json", is_flag=True, help="One object per node, as JSON.")
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
    from genarun.run.estimate import estimate_json, estimate_table

    rows = estimate_rows(compiled, db, seed, no_cache)
    return estimate_json(rows) if as_json else estimate_table(rows)


def estimate_rows(
    compiled: CompiledTree, db: Path | None, seed: int | str | None, no_cache: bool
) -> list[NodeEstimate]:
    """Per node, what a run of a compiled tree would do (estimate, --dry-run, --budget)."""
    from genarun.graph.matrix import matrix_bindings
    from genarun.run.estimate import estimate as estimate_tree
    from genarun.store.db import Store, default_db_path

    path = Path(db) if db else default_db_path()
    # No database yet: no history, nothing to reuse (and none is created here).
    store = Store(path) if path.is_file() else None
    try:
        fixed_seed = seed if isinstance(seed, int) else None
        if seed == "random":
            no_cache = True  # a fresh seed renders executions no stored one matches
        return estimate_tree(
            compiled, store, len(matrix_bindings(compiled)), fixed_seed, cache=not no_cache
        )
    finally:
        if store is not None:
            store.close()


def check_budget(
    compiled: CompiledTree,
    db: Path | None,
    seed: int | str | None,
    no_cache: bool,
    budget: float,
) -> None:
    """Refuse (exit 2) a run whose estimated cost exceeds --budget; warn about usage that
    has no price, which the budget cannot count."""
    from genarun.errors import UserError
    from genarun.run.estimate import total_cost
    from genarun.usage.budget import check_estimate, unpriced_warning

    rows = estimate_rows(compiled, db, seed, no_cache)
    estimated = total_cost(rows)
    refusal = check_estimate(estimated, budget, [(r.node, r.usage.cost) for r in rows])
    if refusal:
        raise UserError(f"{compiled.loaded.path}: {refusal}; nothing was run")
    warning = unpriced_warning(estimated)
    if warning:
        click.secho(warning, fg="yellow", err=True)


def register(main: click.Group) -> None:
    main.add_command(estimate)
