"""`genarun experiments list/show` and `genarun tda compute/compare/plots`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from genarun.cli.common import db_option, handle_errors


@click.group()
def experiments() -> None:
    """List experiments (the runs of one tree's matrix) and show their progress."""


@experiments.command("list")
@db_option
@click.option("--limit", type=int, default=30, show_default=True)
@handle_errors
def experiments_list(db: Path | None, limit: int) -> None:
    """The newest experiments in the database."""
    from genarun.experiments.report import experiments_table
    from genarun.store.db import Store
    from genarun.store.trajectories import list_experiments

    store = Store(db)
    rows = list_experiments(store, limit)
    click.echo(experiments_table(rows, store) if rows else f"no experiments in {store.path}")


@experiments.command("show")
@click.argument("ref", metavar="EXPERIMENT")
@db_option
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def experiments_show(ref: str, db: Path | None, as_json: bool) -> None:
    """An experiment (id, unique prefix or `latest`): progress of invocations, embeddings and
    persistence diagrams, and each run's trajectory."""
    from genarun.experiments.report import experiment_progress, experiment_report
    from genarun.store.db import Store
    from genarun.store.trajectories import resolve_experiment

    store = Store(db)
    progress = experiment_progress(store, resolve_experiment(store, ref))
    click.echo(json.dumps(progress, indent=2, default=str) if as_json else experiment_report(progress))


@click.group()
def tda() -> None:
    """Topological data analysis of trajectories: persistence diagrams, distances, plots."""


@tda.command("compute")
@click.argument("refs", nargs=-1, required=True, metavar="RUN|EXPERIMENT...")
@db_option
@click.option("--maxdim", type=click.IntRange(0, 3), default=1, show_default=True, help="Highest homology dimension.")
@click.option("--embedding", "models", multiple=True, metavar="MODEL", help="Only this embedding model (repeatable).")
@click.option("--force", is_flag=True, help="Recompute diagrams that are already stored.")
@handle_errors
def tda_compute(refs: tuple[str, ...], db: Path | None, maxdim: int, models: tuple[str, ...], force: bool) -> None:
    """Compute persistence diagrams (H0..maxdim) of every trajectory and embedding model;
    diagrams already stored are skipped."""
    from genarun.experiments.topology import compute_all
    from genarun.store.db import Store

    store = Store(db)
    run_ids = [r["id"] for r in _runs(store, refs)]

    def report(key: object, fresh: bool) -> None:
        if fresh:
            click.echo(f"  {key.run_id[:8]} {key.node_id}{key.path} {key.model}", err=True)  # type: ignore[attr-defined]

    computed, reused = compute_all(store, run_ids, maxdim=maxdim, models=list(models) or None, force=force, on_progress=report)
    click.echo(f"{computed} diagram{'s' if computed != 1 else ''} computed, {reused} already stored")


@tda.command("compare")
@click.argument("refs", nargs=-1, required=True, metavar="RUN|EXPERIMENT...")
@db_option
@click.option("--embedding", "model", metavar="MODEL", help="Which embedding model's diagrams (needed when there are several).")
@click.option("--dim", type=click.IntRange(0, 3), default=1, show_default=True, help="Homology dimension compared.")
@click.option("--metric", type=click.Choice(["wasserstein", "bottleneck", "both"]), default="both", show_default=True)
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the matrices as CSV (long form: a, b, metric, distance).")
@handle_errors
def tda_compare(refs: tuple[str, ...], db: Path | None, model: str | None, dim: int, metric: str, csv_path: Path | None) -> None:
    """The Wasserstein (p=1, optimal matching) and bottleneck distances between the diagrams of
    runs' trajectories, as matrices."""
    from genarun.experiments.topology import compare
    from genarun.store.db import Store

    store = Store(db)
    result = compare(store, _runs(store, refs), model=model, dim=dim)
    matrices = {"wasserstein": result.wasserstein, "bottleneck": result.bottleneck}
    chosen = list(matrices) if metric == "both" else [metric]
    if csv_path:
        import csv

        with csv_path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["a", "b", "embedding_model", "dim", "metric", "distance"])
            for name in chosen:
                m = matrices[name]
                for i, a in enumerate(result.labels):
                    for j, b in enumerate(result.labels):
                        writer.writerow([a, b, result.model, dim, name, f"{m[i, j]:.6g}"])
        click.echo(f"wrote {csv_path}")
        return
    ids = [f"[{i}]" for i in range(len(result.labels))]
    click.echo(f"H{dim} diagrams of {result.model} embeddings")
    for i, label in enumerate(result.labels):
        click.echo(f"  [{i}] {label}")
    for name in chosen:
        m = matrices[name]
        click.echo(f"\n{name}")
        width = max(8, *(len(x) for x in ids))
        click.echo(" " * 5 + "".join(x.rjust(width + 1) for x in ids))
        for i, row_id in enumerate(ids):
            click.echo(row_id.ljust(5) + "".join(f"{m[i, j]:>{width + 1}.4f}" for j in range(len(ids))))


@tda.command("plots")
@click.argument("refs", nargs=-1, required=True, metavar="RUN|EXPERIMENT...")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder for the PNG files.")
@db_option
@click.option("--maxdim", type=click.IntRange(0, 3), default=1, show_default=True)
@handle_errors
def tda_plots(refs: tuple[str, ...], out: Path, db: Path | None, maxdim: int) -> None:
    """PNG plots: persistence diagrams, entropy grouped by each matrix key and embedding model,
    semantic drift over the steps, trajectories in 2-D."""
    from genarun.experiments.plots import experiment_plots
    from genarun.store.db import Store

    store = Store(db)
    written = experiment_plots(store, _runs(store, refs), out, maxdim=maxdim)
    click.echo(f"wrote {len(written)} plots to {out}")


def _runs(store: object, refs: tuple[str, ...]) -> list[dict]:
    from genarun.store.trajectories import run_or_experiment_runs

    runs: dict[str, dict] = {}
    for ref in refs:
        for r in run_or_experiment_runs(store, ref):  # type: ignore[arg-type]
            runs[r["id"]] = r
    return list(runs.values())


@click.group()
def export() -> None:
    """Export runs: images with their metadata, data tables for pandas and polars."""


@export.command("images")
@click.argument("refs", nargs=-1, required=True, metavar="RUN|EXPERIMENT...")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("exported-images"), show_default=True)
@click.option("--format", "fmt", type=click.Choice(["png", "jpeg", "webp"]), default="png", show_default=True)
@db_option
@handle_errors
def export_images(refs: tuple[str, ...], out: Path, fmt: str, db: Path | None) -> None:
    """Write the images of trajectories with prompt, seed, model, step and run in their metadata."""
    from genarun.experiments.exports import export_images as write_images
    from genarun.store.db import Store

    store = Store(db)
    total = 0
    for run in _runs(store, refs):
        total += len(write_images(store, run, out, fmt))
    click.echo(f"wrote {total} images to {out}")


@export.command("data")
@click.argument("refs", nargs=-1, required=True, metavar="RUN|EXPERIMENT...")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("exported-data"), show_default=True)
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True)
@db_option
@handle_errors
def export_data(refs: tuple[str, ...], out: Path, fmt: str, db: Path | None) -> None:
    """Write runs, invocations, embeddings and persistence diagrams as Parquet or CSV tables."""
    from genarun.experiments.exports import data_tables, write_tables
    from genarun.store.db import Store

    store = Store(db)
    tables = data_tables(store, _runs(store, refs))
    for path in write_tables(tables, out, fmt):
        click.echo(f"wrote {path} ({len(tables[path.stem])} rows)")
    sys.stdout.flush()


def register(main: click.Group) -> None:
    main.add_command(experiments)
    main.add_command(tda)
    main.add_command(export)
