"""`genarun experiments list/show` and `genarun tda compute/compare/plots`."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from genarun.cli.common import WholeNumber, db_option, handle_errors, limit_option, with_db


@contextlib.contextmanager
def writing_to(path: Path) -> Iterator[None]:
    """A folder or file that cannot be written is the user's to fix, with its reason, not an
    internal error with a traceback hint."""
    from genarun.errors import UserError

    try:
        yield
    except OSError as exc:
        where = exc.filename or path
        raise UserError(
            f"cannot write {where}: {exc.strerror or exc} (choose another --out or --csv path)"
        ) from None


@click.group()
def experiments() -> None:
    """List experiments (the runs of one tree's matrix) and show their progress."""


@experiments.command("list")
@db_option
@limit_option
@handle_errors
def experiments_list(db: Path | None, limit: int) -> None:
    """The newest experiments in the database."""
    from genarun.experiments.report import experiment_rows, experiments_table
    from genarun.store.db import Store

    store = Store.existing(db)
    rows = experiment_rows(store, limit)
    click.echo(experiments_table(rows) if rows else f"no experiments in {store.path}")


@experiments.command("show")
@click.argument("ref", metavar="EXPERIMENT")
@db_option
@click.option("--json", "as_json", is_flag=True, help="The progress and runs as JSON.")
@handle_errors
def experiments_show(ref: str, db: Path | None, as_json: bool) -> None:
    """An experiment (id, unique prefix or `latest`): progress of invocations, embeddings and
    persistence diagrams, and each run's trajectory."""
    from genarun.experiments.report import experiment_progress, experiment_report
    from genarun.store.db import Store
    from genarun.store.trajectories import resolve_experiment

    store = Store.existing(db)
    progress = experiment_progress(store, resolve_experiment(store, ref))
    click.echo(
        json.dumps(progress, indent=2, default=str)
        if as_json
        else with_db(experiment_report(progress), db)
    )


@click.group()
def tda() -> None:
    """Topological data analysis of trajectories: persistence diagrams, distances, plots.

    RUN|EXPERIMENT: a run id or prefix, an experiment id or prefix, `latest` (the newest
    experiment) or `all` (every run in the database)."""


@tda.command("compute")
@click.argument("refs", nargs=-1, required=True, metavar="RUN|EXPERIMENT...")
@db_option
@click.option(
    "--maxdim",
    type=WholeNumber(0, 3),
    default=1,
    show_default=True,
    help="Highest homology dimension.",
)
@click.option(
    "--embedding",
    "models",
    multiple=True,
    metavar="MODEL",
    help="Only this embedding model (repeatable).",
)
@click.option("--force", is_flag=True, help="Recompute diagrams that are already stored.")
@handle_errors
def tda_compute(
    refs: tuple[str, ...], db: Path | None, maxdim: int, models: tuple[str, ...], force: bool
) -> None:
    """Compute persistence diagrams (H0..maxdim) of every trajectory and embedding model;
    diagrams already stored are skipped."""
    from genarun.experiments.topology import compute_all
    from genarun.extras import require_extra
    from genarun.store.db import Store

    require_extra("genarun tda compute", "tda", ("gudhi", "ripser", "scipy"))

    store = Store.existing(db)
    run_ids = [r["id"] for r in _runs(store, refs)]

    def report(key: object, fresh: bool) -> None:
        if fresh:
            click.echo(f"  {key.run_id[:8]} {key.node_id}{key.path} {key.model}", err=True)  # type: ignore[attr-defined]

    computed, reused = compute_all(
        store, run_ids, maxdim=maxdim, models=list(models) or None, force=force, on_progress=report
    )
    click.echo(
        f"{computed} diagram{'s' if computed != 1 else ''} computed, {reused} already stored"
    )


@tda.command("compare")
@click.argument("refs", nargs=-1, required=True, metavar="RUN|EXPERIMENT...")
@db_option
@click.option(
    "--embedding",
    "model",
    metavar="MODEL",
    help="Only this embedding model's diagrams (default: each model, one matrix each).",
)
@click.option(
    "--dim",
    type=WholeNumber(0, 3),
    default=1,
    show_default=True,
    help="Homology dimension compared.",
)
@click.option(
    "--metric",
    type=click.Choice(["wasserstein", "bottleneck", "both"]),
    default="both",
    show_default=True,
    help="Which distance: Wasserstein (p=1), bottleneck, or a matrix of each.",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the matrices as CSV (long form: a, b, metric, distance).",
)
@handle_errors
def tda_compare(
    refs: tuple[str, ...],
    db: Path | None,
    model: str | None,
    dim: int,
    metric: str,
    csv_path: Path | None,
) -> None:
    """The Wasserstein (p=1, optimal matching) and bottleneck distances between the diagrams of
    runs' trajectories, as matrices: one per embedding model (--embedding for one)."""
    from genarun.experiments.topology import compare, embedding_models
    from genarun.extras import require_extra
    from genarun.store.db import Store

    require_extra("genarun tda compare", "tda", ("gudhi", "ripser", "scipy"))

    store = Store.existing(db)
    runs = _runs(store, refs)
    chosen_models: list[str | None] = (
        [model] if model else list(embedding_models(store, runs)) or [None]
    )
    results = [compare(store, runs, model=m, dim=dim) for m in chosen_models]
    chosen = ["wasserstein", "bottleneck"] if metric == "both" else [metric]
    if csv_path:
        import csv

        with writing_to(csv_path), csv_path.open("w", newline="") as f:
            writer = csv.writer(f)
            # Labels for people, and each side's trajectory key to join with `export data`.
            writer.writerow(
                [
                    "a",
                    "b",
                    "a_run_id",
                    "a_node_id",
                    "a_path",
                    "b_run_id",
                    "b_node_id",
                    "b_path",
                    "embedding_model",
                    "dim",
                    "metric",
                    "distance",
                ]
            )
            for result in results:
                for name in chosen:
                    m = getattr(result, name)
                    for i, (a, ka) in enumerate(zip(result.labels, result.keys, strict=True)):
                        for j, (b, kb) in enumerate(zip(result.labels, result.keys, strict=True)):
                            writer.writerow(
                                [
                                    a,
                                    b,
                                    ka.run_id,
                                    ka.node_id,
                                    ka.path,
                                    kb.run_id,
                                    kb.node_id,
                                    kb.path,
                                    result.model,
                                    dim,
                                    name,
                                    f"{m[i, j]:.6g}",
                                ]
                            )
        click.echo(f"wrote {csv_path}")
        for result in results:
            note = result.emptiness_note()
            if note:
                click.echo(f"note: {note}", err=True)
        return
    for n, result in enumerate(results):
        ids = [f"[{i}]" for i in range(len(result.labels))]
        click.echo(
            ("\n" if n else "")
            + f"H{dim} diagrams of {result.model_text or result.model} embeddings"
        )
        for i, label in enumerate(result.labels):
            click.echo(f"  [{i}] {label}")
        note = result.emptiness_note()
        if note:
            click.echo(f"\nnote: {note}")
        if all(result.empty):
            continue  # an all-zero matrix would read as "identical"
        for name in chosen:
            m = getattr(result, name)
            click.echo(f"\n{name}")
            width = max(8, *(len(x) for x in ids))
            click.echo(" " * 5 + "".join(x.rjust(width + 1) for x in ids))
            for i, row_id in enumerate(ids):
                click.echo(
                    row_id.ljust(5) + "".join(f"{m[i, j]:>{width + 1}.4f}" for j in range(len(ids)))
                )


@tda.command("plots")
@click.argument("refs", nargs=-1, required=True, metavar="RUN|EXPERIMENT...")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for the PNG files.",
)
@db_option
@click.option(
    "--maxdim",
    type=WholeNumber(0, 3),
    default=1,
    show_default=True,
    help="Highest homology dimension plotted.",
)
@click.option(
    "--drift",
    type=click.Choice(["cosine", "euclidean"]),
    default="cosine",
    show_default=True,
    help="Semantic drift as cosine distance (orthogonal = 1) or as PANIC-TDA's Euclidean "
    "distance between normalised vectors (orthogonal = sqrt 2).",
)
@handle_errors
def tda_plots(refs: tuple[str, ...], out: Path, db: Path | None, maxdim: int, drift: str) -> None:
    """PNG plots: persistence diagrams, entropy grouped by each matrix key and embedding model,
    semantic drift over the steps, trajectories in 2-D."""
    from genarun.experiments.plots import experiment_plots
    from genarun.extras import require_extra

    require_extra("genarun tda plots", "tda", ("gudhi", "ripser", "scipy", "matplotlib"))
    from genarun.store.db import Store

    store = Store.existing(db)
    runs = _runs(store, refs)
    with writing_to(out):
        written = experiment_plots(store, runs, out, maxdim=maxdim, drift=drift)  # type: ignore[arg-type]
    pictures = sum(1 for p in written if p.suffix == ".png")
    click.echo(f"wrote {pictures} plots to {out}, each with its data as CSV beside it")


def _runs(store: object, refs: tuple[str, ...]) -> list[dict]:
    from genarun.store.trajectories import run_or_experiment_runs

    runs: dict[str, dict] = {}
    for ref in refs:
        for r in run_or_experiment_runs(store, ref):  # type: ignore[arg-type]
            runs[r["id"]] = r
    return list(runs.values())


@click.group()
def export() -> None:
    """Export runs: images with their metadata, data tables for pandas and polars.

    RUN|EXPERIMENT: a run id or prefix, an experiment id or prefix, `latest` (the newest
    experiment) or `all` (every run in the database)."""


@export.command("images")
@click.argument("refs", nargs=-1, required=True, metavar="RUN|EXPERIMENT...")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("exported-images"),
    show_default=True,
    help="Folder for the images.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["png", "jpeg", "webp"]),
    default="png",
    show_default=True,
    help="Image file format (the metadata goes into each).",
)
@click.option(
    "--every",
    type=WholeNumber(1),
    default=1,
    show_default=True,
    help="Only every Nth image of each trajectory (its 1st, N+1th, ...).",
)
@click.option("--limit", type=WholeNumber(1), help="At most this many images in all.")
@db_option
@handle_errors
def export_images(
    refs: tuple[str, ...], out: Path, fmt: str, every: int, limit: int | None, db: Path | None
) -> None:
    """Write the images of trajectories and of image nodes with prompt, seed, model, step and
    run in their metadata."""
    from genarun.errors import StoreError
    from genarun.experiments.exports import export_images as write_images
    from genarun.store.db import Store

    store = Store.existing(db)
    total = 0
    with writing_to(out):
        for run in _runs(store, refs):
            left = None if limit is None else limit - total
            if left == 0:
                break
            total += len(write_images(store, run, out, fmt, every=every, limit=left))
    if not total:  # asked for images, and there are none: not a success
        raise StoreError(
            "no images in these runs (image nodes, and cycle nodes with an image model, make "
            "them); nothing was written"
        )
    click.echo(f"wrote {total} images to {out}")


@export.command("data")
@click.argument("refs", nargs=-1, required=True, metavar="RUN|EXPERIMENT...")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("exported-data"),
    show_default=True,
    help="Folder for the tables.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["parquet", "csv"]),
    default="parquet",
    show_default=True,
    help="Parquet or CSV files (both written with pyarrow: genarun[data]).",
)
@db_option
@handle_errors
def export_data(refs: tuple[str, ...], out: Path, fmt: str, db: Path | None) -> None:
    """Write runs, invocations, embeddings and persistence diagrams as Parquet or CSV tables."""
    from genarun.experiments.exports import data_tables, write_tables
    from genarun.extras import require_extra
    from genarun.store.db import Store

    require_extra("genarun export data", "data")

    store = Store.existing(db)
    tables = data_tables(store, _runs(store, refs))
    with writing_to(out):
        written = write_tables(tables, out, fmt)
    for path in written:
        click.echo(f"wrote {path} ({len(tables[path.stem])} rows)")
    sys.stdout.flush()


def register(main: click.Group) -> None:
    main.add_command(experiments)
    main.add_command(tda)
    main.add_command(export)
