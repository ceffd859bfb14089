"""`genarun export images` of `image` nodes: the pictures a tree painted outside trajectories
(covers, illustrations), exported like trajectory steps, with their prompt, seed and model."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genarun.store.confined import UnsafePath, read_bytes
from genarun.store.reports import run_models

if TYPE_CHECKING:
    from genarun.store.db import Store


def export_node_images(
    store: Store,
    run: dict[str, Any],
    out: Path,
    fmt: str,
    *,
    every: int = 1,
    limit: int | None = None,
) -> list[Path]:
    """Write the images of the run's finished `image` executions to `out`, in the order they
    were stored; `every`: each node's 1st, (every+1)th, ... image; `limit`: at most this many."""
    from genarun.experiments.exports import save_with_metadata

    folder = Path(run["out_dir"])
    matrix = json.dumps(json.loads(run["bindings"] or "{}"), ensure_ascii=False)
    models = run_models(run)
    seen: dict[str, int] = {}
    written: list[Path] = []
    for e in store.run_executions(run["id"]):
        if e["kind"] != "image" or e["status"] != "done" or not e["output"]:
            continue
        value = json.loads(e["output"])
        if not isinstance(value, dict) or not isinstance(value.get("$image"), str):
            continue
        seen[e["node_id"]] = seen.get(e["node_id"], 0) + 1
        if (seen[e["node_id"]] - 1) % every:
            continue
        if limit is not None and len(written) >= limit:
            break
        try:  # only inside the run folder, never through a planted link
            source = io.BytesIO(read_bytes(folder, value["$image"]))
        except (OSError, UnsafePath):
            continue
        params = json.loads(e["params"] or "{}")
        path = json.loads(e["path"] or "[]")
        meta: dict[str, Any] = {
            "prompt": params.get("prompt") or "",
            "seed": e["seed"],
            "model": e["model"] or "",
            "run": run["id"],
            "node": e["node_id"],
            "item": json.dumps(path),
            "matrix": matrix,
        }
        if params.get("negative_prompt"):
            meta["negative_prompt"] = params["negative_prompt"]
        record = models.get(e["model"] or "")  # what the tree's name for the model resolved to
        if record:
            meta["model_id"] = record["model"]
            meta.update({k: record[k] for k in ("provider", "revision", "weights") if record[k]})
        index = "".join(f"-{i}" for i in path)
        target = out / f"{run['id'][:8]}_{e['node_id']}{index}.{fmt}"
        save_with_metadata(source, target, meta, fmt)
        written.append(target)
    return written
