"""`genarun dynamics ftle|changes|noise`: divergence and regimes of stored trajectories."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from genarun.cli.common import NumberRange, WholeNumber, db_option, device_option, handle_errors


@click.group()
def dynamics() -> None:
    """Divergence of trajectories: finite-time Lyapunov exponents between runs, change points
    along each run, and the sampling-noise floor to compare drift with.

    RUN|EXPERIMENT: a run id or prefix, an experiment id or prefix, `latest` or `all`."""


embedding_option = click.option(
    "--embedding", "model", metavar="MODEL", help="The embedding model (default: the only one)."
)


def _model(store: Any, runs: list[dict[str, Any]], model: str | None) -> str:
    from genarun.errors import UserError
    from genarun.experiments.clusters import step_models

    present = step_models(store, [r["id"] for r in runs])
    if not present:
        raise UserError("these runs have no embedded trajectory steps (a cycle with `embed:`)")
    if model is None:
        if len(present) > 1:
            raise UserError(
                f"these runs have several embedding models ({', '.join(present)}): choose one with --embedding"
            )
        return present[0]
    if model not in present:
        raise UserError(f"no '{model}' embeddings in these runs; they have: {', '.join(present)}")
    return model


def _write_csv(path: Path, rows: list[dict[str, Any]], header: list[str]) -> None:
    import csv

    from genarun.cli.experiments import writing_to

    with writing_to(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            for row in rows:
                writer.writerow(
                    {k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()}
                )


@dynamics.command("ftle")
@click.argument("refs", nargs=-1, required=True, metavar="RUN|EXPERIMENT...")
@db_option
@embedding_option
@click.option(
    "--paraphrases",
    is_flag=True,
    help="Compare runs of one network and seed whose prompts differ (paraphrases of one prompt).",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Every pair's exponent as CSV.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for ftle.png and its CSV.",
)
@handle_errors
def dynamics_ftle(
    refs: tuple[str, ...],
    db: Path | None,
    model: str | None,
    paraphrases: bool,
    csv_path: Path | None,
    out: Path | None,
) -> None:
    """Finite-time Lyapunov exponents: for every pair of runs with the same network and prompt
    (differing in seed), the slope of log distance over steps, with r squared; per group the
    mean over pairs and one line through all pairs' points (pooled)."""
    from genarun.cli.experiments import _runs, writing_to
    from genarun.experiments.dynamics import ftle_groups, ftle_rows
    from genarun.store.db import Store

    store = Store.existing(db)
    runs = _runs(store, refs)
    chosen = _model(store, runs, model)
    results = ftle_groups(store, runs, chosen, paraphrases=paraphrases)
    for g in results:
        r = g.result
        click.echo(
            f"{g.network} | {g.prompt[:60]}: {g.runs} runs, {len(r.pairs)} pairs; exponent "
            f"{_f(r.mean)} ± {_f(r.std)} per step (pooled {_f(r.pooled)}, r² {_f(r.pooled_r_squared, 3)})"
        )
        for p in r.pairs:
            click.echo(
                f"    {p.a} ~ {p.b}: {_f(p.exponent)} (r² {_f(p.r_squared, 3)}, {p.steps} steps)"
            )
    rows = ftle_rows(results)
    header = list(rows[0]) if rows else []
    if csv_path:
        _write_csv(csv_path, rows, header)
        click.echo(f"wrote {csv_path}")
    if out:
        from genarun.experiments.dynamics_plots import plot_ftle

        with writing_to(out):
            for path in plot_ftle(results, rows, out):
                click.echo(f"wrote {path}")


def _f(x: float, digits: int = 4) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.{digits}f}"


@dynamics.command("changes")
@click.argument("refs", nargs=-1, required=True, metavar="RUN|EXPERIMENT...")
@db_option
@embedding_option
@click.option(
    "--penalty",
    type=NumberRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="PELT's penalty: higher finds fewer changes.",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Every change point as CSV.",
)
@handle_errors
def dynamics_changes(
    refs: tuple[str, ...], db: Path | None, model: str | None, penalty: float, csv_path: Path | None
) -> None:
    """Change points along each trajectory (ruptures' PELT, RBF cost on normalised
    embeddings): the steps where a new regime begins."""
    from genarun.cli.experiments import _runs
    from genarun.experiments.dynamics import change_point_rows
    from genarun.extras import require_extra
    from genarun.store.db import Store

    require_extra("genarun dynamics changes", "tda", ("ruptures",))
    store = Store.existing(db)
    runs = _runs(store, refs)
    chosen = _model(store, runs, model)
    rows = change_point_rows(store, runs, chosen, penalty=penalty)
    for r in rows:
        found = ", ".join(map(str, r["change_points"])) or "none"
        click.echo(
            f"{r['run_id'][:8]} {r['node_id']}: {r['steps']} steps, regimes begin at step {found}"
        )
    if csv_path:
        _write_csv(
            csv_path,
            rows,
            ["run_id", "node_id", "path", "embedding_model", "steps", "change_points"],
        )
        click.echo(f"wrote {csv_path}")


@dynamics.command("noise")
@click.argument("ref", metavar="RUN")
@db_option
@embedding_option
@click.option(
    "--step", type=WholeNumber(0), default=0, show_default=True, help="The step regenerated."
)
@click.option(
    "--seeds",
    type=WholeNumber(2, 256),
    default=8,
    show_default=True,
    help="How many seeds the step is regenerated with.",
)
@device_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for drift_vs_noise.png and its CSV.",
)
@handle_errors
def dynamics_noise(
    ref: str,
    db: Path | None,
    model: str | None,
    step: int,
    seeds: int,
    device: str | None,
    out: Path | None,
) -> None:
    """The sampling-noise floor: regenerate one step of a run from its stored input under
    several seeds, embed each, and report their spread, to compare the run's drift with."""
    from genarun.cli.experiments import writing_to
    from genarun.experiments.dynamics import noise_floor_of
    from genarun.store.db import Store

    store = Store.existing(db)
    run = store.resolve_run(ref)
    chosen = _model(store, [run], model)
    report = noise_floor_of(store, run, step=step, seeds=seeds, embedding=chosen, device=device)
    f = report.floor
    click.echo(
        f"step {report.step} ({report.model}) regenerated under {f.samples} seeds, embedded by '{chosen}':\n"
        f"  spread between them: mean {_f(f.pairwise_mean)}, max {_f(f.pairwise_max)}\n"
        f"  distance to the stored output: mean {_f(f.to_original_mean)}\n"
        f"  (drift distance: ||a/|a| - b/|b|||, orthogonal = √2)"
    )
    if report.drift:
        above = sum(1 for _, d in report.drift if d > f.pairwise_mean)
        click.echo(
            f"  the run's step-to-step drift is above the floor at {above} of {len(report.drift)} steps"
        )
    if out:
        from genarun.experiments.dynamics_plots import plot_drift_vs_noise

        with writing_to(out):
            for path in plot_drift_vs_noise(report, run, out):
                click.echo(f"wrote {path}")


def register(main: click.Group) -> None:
    main.add_command(dynamics)
