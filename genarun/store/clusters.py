"""Tables of clusterings (`genarun cluster`): one row per clustering, one per cluster (with its
medoid) and one label per clustered step. Registered on the store's metadata, so every
database gets them when opened."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
)

from genarun.errors import StoreError
from genarun.store.db import metadata, new_id

if TYPE_CHECKING:
    from genarun.store.db import Store

clusterings = Table(
    "clusterings",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("created", Float, nullable=False),
    Column("embedding_model", String, nullable=False),
    Column("run_ids", Text, nullable=False),  # JSON list of the runs clustered
    Column("method", Text, nullable=False),  # JSON: analysis.clustering.Method.to_json()
    Column("points", Integer, nullable=False),
    Column("clusters", Integer, nullable=False),
    Column("noise", Integer, nullable=False),
    Column("duration", Float),
)

clusters = Table(
    "clusters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("clustering_id", String(32), ForeignKey("clusterings.id"), nullable=False, index=True),
    Column("label", Integer, nullable=False),
    Column("size", Integer, nullable=False),
    # The medoid step: its output (a text, or an image path relative to its run's folder)
    # names the cluster for people.
    Column("medoid_run_id", String(32)),
    Column("medoid_node_id", String),
    Column("medoid_path", String),
    Column("medoid_step", Integer),
    Column("medoid_kind", String),
    Column("medoid_value", Text),
)

cluster_labels = Table(
    "cluster_labels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("clustering_id", String(32), ForeignKey("clusterings.id"), nullable=False),
    Column("embedding_id", Integer),
    Column("run_id", String(32), nullable=False),
    Column("node_id", String, nullable=False),
    Column("path", String, nullable=False),
    Column("step", Integer, nullable=False),
    Column("label", Integer, nullable=False),  # -1: noise
    Index("ix_cluster_labels_key", "clustering_id", "run_id", "node_id", "path", "step"),
)

TABLES = (clusterings, clusters, cluster_labels)


def save_clustering(
    store: Store,
    *,
    model: str,
    run_ids: list[str],
    method: dict[str, Any],
    rows: list[dict[str, Any]],
    summary: list[dict[str, Any]],
    duration: float,
) -> str:
    """Store a clustering, its clusters and its labels in one commit; returns its id."""
    clustering_id = new_id()
    noise = sum(1 for r in rows if r["label"] == -1)
    with store.transaction():
        store._write(
            insert(clusterings).values(
                id=clustering_id,
                created=time.time(),
                embedding_model=model,
                run_ids=json.dumps(run_ids),
                method=json.dumps(method),
                points=len(rows),
                clusters=len(summary),
                noise=noise,
                duration=duration,
            )
        )
        if summary:
            store._write(insert(clusters), [{**s, "clustering_id": clustering_id} for s in summary])
        if rows:
            store._write(
                insert(cluster_labels), [{**r, "clustering_id": clustering_id} for r in rows]
            )
    return clustering_id


def list_clusterings(store: Store, limit: int = 50) -> list[dict[str, Any]]:
    stmt = select(clusterings).order_by(clusterings.c.created.desc()).limit(limit)
    return [dict(r) for r in store.conn.execute(stmt).mappings()]


def resolve_clustering(store: Store, ref: str) -> dict[str, Any]:
    """A clustering by id, unique prefix, or `latest`."""
    if ref == "latest":
        found = list_clusterings(store, 1)
        if not found:
            raise StoreError(
                f"no clusterings in {store.path}: run `genarun cluster EXPERIMENT` first"
            )
        return found[0]
    prefix = ref.strip().lower()
    rows = (
        store.conn.execute(select(clusterings).where(clusterings.c.id.like(prefix + "%")).limit(6))
        .mappings()
        .all()
        if prefix.isalnum()
        else []
    )
    if not rows:
        raise StoreError(
            f"no clustering matches '{ref}' in {store.path} (see `genarun cluster list`)"
        )
    if len(rows) > 1:
        raise StoreError(f"'{ref}' matches several clusterings: give more characters of the id")
    return dict(rows[0])


def clusters_of(store: Store, clustering_id: str) -> list[dict[str, Any]]:
    stmt = (
        select(clusters).where(clusters.c.clustering_id == clustering_id).order_by(clusters.c.label)
    )
    return [dict(r) for r in store.conn.execute(stmt).mappings()]


def labels_of(store: Store, clustering_id: str) -> list[dict[str, Any]]:
    """The labels of a clustering, by trajectory and step."""
    stmt = (
        select(cluster_labels)
        .where(cluster_labels.c.clustering_id == clustering_id)
        .order_by(
            cluster_labels.c.run_id,
            cluster_labels.c.node_id,
            cluster_labels.c.path,
            cluster_labels.c.step,
        )
    )
    return [dict(r) for r in store.conn.execute(stmt).mappings()]


def delete_clustering(store: Store, clustering_id: str) -> None:
    with store.transaction():
        store._write(delete(cluster_labels).where(cluster_labels.c.clustering_id == clustering_id))
        store._write(delete(clusters).where(clusters.c.clustering_id == clustering_id))
        store._write(delete(clusterings).where(clusterings.c.id == clustering_id))
