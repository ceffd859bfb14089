"""Embedding stored trajectory outputs again, without running the generative models: with a
new embedding model (`genarun embed`), or where an embedding is missing (`genarun doctor
--fix`). Batched, and resumable: a step that already has a vector by the model is skipped, and
each batch is committed with its steps' references, so an interrupted call loses nothing.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select, update

from genarun.errors import ModelError, StoreError
from genarun.store.db import embeddings, trajectory_steps

if TYPE_CHECKING:
    from genarun.models.base import ModelSpec
    from genarun.store.db import Store


@dataclass
class EmbedReport:
    embedded: int = 0  # vectors written
    present: int = 0  # steps that had one already
    skipped_kinds: int = 0  # steps of a kind the model does not embed


def run_aliases(run: dict[str, Any]) -> dict[str, Any]:
    """The `models:` aliases of the tree a run ran (its stored text)."""
    return _aliases(run.get("tree_text") or "", run.get("tree_path") or "")


@functools.lru_cache(maxsize=64)
def _aliases(text: str, name: str) -> dict[str, Any]:
    from genarun.errors import TreeError
    from genarun.tree.load import load_text

    fmt: Literal["yaml", "json"] = "json" if name.lower().endswith(".json") else "yaml"
    try:
        data = load_text(text, name or "tree", fmt).data
    except TreeError:
        return {}
    models = data.get("models") if isinstance(data, dict) else None
    return dict(models) if isinstance(models, dict) else {}


def resolve_embedder(label: str, run: dict[str, Any]) -> ModelSpec:
    """The embedding model a run calls `label` (its tree's alias, or a catalog name or id)."""
    from genarun.models.catalog import resolve_model

    spec = resolve_model(label, run_aliases(run))
    if not spec.tasks & {"embed_text", "embed_image"}:
        can = ", ".join(sorted(spec.tasks)) or "nothing known"
        raise ModelError(f"model '{label}' cannot embed (it does: {can}); pick an embedding model")
    return spec


def takes(spec: ModelSpec) -> set[str]:
    """The output kinds (text, image) a model embeds."""
    return {
        kind
        for task, kind in (("embed_text", "text"), ("embed_image", "image"))
        if task in spec.tasks
    }


def embed_trajectory(
    store: Store,
    run: dict[str, Any],
    trajectory: dict[str, Any],
    spec: ModelSpec,
    label: str,
    *,
    batch_size: int = 32,
    device: str | None = None,
    steps_wanted: set[int] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> EmbedReport:
    """Embed a trajectory's outputs (and its text start prompt, step -1) by `spec`, stored
    under `label`, where that model has no vector yet; `steps_wanted` limits the steps."""
    import numpy as np

    from genarun.models.base import Invocation
    from genarun.models.cache import model_cache

    report = EmbedReport()
    key = (trajectory["run_id"], trajectory["node_id"], trajectory["path"])
    have = {
        row.item
        for row in store.conn.execute(
            select(embeddings.c.item).where(
                embeddings.c.run_id == key[0],
                embeddings.c.node_id == key[1],
                embeddings.c.path == key[2],
                embeddings.c.model == label,
            )
        )
    }
    rows = [
        dict(r)
        for r in store.conn.execute(
            select(trajectory_steps)
            .where(
                trajectory_steps.c.run_id == key[0],
                trajectory_steps.c.node_id == key[1],
                trajectory_steps.c.path == key[2],
            )
            .order_by(trajectory_steps.c.step)
        ).mappings()
    ]
    kinds = takes(spec)
    todo: list[tuple[int, str, Any, dict[str, Any] | None]] = []  # step, kind, value, row
    wants_start = steps_wanted is None or -1 in steps_wanted
    if "text" in kinds and trajectory.get("start") is not None and -1 not in have and wants_start:
        todo.append((-1, "text", trajectory["start"], None))
    for row in rows:
        if steps_wanted is not None and row["step"] not in steps_wanted:
            continue
        if row["kind"] not in kinds:
            report.skipped_kinds += 1
        elif row["step"] in have:
            report.present += 1
        else:
            todo.append((row["step"], row["kind"], row["value"], row))
    if not todo:
        return report
    folder = Path(run.get("out_dir") or ".")
    model = model_cache().get(spec, device)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        by_task: dict[str, list[int]] = {}
        for i, (_, kind, _, _) in enumerate(chunk):
            by_task.setdefault("embed_text" if kind == "text" else "embed_image", []).append(i)
        vectors: list[Any] = [None] * len(chunk)
        for task, positions in by_task.items():
            inputs = [
                _image(folder, chunk[i][2]) if task == "embed_image" else chunk[i][2]
                for i in positions
            ]
            seed = int(trajectory.get("seed") or 0)
            out = model.run(task, [Invocation(task, x, seed) for x in inputs])
            for i, vector in zip(positions, out, strict=True):
                vectors[i] = np.asarray(vector, dtype="<f4").ravel()
        new_rows = [
            {
                "run_id": key[0],
                "node_id": key[1],
                "path": key[2],
                "item": step,
                "model": label,
                "dim": int(vector.shape[0]),
                "vector": vector.tobytes(),
                "source": (value if kind == "text" else str(value))[:2000],
            }
            for (step, kind, value, _), vector in zip(chunk, vectors, strict=True)
        ]
        with store.transaction():  # the vectors and their steps' references: one commit
            ids = store.add_embeddings(new_rows)
            for (_, _, _, source), id_, new in zip(chunk, ids, new_rows, strict=True):
                if source is None:
                    continue
                refs = json.loads(source["embeddings"] or "{}")
                refs[label] = [id_, new["dim"]]
                store._write(
                    update(trajectory_steps)
                    .where(trajectory_steps.c.id == source["id"])
                    .values(embeddings=json.dumps(refs))
                )
        report.embedded += len(chunk)
        if on_batch:
            on_batch(len(chunk))
    return report


def _image(folder: Path, relative: str) -> Any:
    from PIL import Image

    from genarun.store.confined import UnsafePath, read_bytes

    try:
        data = read_bytes(folder, relative)
    except (OSError, UnsafePath) as exc:
        raise StoreError(
            f"cannot read the image {folder / relative} to embed it ({exc}); "
            "`genarun doctor` lists missing images"
        ) from None
    import io

    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")
