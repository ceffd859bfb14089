"""`genarun export images` and `export data`: a run's images with their metadata, and tables
of invocations, embeddings and diagrams as Parquet or CSV for pandas and polars."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genarun.store import trajectories as tstore

if TYPE_CHECKING:
    from genarun.store.db import Store


def export_images(store: Store, run: dict[str, Any], out: Path, fmt: str = "png") -> list[Path]:
    """Copy a run's trajectory images to `out` with prompt, seed, model, step and run in their
    metadata (PNG text chunks, or the JPEG/WebP EXIF ImageDescription as JSON)."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    out.mkdir(parents=True, exist_ok=True)
    folder = Path(run["out_dir"])
    steps = tstore.stored_steps(store, run["id"])
    previous: dict[tuple[str, str], dict[str, Any]] = {}
    bindings = json.loads(run["bindings"] or "{}")
    written = []
    for s in steps:
        key = (s["node_id"], s["path"])
        prompt = previous[key]["value"] if key in previous and previous[key]["kind"] == "text" else None
        if prompt is None and s["step"] == 0:
            prompt = _start_of(store, run["id"], s["node_id"], s["path"])
        previous[key] = s
        if s["kind"] != "image":
            continue
        source = folder / s["value"]
        if not source.exists():
            continue
        meta = {"prompt": prompt or "", "seed": s["seed"], "model": s["model"], "step": s["step"], "run": run["id"], "node": s["node_id"], **{k: json.dumps(v) if not isinstance(v, str) else v for k, v in bindings.items()}}
        index = "".join(f"-{i}" for i in json.loads(s["path"]))
        target = out / f"{run['id'][:8]}_{s['node_id']}{index}_step{s['step']:04d}.{fmt}"
        with Image.open(source) as img:
            image = img.convert("RGB")
        if fmt == "png":
            info = PngInfo()
            for k, v in meta.items():
                info.add_text(f"genarun:{k}", str(v))
            image.save(target, pnginfo=info)
        else:
            exif = Image.Exif()
            exif[0x010E] = json.dumps(meta, ensure_ascii=False)  # ImageDescription
            image.save(target, exif=exif, quality=92)
        written.append(target)
    return written


def _start_of(store: Store, run_id: str, node_id: str, path: str) -> str | None:
    for t in tstore.trajectories_of(store, [run_id]):
        if t["node_id"] == node_id and t["path"] == path:
            return t["start"]
    return None


def data_tables(store: Store, runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Flat tables: runs, invocations (trajectory steps), embeddings (one column per dim is
    wide; vectors go as lists), persistence (one row per diagram point)."""
    import numpy as np
    from sqlalchemy import select

    from genarun.store.db import embeddings

    run_ids = [r["id"] for r in runs]
    run_rows = [{"run_id": r["id"], "experiment_id": r["experiment_id"], "tree": r["name"], "status": r["status"], "seed": r["seed"], "bindings": r["bindings"], "started": r["started"], "ended": r["ended"]} for r in runs]
    invocations = []
    trajs = {(t["run_id"], t["node_id"], t["path"]): t for t in tstore.trajectories_of(store, run_ids)}
    for run_id in run_ids:
        for s in tstore.stored_steps(store, run_id):
            t = trajs.get((run_id, s["node_id"], s["path"]), {})
            invocations.append({
                "run_id": run_id, "node_id": s["node_id"], "path": s["path"], "step": s["step"], "model": s["model"], "kind": s["kind"],
                "value": s["value"], "sha256": s["sha256"], "seed": s["seed"], "duration": s["duration"], "created": s["created"],
                "network": t.get("network"), "start": t.get("start"), "stop_reason": t.get("stop_reason"), "loop_length": t.get("loop_length"),
            })
    embedding_rows = []
    stmt = select(embeddings).where(embeddings.c.run_id.in_(run_ids)).order_by(embeddings.c.id)
    for e in store.conn.execute(stmt).mappings():
        embedding_rows.append({
            "id": e["id"], "run_id": e["run_id"], "node_id": e["node_id"], "path": e["path"], "step": e["item"], "model": e["model"],
            "dim": e["dim"], "source": e["source"], "vector": np.frombuffer(e["vector"], dtype="<f4").tolist(),
        })
    diagram_rows = []
    for p in tstore.persistence_of(store, run_ids):
        data = json.loads(p["diagrams"])
        entropy = json.loads(p["entropy"])
        for dim, points in enumerate(data["diagrams"]):
            for birth, death in points:
                diagram_rows.append({
                    "run_id": p["run_id"], "node_id": p["node_id"], "path": p["path"], "embedding_model": p["embedding_model"],
                    "homology_dim": dim, "birth": birth, "death": float("inf") if death is None else death, "entropy": entropy[dim],
                })
    return {"runs": run_rows, "invocations": invocations, "embeddings": embedding_rows, "persistence": diagram_rows}


def write_tables(tables: dict[str, list[dict[str, Any]]], out: Path, fmt: str) -> list[Path]:
    """One file per table; Parquet keeps vectors as list columns, CSV writes them as JSON."""
    import pyarrow as pa

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in tables.items():
        table = pa.Table.from_pylist(rows) if rows else pa.table({})
        target = out / f"{name}.{fmt}"
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, target)
        else:
            import pyarrow.csv as pcsv

            if "vector" in table.column_names:
                index = table.column_names.index("vector")
                table = table.set_column(index, "vector", pa.array([json.dumps(r["vector"]) for r in rows]))
            pcsv.write_csv(table, target)
        written.append(target)
    return written
