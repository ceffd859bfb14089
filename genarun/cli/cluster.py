"""`genarun cluster RUN|EXPERIMENT...` and `cluster list/show/delete/plots`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from genarun.cli.common import WholeNumber, db_option, handle_errors, limit_option


class _ClusterGroup(click.Group):
    """`genarun cluster REFS...` computes; `genarun cluster list|show|delete|plots` manage.
    A first argument that is no subcommand (a run or experiment id, latest, all) computes."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["compute", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_ClusterGroup)
def cluster() -> None:
    """Cluster trajectory steps by their embeddings (HDBSCAN), per embedding model.

    `genarun cluster RUN|EXPERIMENT... [--embedding M] [--min-cluster-size N]` clusters and
    stores the labels; `cluster list`, `cluster show ID`, `cluster plots ID --out DIR`,
    `cluster delete ID` use them. `export data` writes the labels and transitions."""


@cluster.command("compute")
@click.argument("refs", nargs=-1, required=True, metavar="RUN|EXPERIMENT...")
@db_option
@click.option(
    "--embedding",
    "models",
    multiple=True,
    metavar="MODEL",
    help="Only this embedding model (repeatable).",
)
@click.option(
    "--min-cluster-size",
    type=WholeNumber(2),
    default=5,
    show_default=True,
    help="Fewest steps a cluster holds (HDBSCAN); smaller steps are noise.",
)
@click.option(
    "--min-samples",
    type=WholeNumber(1),
    default=None,
    help="HDBSCAN's min_samples (default: the minimum cluster size).",
)
@click.option("--top", type=WholeNumber(1), default=10, show_default=True, help="Clusters shown.")
@handle_errors
def cluster_compute(
    refs: tuple[str, ...],
    db: Path | None,
    models: tuple[str, ...],
    min_cluster_size: int,
    min_samples: int | None,
    top: int,
) -> None:
    """Cluster the embedded steps of these runs (one clustering per embedding model)."""
    from genarun.cli.experiments import _runs
    from genarun.experiments.clusters import cluster_runs
    from genarun.extras import require_extra
    from genarun.store.db import Store

    require_extra("genarun cluster", "tda", ("sklearn",))
    store = Store.existing(db)
    runs = _runs(store, refs)
    store = Store(store.path, writing=True)
    made = cluster_runs(
        store,
        runs,
        models=list(models) or None,
        min_cluster_size=min_cluster_size,
        min_samples=min_samples,
    )
    folders = {r["id"]: r.get("out_dir") or "" for r in runs}
    for n, m in enumerate(made):
        noise = m.sizes.get(-1, 0)
        clusters = len(m.sizes) - (1 if noise else 0)
        click.echo(
            ("\n" if n else "")
            + f"clustering {m.clustering_id[:8]}: {m.points} '{m.model}' steps of {len(runs)} "
            f"run{'s' if len(runs) != 1 else ''} -> {clusters} cluster{'s' if clusters != 1 else ''}, {noise} noise"
        )
        click.echo(f"  method: {m.method_text}")
        _echo_clusters(m.medoids[:top], folders)
        if len(m.medoids) > top:
            click.echo(
                f"  ... {len(m.medoids) - top} more (`genarun cluster show {m.clustering_id[:8]}`)"
            )


def _echo_clusters(rows: list[dict[str, Any]], folders: dict[str, str]) -> None:
    from genarun.experiments.clusters import medoid_text

    for row in rows:
        click.echo(f"  [{row['label']:>3}] {row['size']:>6}  {medoid_text(row, folders)}")


@cluster.command("list")
@db_option
@limit_option
@handle_errors
def cluster_list(db: Path | None, limit: int) -> None:
    """The newest clusterings."""
    from genarun.store.clusters import list_clusterings
    from genarun.store.db import Store, iso

    store = Store.existing(db)
    rows = list_clusterings(store, limit)
    if not rows:
        click.echo(f"no clusterings in {store.path}")
        return
    click.echo(
        f"{'ID':<10}{'CREATED':<21}{'MODEL':<20}{'RUNS':>5}{'POINTS':>8}{'CLUSTERS':>9}{'NOISE':>7}"
    )
    for r in rows:
        click.echo(
            f"{r['id'][:8]:<10}{iso(r['created']):<21}{r['embedding_model']:<20}"
            f"{len(json.loads(r['run_ids'])):>5}{r['points']:>8}{r['clusters']:>9}{r['noise']:>7}"
        )


@cluster.command("show")
@click.argument("ref", metavar="CLUSTERING")
@db_option
@click.option("--json", "as_json", is_flag=True, help="The clustering as JSON.")
@handle_errors
def cluster_show(ref: str, db: Path | None, as_json: bool) -> None:
    """A clustering (id, prefix or `latest`): method, every cluster with its medoid output, and
    the most frequent transitions between clusters."""
    from sqlalchemy import select

    from genarun.experiments.clusters import transition_tables
    from genarun.store.clusters import clusters_of, resolve_clustering
    from genarun.store.db import Store, runs

    store = Store.existing(db)
    found = resolve_clustering(store, ref)
    rows = sorted(clusters_of(store, found["id"]), key=lambda r: (-r["size"], r["label"]))
    run_ids = json.loads(found["run_ids"])
    folders = {
        r.id: r.out_dir or ""
        for r in store.conn.execute(select(runs.c.id, runs.c.out_dir).where(runs.c.id.in_(run_ids)))
    }
    tables = transition_tables(store, found["id"])
    pairs: dict[tuple[int, int], int] = {}
    for t in tables["cluster_transitions"]:
        key = (t["from_cluster"], t["to_cluster"])
        pairs[key] = pairs.get(key, 0) + t["count"]
    moves = sorted(((k, v) for k, v in pairs.items() if k[0] != k[1]), key=lambda kv: -kv[1])
    method = json.loads(found["method"])
    if as_json:
        body = {
            **{k: v for k, v in found.items() if k not in ("method", "run_ids")},
            "run_ids": run_ids,
            "method": method,
            "clusters": rows,
            "transitions": [
                {"from": a, "to": b, "count": n} for (a, b), n in sorted(pairs.items())
            ],
        }
        click.echo(json.dumps(body, indent=2, default=str))
        return
    click.echo(
        f"clustering {found['id']} of {found['points']} '{found['embedding_model']}' steps "
        f"({len(run_ids)} runs): {found['clusters']} clusters, {found['noise']} noise"
    )
    click.echo(f"method: {method.get('text')}")
    _echo_clusters(rows, folders)
    if moves:
        click.echo("most frequent moves between clusters:")
        for (a, b), n in moves[:10]:
            click.echo(f"  {a:>3} -> {b:<3} {n}")


@cluster.command("delete")
@click.argument("ref", metavar="CLUSTERING")
@db_option
@handle_errors
def cluster_delete(ref: str, db: Path | None) -> None:
    """Delete a clustering with its labels."""
    from genarun.store.clusters import delete_clustering, resolve_clustering
    from genarun.store.db import Store

    store = Store.existing(db)
    found = resolve_clustering(store, ref)
    store = Store(store.path, writing=True)
    delete_clustering(store, found["id"])
    click.echo(f"deleted clustering {found['id'][:8]} ({found['points']} labels)")


@cluster.command("plots")
@click.argument("ref", metavar="CLUSTERING")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for the PNG files and their CSVs.",
)
@db_option
@handle_errors
def cluster_plots(ref: str, out: Path, db: Path | None) -> None:
    """A timeline of clusters per trajectory and the transition matrix, PNG with a CSV of
    each plot's data beside it."""
    from genarun.cli.experiments import writing_to
    from genarun.experiments.cluster_plots import clustering_plots
    from genarun.extras import require_extra

    require_extra("genarun cluster plots", "tda", ("matplotlib",))
    from genarun.store.clusters import resolve_clustering
    from genarun.store.db import Store

    store = Store.existing(db)
    found = resolve_clustering(store, ref)
    with writing_to(out):
        written = clustering_plots(store, found, out)
    for path in written:
        click.echo(f"wrote {path}")


def register(main: click.Group) -> None:
    main.add_command(cluster)
