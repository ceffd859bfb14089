"""`genarun export images` and `export data`: a run's images with their metadata, and tables
of invocations, embeddings and diagrams as Parquet or CSV for pandas and polars."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genarun.store import trajectories as tstore
from genarun.store.confined import UnsafePath, read_bytes
from genarun.store.reports import run_models

if TYPE_CHECKING:
    from genarun.store.db import Store


def export_images(
    store: Store,
    run: dict[str, Any],
    out: Path,
    fmt: str = "png",
    *,
    every: int = 1,
    limit: int | None = None,
) -> list[Path]:
    """Copy a run's trajectory images, then its image nodes' images, to `out` with prompt,
    seed, model, step and run in their metadata (PNG text chunks, or the JPEG/WebP EXIF
    ImageDescription as JSON); `every`: only each trajectory's (and each image node's) 1st,
    (every+1)th, ... image; `limit`: at most this many images."""
    folder = Path(run["out_dir"])
    steps = tstore.stored_steps(store, run["id"])
    trajectories = {
        (t["node_id"], t["path"]): t for t in tstore.trajectories_of(store, [run["id"]])
    }
    previous: dict[tuple[str, str], dict[str, Any]] = {}
    seen: dict[tuple[str, str], int] = {}  # images met so far per trajectory, for `every`
    # The matrix values go under one key of their own: spread among the step's fields, a
    # matrix key named `prompt` or `seed` (PANIC-TDA's own names) overwrote the step's prompt
    # and invocation seed with the run's start prompt and run seed.
    matrix = json.dumps(json.loads(run["bindings"] or "{}"), ensure_ascii=False)
    models = run_models(run)
    written: list[Path] = []
    for s in steps:
        key = (s["node_id"], s["path"])
        trajectory = trajectories.get(key, {})
        prompt = (
            previous[key]["value"] if key in previous and previous[key]["kind"] == "text" else None
        )
        if prompt is None and s["step"] == 0:
            prompt = trajectory.get("start")
        previous[key] = s
        if s["kind"] != "image":
            continue
        seen[key] = seen.get(key, 0) + 1
        if (seen[key] - 1) % every:
            continue
        if limit is not None and len(written) >= limit:
            break
        try:  # only inside the run folder, never through a planted link
            source = io.BytesIO(read_bytes(folder, s["value"]))
        except (OSError, UnsafePath):
            continue
        meta = {
            "prompt": prompt or "",
            "seed": s["seed"],
            "model": s["model"],
            "step": s["step"],
            "run": run["id"],
            "node": s["node_id"],
            "network": trajectory.get("network") or "",
            "start": trajectory.get("start") or "",
            "matrix": matrix,
        }
        record = models.get(s["model"])  # what the tree's name for the model resolved to
        if record:
            meta["model_id"] = record["model"]
            meta.update({k: record[k] for k in ("provider", "revision", "weights") if record[k]})
        index = "".join(f"-{i}" for i in json.loads(s["path"]))
        target = out / f"{run['id'][:8]}_{s['node_id']}{index}_step{s['step']:04d}.{fmt}"
        save_with_metadata(source, target, meta, fmt)
        written.append(target)
    if limit is None or len(written) < limit:
        from genarun.experiments.node_images import export_node_images

        left = None if limit is None else limit - len(written)
        written += export_node_images(store, run, out, fmt, every=every, limit=left)
    return written


def save_with_metadata(source: io.BytesIO, target: Path, meta: dict[str, Any], fmt: str) -> None:
    """Write the image in `source` as `fmt` to `target` with `meta`: PNG text chunks
    (`genarun:KEY`), or the JPEG/WebP EXIF ImageDescription as JSON."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    with Image.open(source) as img:
        image = img.convert("RGB")
    target.parent.mkdir(parents=True, exist_ok=True)  # only once there is an image to write
    if fmt == "png":
        info = PngInfo()
        for k, v in meta.items():
            info.add_text(f"genarun:{k}", str(v))
        image.save(target, pnginfo=info)
    else:
        exif = Image.Exif()
        exif[0x010E] = json.dumps(meta, ensure_ascii=False)  # ImageDescription
        image.save(target, exif=exif, quality=92)


def _schemas() -> dict[str, Any]:
    """Each table's columns and types, so that a table with no rows (a run without diagrams)
    still has its columns and joins, and types never depend on the first row."""
    import pyarrow as pa

    key = [("run_id", pa.string()), ("node_id", pa.string()), ("path", pa.string())]
    # Beside `model`, the tree's name for it (an alias such as `painter`), what it resolved to.
    resolved = [(f"model_{k}", pa.string()) for k in ("id", "provider", "revision", "weights")]
    return {
        "runs": pa.schema(
            [
                ("run_id", pa.string()),
                ("experiment_id", pa.string()),
                ("tree", pa.string()),
                ("status", pa.string()),
                ("seed", pa.int64()),
                ("bindings", pa.string()),
                ("started", pa.float64()),
                ("ended", pa.float64()),
                ("folder", pa.string()),
                ("models", pa.string()),  # JSON: model name -> what it resolved to
            ]
        ),
        "trajectories": pa.schema(
            [
                *key,
                ("network", pa.string()),
                ("network_models", pa.string()),  # JSON: the network's resolved model ids
                ("start", pa.string()),
                ("max_steps", pa.int64()),
                ("length", pa.int64()),
                ("status", pa.string()),
                ("stop_reason", pa.string()),
                ("loop_length", pa.int64()),
                ("hit_limit", pa.int64()),
                ("seed", pa.int64()),
                ("seed_random", pa.bool_()),
                ("embed_models", pa.string()),
            ]
        ),
        "invocations": pa.schema(
            [
                *key,
                ("step", pa.int64()),
                ("model", pa.string()),
                *resolved,
                ("kind", pa.string()),
                ("value", pa.string()),
                ("sha256", pa.string()),
                ("seed", pa.int64()),
                ("duration", pa.float64()),
                ("hit_limit", pa.bool_()),
                ("tokens", pa.int64()),
                ("prompt_tokens", pa.int64()),
                ("prompt_truncated", pa.bool_()),
                ("bytes", pa.int64()),
                ("created", pa.float64()),
                ("network", pa.string()),
                ("start", pa.string()),
                ("stop_reason", pa.string()),
                ("loop_length", pa.int64()),
            ]
        ),
        "embeddings": pa.schema(
            [
                ("id", pa.int64()),
                *key,
                ("step", pa.int64()),
                ("model", pa.string()),
                *resolved,
                ("dim", pa.int64()),
                ("source", pa.string()),
                ("vector", pa.list_(pa.float32())),
                # Distance from the trajectory's start prompt (step -1) under the same model:
                # cosine (genarun's plots) and PANIC-TDA's Euclidean of unit vectors.
                ("drift_cosine", pa.float64()),
                ("drift_euclidean", pa.float64()),
            ]
        ),
        "persistence": pa.schema(
            [
                *key,
                ("embedding_model", pa.string()),
                ("homology_dim", pa.int64()),
                ("birth", pa.float64()),
                ("death", pa.float64()),
                ("entropy", pa.float64()),
            ]
        ),
        "entropy": pa.schema(
            [
                *key,
                ("embedding_model", pa.string()),
                ("homology_dim", pa.int64()),
                ("features", pa.int64()),
                ("entropy", pa.float64()),
                ("points", pa.int64()),
                ("metric", pa.string()),
            ]
        ),
    }


def _matrix_columns(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One `matrix_<key>` column per matrix key (pandas users filter and group on them without
    parsing `bindings`), as each run's value by run id. Whole numbers and booleans stay so
    when every run's value is one (`write_tables` types the column); anything else is text, a
    list (a network) as JSON, so that `seed: [1, 2, random]` is one text column."""
    values: dict[str, dict[str, Any]] = {}
    for r in runs:
        for k, v in json.loads(r["bindings"] or "{}").items():
            values.setdefault(f"matrix_{k}", {})[r["id"]] = v
    for by_run in values.values():
        present = list(by_run.values())
        if not (
            all(isinstance(v, bool) for v in present)
            or all(isinstance(v, int) and not isinstance(v, bool) for v in present)
        ):
            for rid, v in by_run.items():
                by_run[rid] = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    return values


def data_tables(store: Store, runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Flat tables: runs, trajectories, invocations (trajectory steps), embeddings (vectors as
    lists), persistence (one row per diagram point) and entropy (one row per diagram). They
    join on run_id, and on (run_id, node_id, path) with step for invocations and embeddings."""
    import numpy as np
    from sqlalchemy import select

    from genarun.store.db import embeddings
    from genarun.store.processes import display_status

    run_ids = [r["id"] for r in runs]
    matrix = _matrix_columns(runs)
    resolved_of = {r["id"]: run_models(r) for r in runs}
    run_rows = [
        {
            "run_id": r["id"],
            "experiment_id": r["experiment_id"],
            "tree": r["name"],
            "status": display_status(r),  # `crashed`, as `runs list` shows it
            "seed": r["seed"],
            "bindings": r["bindings"],
            "started": r["started"],
            "ended": r["ended"],
            "folder": r["out_dir"],
            "models": json.dumps(run_models(r), ensure_ascii=False),
            **{name: by_run.get(r["id"]) for name, by_run in matrix.items()},
        }
        for r in runs
    ]
    invocations = []
    trajectory_rows = []
    trajs = {
        (t["run_id"], t["node_id"], t["path"]): t for t in tstore.trajectories_of(store, run_ids)
    }
    for t in trajs.values():
        trajectory_rows.append(
            {
                "run_id": t["run_id"],
                "node_id": t["node_id"],
                "path": t["path"],
                "network": t["network"],
                "network_models": json.dumps(
                    [
                        resolved_of[t["run_id"]].get(name, {}).get("model", name)
                        for name in json.loads(t["network"] or "[]")
                    ]
                ),
                "start": t["start"],
                "max_steps": t["max_steps"],
                "length": t["length"],
                "status": t["status"],
                "stop_reason": t["stop_reason"],
                "loop_length": t["loop_length"],
                "hit_limit": t.get("hit_limit"),
                "seed": t["seed"],
                "seed_random": bool(t["seed_random"]),
                "embed_models": t["embed_models"],
            }
        )
    for run_id in run_ids:
        for s in tstore.stored_steps(store, run_id):
            t = trajs.get((run_id, s["node_id"], s["path"]), {})
            invocations.append(
                {
                    "run_id": run_id,
                    "node_id": s["node_id"],
                    "path": s["path"],
                    "step": s["step"],
                    "model": s["model"],
                    **_resolved_columns(resolved_of[run_id].get(s["model"])),
                    "kind": s["kind"],
                    "value": s["value"],
                    "sha256": s["sha256"],
                    "seed": s["seed"],
                    "duration": s["duration"],
                    "hit_limit": None if s.get("hit_limit") is None else bool(s["hit_limit"]),
                    "tokens": s.get("tokens"),
                    "prompt_tokens": s.get("prompt_tokens"),
                    "prompt_truncated": None
                    if s.get("prompt_truncated") is None
                    else bool(s["prompt_truncated"]),
                    "bytes": s.get("bytes"),
                    "created": s["created"],
                    "network": t.get("network"),
                    "start": t.get("start"),
                    "stop_reason": t.get("stop_reason"),
                    "loop_length": t.get("loop_length"),
                }
            )
    embedding_rows = []
    stmt = select(embeddings).where(embeddings.c.run_id.in_(run_ids)).order_by(embeddings.c.id)
    for e in store.conn.execute(stmt).mappings():
        embedding_rows.append(
            {
                "id": e["id"],
                "run_id": e["run_id"],
                "node_id": e["node_id"],
                "path": e["path"],
                "step": e["item"],
                "model": e["model"],
                **_resolved_columns(resolved_of[e["run_id"]].get(e["model"])),
                "dim": e["dim"],
                "source": e["source"],
                "vector": np.frombuffer(e["vector"], dtype="<f4").tolist(),
            }
        )
    _add_drift(embedding_rows)
    diagram_rows = []
    # One row per diagram too: an empty diagram (no H1 loop in a short trajectory) has no point
    # rows, so its entropy (0) was missing when grouping entropy by network or prompt.
    entropy_rows = []
    for p in tstore.persistence_of(store, run_ids):
        data = json.loads(p["diagrams"])
        entropy = json.loads(p["entropy"])
        for dim, points in enumerate(data["diagrams"]):
            entropy_rows.append(
                {
                    "run_id": p["run_id"],
                    "node_id": p["node_id"],
                    "path": p["path"],
                    "embedding_model": p["embedding_model"],
                    "homology_dim": dim,
                    "features": len(points),
                    "entropy": entropy[dim],
                    "points": p["points"],
                    "metric": data.get("metric"),
                }
            )
            for birth, death in points:
                diagram_rows.append(
                    {
                        "run_id": p["run_id"],
                        "node_id": p["node_id"],
                        "path": p["path"],
                        "embedding_model": p["embedding_model"],
                        "homology_dim": dim,
                        "birth": birth,
                        "death": float("inf") if death is None else death,
                        "entropy": entropy[dim],
                    }
                )
    from genarun.experiments.clusters import export_tables

    return {
        "runs": run_rows,
        "trajectories": trajectory_rows,
        "invocations": invocations,
        "embeddings": embedding_rows,
        "persistence": diagram_rows,
        "entropy": entropy_rows,
        # Labels, medoids and transitions of every clustering of these runs (genarun cluster).
        **export_tables(store, run_ids),
    }


def _resolved_columns(record: dict[str, str] | None) -> dict[str, str | None]:
    record = record or {}
    return {f"model_{k}": record.get(f) or None for k, f in _RESOLVED_FIELDS}


_RESOLVED_FIELDS = (
    ("id", "model"),
    ("provider", "provider"),
    ("revision", "revision"),
    ("weights", "weights"),
)


def _add_drift(rows: list[dict[str, Any]]) -> None:
    """Each embedding's distance from its trajectory's start prompt (step -1), both ways."""
    import numpy as np

    from genarun.analysis.drift import drift_from_start

    starts = {
        (r["run_id"], r["node_id"], r["path"], r["model"]): r["vector"]
        for r in rows
        if r["step"] == -1
    }
    for r in rows:
        start = starts.get((r["run_id"], r["node_id"], r["path"], r["model"]))
        if start is None or len(start) != len(r["vector"]):
            r["drift_cosine"] = r["drift_euclidean"] = None
            continue
        point = np.asarray([r["vector"]], dtype=np.float64)
        r["drift_cosine"] = float(drift_from_start(point, np.asarray(start), "cosine")[0])
        r["drift_euclidean"] = float(drift_from_start(point, np.asarray(start), "euclidean")[0])


def write_tables(tables: dict[str, list[dict[str, Any]]], out: Path, fmt: str) -> list[Path]:
    """One file per table, with its columns even when it has no rows; Parquet keeps vectors as
    list columns, CSV writes them as JSON."""
    import pyarrow as pa

    from genarun.experiments.clusters import export_schemas

    out.mkdir(parents=True, exist_ok=True)
    schemas = {**_schemas(), **export_schemas()}
    written = []
    for name, rows in tables.items():
        schema = schemas.get(name)
        if schema is not None and name == "runs":
            extra = sorted({k for r in rows for k in r} - set(schema.names))
            schema = pa.schema([*schema, *((k, _column_type(rows, k)) for k in extra)])
        table = (
            pa.Table.from_pylist(rows, schema=schema)
            if schema is not None
            else pa.Table.from_pylist(rows)
        )
        target = out / f"{name}.{fmt}"
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, target)
        else:
            import pyarrow.csv as pcsv

            if "vector" in table.column_names:
                index = table.column_names.index("vector")
                table = table.set_column(
                    index, "vector", pa.array([json.dumps(r["vector"]) for r in rows], pa.string())
                )
            pcsv.write_csv(table, target)
        written.append(target)
    return written


def _column_type(rows: list[dict[str, Any]], name: str) -> Any:
    """The arrow type of a `matrix_` column: int64 or bool when every value is, else text."""
    import pyarrow as pa

    present = [r[name] for r in rows if r.get(name) is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.bool_()
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.int64()
    return pa.string()
