"""`genarun tda factors`: which matrix key explains the most of how trajectories differ."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from genarun.cli.common import WholeNumber, db_option, handle_errors

if TYPE_CHECKING:
    from genarun.analysis.factors import Share
    from genarun.experiments.factors import FactorReport


@click.command("factors")
@click.argument("refs", nargs=-1, required=True, metavar="RUN|EXPERIMENT...")
@db_option
@click.option(
    "--embedding",
    "model",
    metavar="MODEL",
    help="Only this embedding model's trajectories (default: each model, one table each).",
)
@click.option(
    "--dim",
    type=WholeNumber(0, 3),
    default=1,
    show_default=True,
    help="Homology dimension of the Wasserstein distances (entropy: H0 up to it).",
)
@click.option(
    "--permutations",
    type=WholeNumber(0, 100_000),
    default=999,
    show_default=True,
    help="Label shuffles for each p-value (0: shares only, no p-values).",
)
@click.option(
    "--seed",
    type=WholeNumber(),
    default=0,
    show_default=True,
    help="Seed of the shuffles (the same seed gives the same p-values).",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the table as CSV (one row per factor, measure and embedding model).",
)
@click.option("--json", "as_json", is_flag=True, help="The reports as JSON.")
@handle_errors
def tda_factors(
    refs: tuple[str, ...],
    db: Path | None,
    model: str | None,
    dim: int,
    permutations: int,
    seed: int,
    csv_path: Path | None,
    as_json: bool,
) -> None:
    """Which matrix key (network, each model of it, prompt, seed...) explains the most of how
    the trajectories differ: per key, the share of the persistence entropy's variance (eta^2)
    and of the Wasserstein distances between diagrams (PERMANOVA R^2), with permutation
    p-values. Largest share of the topology first."""
    from genarun.cli.experiments import _runs, writing_to
    from genarun.experiments.factors import factor_reports
    from genarun.experiments.topology import embedding_models
    from genarun.extras import require_extra
    from genarun.store.db import Store

    require_extra("genarun tda factors", "tda", ("gudhi", "ripser", "scipy"))
    store = Store.existing(db)
    runs = _runs(store, refs)
    models = [model] if model else embedding_models(store, runs)
    if not models:
        from genarun.errors import StoreError
        from genarun.experiments.topology import NO_TRAJECTORIES

        raise StoreError(NO_TRAJECTORIES)
    reports = factor_reports(
        store, runs, models=models, dim=dim, permutations=permutations, seed=seed
    )
    if csv_path:
        with writing_to(csv_path), csv_path.open("w", newline="") as f:
            _write_csv(csv.writer(f), reports)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in reports], indent=2))
        return
    for n, report in enumerate(reports):
        click.echo(("\n" if n else "") + _render(report))
    click.echo(
        "\nshares are one key at a time: in a full matrix with as many runs per combination, "
        "the keys' shares add up, and the rest is their interactions and each run's randomness"
    )
    if csv_path:
        click.echo(f"\nwrote {csv_path}")


def _cell(share: Share, with_p: bool) -> tuple[str, str]:
    if share.value is None:
        return "-", ""
    return f"{share.value:.3f}", (f"{share.p:.3f}" if with_p and share.p is not None else "")


def _render(report: FactorReport) -> str:
    with_p = report.permutations > 0
    head = [
        f"{report.trajectories} trajectories embedded by {report.model_text}; "
        + (
            f"p-values from {report.permutations} label shuffles"
            if with_p
            else "no p-values (--permutations 0)"
        )
    ]
    if report.note:
        head.append(f"note: {report.note}")
    columns = ["KEY", "VALUES"]
    for d in range(report.dim + 1):
        columns += [f"H{d} ENTROPY η²", "p"]
    columns += [f"H{report.dim} WASSERSTEIN R²", "p"]
    table = [columns]
    undefined: list[str] = []
    for row in report.rows:
        cells = [row.key, str(len(row.values))]
        for share in [*row.entropy, row.topology]:
            cells += list(_cell(share, with_p))
        table.append(cells)
        whys = {s.why for s in [*row.entropy, row.topology] if s.why}
        undefined += [f"{row.key}: {why}" for why in sorted(whys)]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    out = [*head, "", *lines]
    if undefined:
        out.append("- (undefined): " + "; ".join(undefined))
    if report.constant:
        out.append(f"the same for every trajectory: {', '.join(report.constant)}")
    best = report.rows[0]
    if best.topology.value is not None:
        p = f", p {best.topology.p:.3f}" if with_p and best.topology.p is not None else ""
        out.append(
            f"largest share of the topology (H{report.dim} Wasserstein): {best.key} "
            f"(R² {best.topology.value:.3f}{p})"
        )
    elif all(s.value is None for row in report.rows for s in [*row.entropy, row.topology]):
        out.append(
            "no share is defined: give each value several trajectories (a matrix with another "
            "key, such as several seeds per prompt)"
        )
    return "\n".join(out)


def _write_csv(w: Any, reports: list[FactorReport]) -> None:
    w.writerow(["embedding_model", "key", "values", "measure", "dim", "share", "p", "undefined"])
    for report in reports:
        for row in report.rows:
            measures = [("entropy_eta2", d, s) for d, s in enumerate(row.entropy)]
            measures.append(("wasserstein_r2", report.dim, row.topology))
            for measure, d, share in measures:
                w.writerow(
                    [
                        report.model,
                        row.key,
                        len(row.values),
                        measure,
                        d,
                        "" if share.value is None else f"{share.value:.6g}",
                        "" if share.p is None else f"{share.p:.6g}",
                        share.why,
                    ]
                )


def register(main: click.Group) -> None:
    from genarun.cli.experiments import tda

    tda.add_command(tda_factors)
