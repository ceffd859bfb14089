"""Clustering stored trajectories (`genarun cluster`): gather the steps' embeddings of the chosen
runs, per embedding model, cluster them (genarun.analysis.clustering), store labels and medoids;
and the transitions of each trajectory between clusters, for tables and plots."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from genarun.errors import StoreError, UserError
from genarun.store.db import embeddings, trajectory_steps

if TYPE_CHECKING:
    import numpy as np

    from genarun.store.db import Store


@dataclass
class Points:
    """The embedded steps of some runs by one model, in a fixed order."""

    vectors: np.ndarray
    keys: list[dict[str, Any]]  # embedding_id, run_id, node_id, path, step, kind, value


def gather(store: Store, run_ids: list[str], model: str) -> Points:
    """Every trajectory step of these runs embedded by `model` (the start prompt left out)."""
    import numpy as np

    steps = {
        (r.run_id, r.node_id, r.path, r.step): (r.kind, r.value)
        for r in store.conn.execute(
            select(
                trajectory_steps.c.run_id,
                trajectory_steps.c.node_id,
                trajectory_steps.c.path,
                trajectory_steps.c.step,
                trajectory_steps.c.kind,
                trajectory_steps.c.value,
            ).where(trajectory_steps.c.run_id.in_(run_ids))
        )
    }
    stmt = (
        select(
            embeddings.c.id,
            embeddings.c.run_id,
            embeddings.c.node_id,
            embeddings.c.path,
            embeddings.c.item,
            embeddings.c.vector,
        )
        .where(
            embeddings.c.run_id.in_(run_ids), embeddings.c.model == model, embeddings.c.item >= 0
        )
        .order_by(
            embeddings.c.run_id,
            embeddings.c.node_id,
            embeddings.c.path,
            embeddings.c.item,
            embeddings.c.id,
        )
    )
    found: dict[tuple[str, str, str, int], tuple[int, bytes]] = {}
    for row in store.conn.execute(stmt):
        key = (row.run_id, row.node_id, row.path, row.item)
        if key in steps:  # a step embedded again after a crash: the newest vector counts
            found[key] = (row.id, row.vector)
    keys = []
    vectors = []
    for key, (embedding_id, vector) in found.items():
        kind, value = steps[key]
        run_id, node_id, path, step = key
        keys.append(
            {
                "embedding_id": embedding_id,
                "run_id": run_id,
                "node_id": node_id,
                "path": path,
                "step": step,
                "kind": kind,
                "value": value,
            }
        )
        vectors.append(np.frombuffer(vector, dtype="<f4"))
    dims = {len(v) for v in vectors}
    if len(dims) > 1:
        raise StoreError(
            f"the '{model}' embeddings of these runs have different lengths ({sorted(dims)}): "
            "they are not one space; `genarun doctor` finds the odd ones"
        )
    matrix = np.vstack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)
    return Points(matrix, keys)


def step_models(store: Store, run_ids: list[str]) -> list[str]:
    """The embedding models that embedded trajectory steps of these runs."""
    stmt = (
        select(embeddings.c.model)
        .where(embeddings.c.run_id.in_(run_ids), embeddings.c.item >= 0)
        .distinct()
        .order_by(embeddings.c.model)
    )
    return [r.model for r in store.conn.execute(stmt)]


@dataclass
class Made:
    clustering_id: str
    model: str
    method_text: str
    points: int
    sizes: dict[int, int]
    medoids: list[dict[str, Any]]  # the clusters rows, largest first


def cluster_runs(
    store: Store,
    runs: list[dict[str, Any]],
    *,
    models: list[str] | None = None,
    min_cluster_size: int = 5,
    min_samples: int | None = None,
) -> list[Made]:
    """Cluster the runs' steps once per embedding model and store each clustering."""
    from genarun.analysis.clustering import TooFewPoints, cluster
    from genarun.store.clusters import save_clustering

    run_ids = [r["id"] for r in runs]
    present = step_models(store, run_ids)
    if not present:
        raise StoreError(
            "these runs have no embedded trajectory steps (a cycle node with `embed:` makes them)"
        )
    chosen = models or present
    unknown = [m for m in chosen if m not in present]
    if unknown:
        raise UserError(
            f"no '{unknown[0]}' embeddings in these runs; they have: {', '.join(present)}"
        )
    made = []
    plans = []
    for model in chosen:  # every check before anything is stored
        points = gather(store, run_ids, model)
        if len(points.keys) < max(2, min_cluster_size):
            n = len(points.keys)
            raise UserError(
                f"{n} '{model}' embedded step{'s' if n != 1 else ''} in these runs, fewer than "
                f"the minimum cluster size {min_cluster_size}: give --min-cluster-size "
                f"{max(2, n // 2)} or more runs; nothing was stored"
            )
        plans.append((model, points))
    for model, points in plans:
        started = time.perf_counter()
        try:
            result = cluster(
                points.vectors, min_cluster_size=min_cluster_size, min_samples=min_samples
            )
        except TooFewPoints as exc:
            raise UserError(str(exc)) from None
        rows = [
            {
                "embedding_id": k["embedding_id"],
                "run_id": k["run_id"],
                "node_id": k["node_id"],
                "path": k["path"],
                "step": k["step"],
                "label": int(label),
            }
            for k, label in zip(points.keys, result.labels, strict=True)
        ]
        sizes = result.sizes
        summary = []
        for label, index in result.medoids.items():
            k = points.keys[index]
            summary.append(
                {
                    "label": label,
                    "size": sizes[label],
                    "medoid_run_id": k["run_id"],
                    "medoid_node_id": k["node_id"],
                    "medoid_path": k["path"],
                    "medoid_step": k["step"],
                    "medoid_kind": k["kind"],
                    "medoid_value": k["value"],
                }
            )
        clustering_id = save_clustering(
            store,
            model=model,
            run_ids=run_ids,
            method=result.method.to_json(),
            rows=rows,
            summary=summary,
            duration=time.perf_counter() - started,
        )
        made.append(
            Made(
                clustering_id,
                model,
                result.method.text,
                len(rows),
                sizes,
                sorted(summary, key=lambda s: (-s["size"], s["label"])),
            )
        )
    return made


def medoid_text(row: dict[str, Any], run_folders: dict[str, str], width: int = 70) -> str:
    """A cluster's name for people: its medoid's text, or the path of its medoid image."""
    value = row.get("medoid_value") or ""
    if row.get("medoid_kind") == "image":
        folder = run_folders.get(row.get("medoid_run_id") or "")
        return str(Path(folder) / value) if folder else value
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def trajectory_sequences(
    store: Store, clustering_id: str
) -> dict[tuple[str, str, str], list[tuple[int, int]]]:
    """Each trajectory's (step, label) pairs in step order."""
    from genarun.store.clusters import labels_of

    out: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
    for row in labels_of(store, clustering_id):
        out.setdefault((row["run_id"], row["node_id"], row["path"]), []).append(
            (row["step"], row["label"])
        )
    return out


def transition_tables(store: Store, clustering_id: str) -> dict[str, list[dict[str, Any]]]:
    """Per trajectory: run lengths in one cluster (`cluster_runs`) and counts of consecutive
    label pairs (`cluster_transitions`)."""
    from genarun.analysis.clustering import transitions

    runs_rows: list[dict[str, Any]] = []
    pair_rows: list[dict[str, Any]] = []
    for (run_id, node_id, path), pairs in trajectory_sequences(store, clustering_id).items():
        t = transitions([label for _, label in pairs])
        base = {"clustering_id": clustering_id, "run_id": run_id, "node_id": node_id, "path": path}
        at = 0  # index into pairs: a model that embeds only texts labels every other step
        for position, (label, length) in enumerate(t.runs):
            runs_rows.append(
                {
                    **base,
                    "position": position,
                    "cluster": label,
                    "start_step": pairs[at][0],
                    "length": length,
                }
            )
            at += length
        for (a, b), count in t.bigrams.items():
            pair_rows.append({**base, "from_cluster": a, "to_cluster": b, "count": count})
    return {"cluster_runs": runs_rows, "cluster_transitions": pair_rows}


def export_tables(store: Store, run_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """`export data`'s clustering tables for these runs: `cluster_labels` (one row per step and
    clustering), `clusters` (size and medoid), `cluster_runs` and `cluster_transitions`."""
    from genarun.store.clusters import clusters_of, labels_of, list_clusterings

    wanted = set(run_ids)
    tables: dict[str, list[dict[str, Any]]] = {
        "cluster_labels": [],
        "clusters": [],
        "cluster_runs": [],
        "cluster_transitions": [],
    }
    for c in list_clusterings(store, limit=1_000_000):
        if not wanted & set(json.loads(c["run_ids"])):
            continue
        common = {"clustering_id": c["id"], "embedding_model": c["embedding_model"]}
        tables["cluster_labels"] += [
            {**common, **{k: r[k] for k in ("run_id", "node_id", "path", "step", "label")}}
            for r in labels_of(store, c["id"])
            if r["run_id"] in wanted
        ]
        tables["clusters"] += [
            {**common, **{k: v for k, v in r.items() if k not in ("id", "clustering_id")}}
            for r in clusters_of(store, c["id"])
        ]
        for name, rows in transition_tables(store, c["id"]).items():
            tables[name] += [
                {**r, "embedding_model": c["embedding_model"]}
                for r in rows
                if r["run_id"] in wanted
            ]
    return tables


def export_schemas() -> dict[str, Any]:
    """Columns of the clustering tables, so that they have them when empty."""
    import pyarrow as pa

    s, i = pa.string(), pa.int64()
    head = [("clustering_id", s), ("embedding_model", s)]
    key = [("run_id", s), ("node_id", s), ("path", s)]
    return {
        "cluster_labels": pa.schema([*head, *key, ("step", i), ("label", i)]),
        "clusters": pa.schema(
            [
                *head,
                ("label", i),
                ("size", i),
                ("medoid_run_id", s),
                ("medoid_node_id", s),
                ("medoid_path", s),
                ("medoid_step", i),
                ("medoid_kind", s),
                ("medoid_value", s),
            ]
        ),
        "cluster_runs": pa.schema(
            [
                ("clustering_id", s),
                *key,
                ("position", i),
                ("cluster", i),
                ("start_step", i),
                ("length", i),
                ("embedding_model", s),
            ]
        ),
        "cluster_transitions": pa.schema(
            [
                ("clustering_id", s),
                *key,
                ("from_cluster", i),
                ("to_cluster", i),
                ("count", i),
                ("embedding_model", s),
            ]
        ),
    }
