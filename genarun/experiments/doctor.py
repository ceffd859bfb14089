"""`genarun doctor`: the integrity of a store and its run folders, and the repairs that can be
made without running a generative model again.

Each check returns findings; `fix` repairs those that can be repaired, in an order where one
repair feeds the next: orphans are removed, a trajectory with a gap is cut at the gap, unusable
vectors are removed, missing embeddings are computed again (the embedding model is loaded), and
missing or stale diagrams are computed. Missing images cannot be made again without the models
(`genarun rerun`): they stay findings.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from genarun.errors import GenarunError
from genarun.experiments.doctor_findings import Finding, tree_nodes
from genarun.experiments.doctor_orphans import orphans
from genarun.store.db import (
    embeddings,
    executions,
    persistence,
    runs,
    trajectories,
    trajectory_steps,
)
from genarun.store.vectors import vector_problem

if TYPE_CHECKING:
    from genarun.store.db import Store

CHECKS = (
    "dead_run",
    "orphan",
    "gap",
    "bad_vector",
    "missing_embedding",
    "missing_diagram",
    "missing_asset",
    "corrupt_asset",
)


def examine(store: Store) -> list[Finding]:
    """Every finding in the store, in CHECKS order."""
    runs_by_id = {r["id"]: dict(r) for r in store.conn.execute(select(runs)).mappings()}
    found: list[Finding] = []
    found += _dead_runs(runs_by_id)
    found += orphans(store, runs_by_id)
    trajs = [
        dict(t)
        for t in store.conn.execute(
            select(trajectories).where(trajectories.c.run_id.in_(list(runs_by_id)))
        ).mappings()
    ]
    steps = _steps(store)
    found += _gaps(trajs, steps)
    found += _bad_vectors(store)
    found += _missing_embeddings(store, runs_by_id, trajs, steps)
    found += _missing_diagrams(store, runs_by_id, trajs)
    found += _assets(store, runs_by_id, steps)
    return found


# --- checks -----------------------------------------------------------------------------------
def _dead_runs(runs_by_id: dict[str, dict[str, Any]]) -> list[Finding]:
    from genarun.store.processes import holder_alive

    out = []
    for run in runs_by_id.values():
        if run["status"] == "running" and holder_alive(run) is False:
            out.append(
                Finding(
                    "dead_run",
                    f"run {run['id'][:8]}",
                    f"marked running, but its process {run.get('pid')} is gone",
                    True,
                    {"run_id": run["id"]},
                )
            )
    return out


Key = tuple[str, str, str]


def _steps(store: Store) -> dict[Key, list[dict[str, Any]]]:
    out: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    stmt = select(
        trajectory_steps.c.id,
        trajectory_steps.c.run_id,
        trajectory_steps.c.node_id,
        trajectory_steps.c.path,
        trajectory_steps.c.step,
        trajectory_steps.c.kind,
        trajectory_steps.c.value,
        trajectory_steps.c.sha256,
    ).order_by(trajectory_steps.c.step)
    for row in store.conn.execute(stmt).mappings():
        out[(row["run_id"], row["node_id"], row["path"])].append(dict(row))
    return out


def _gaps(trajs: list[dict[str, Any]], steps: dict[Key, list[dict[str, Any]]]) -> list[Finding]:
    out = []
    for t in trajs:
        key = (t["run_id"], t["node_id"], t["path"])
        numbers = [s["step"] for s in steps.get(key, [])]
        missing = sorted(set(range(max(numbers, default=-1) + 1)) - set(numbers))
        if missing:
            out.append(
                Finding(
                    "gap",
                    f"run {key[0][:8]} {key[1]}{key[2]}",
                    f"step{'s' if len(missing) > 1 else ''} {_ranges(missing)} missing of "
                    f"{max(numbers) + 1}; --fix cuts the trajectory before step {missing[0]} "
                    "(`genarun resume` cannot fill a gap)",
                    True,
                    {"key": list(key), "first": missing[0]},
                )
            )
    return out


def _bad_vectors(store: Store) -> list[Finding]:
    out = []
    stmt = select(
        embeddings.c.id,
        embeddings.c.run_id,
        embeddings.c.node_id,
        embeddings.c.path,
        embeddings.c.item,
        embeddings.c.model,
        embeddings.c.dim,
        embeddings.c.vector,
    )
    for row in store.conn.execute(stmt):
        problem = vector_problem(row.vector, row.dim)
        if problem:
            out.append(
                Finding(
                    "bad_vector",
                    f"run {row.run_id[:8]} {row.node_id}{row.path} step {row.item}",
                    f"the '{row.model}' vector: {problem}",
                    True,
                    {"id": row.id, "key": [row.run_id, row.node_id, row.path], "model": row.model},
                )
            )
    return out


def _missing_embeddings(
    store: Store,
    runs_by_id: dict[str, dict[str, Any]],
    trajs: list[dict[str, Any]],
    steps: dict[Key, list[dict[str, Any]]],
) -> list[Finding]:
    from genarun.experiments.reembed import resolve_embedder, takes

    # A row with an unusable vector is its own finding (bad_vector), not also a missing one.
    have = {
        (r.run_id, r.node_id, r.path, r.item, r.model)
        for r in store.conn.execute(
            select(
                embeddings.c.run_id,
                embeddings.c.node_id,
                embeddings.c.path,
                embeddings.c.item,
                embeddings.c.model,
            )
        )
    }
    out = []
    for t in trajs:
        if t["status"] == "running":
            continue  # its last step may be between generation and embedding
        key = (t["run_id"], t["node_id"], t["path"])
        run = runs_by_id[t["run_id"]]
        for label in json.loads(t["embed_models"] or "[]"):
            try:
                kinds = takes(resolve_embedder(label, run))
            except GenarunError:
                kinds = {"text", "image"}  # cannot tell: any step without it is missing one
            missing = [
                s["step"]
                for s in steps.get(key, [])
                if s["kind"] in kinds and (*key, s["step"], label) not in have
            ]
            if missing:
                out.append(
                    Finding(
                        "missing_embedding",
                        f"run {key[0][:8]} {key[1]}{key[2]}",
                        f"step{'s' if len(missing) > 1 else ''} {_ranges(missing)} without a "
                        f"'{label}' embedding",
                        True,
                        {"key": list(key), "model": label, "steps": missing},
                    )
                )
    return out


def _missing_diagrams(
    store: Store, runs_by_id: dict[str, dict[str, Any]], trajs: list[dict[str, Any]]
) -> list[Finding]:
    counts: dict[tuple[str, str, str, str], int] = {}
    stmt = (
        select(
            embeddings.c.run_id,
            embeddings.c.node_id,
            embeddings.c.path,
            embeddings.c.model,
            func.count(func.distinct(embeddings.c.item)),
        )
        .where(embeddings.c.item >= 0)
        .group_by(embeddings.c.run_id, embeddings.c.node_id, embeddings.c.path, embeddings.c.model)
    )
    for run_id, node_id, path, model, n in store.conn.execute(stmt):
        counts[(run_id, node_id, path, model)] = int(n)
    stored = {
        (r.run_id, r.node_id, r.path, r.embedding_model, r.maxdim): r.points
        for r in store.conn.execute(
            select(
                persistence.c.run_id,
                persistence.c.node_id,
                persistence.c.path,
                persistence.c.embedding_model,
                persistence.c.maxdim,
                persistence.c.points,
            )
        )
    }
    out = []
    for t in trajs:
        if t["status"] == "running":
            continue
        for node in persistence_nodes(runs_by_id[t["run_id"]], t["node_id"]):
            for (run_id, node_id, path, model), n in counts.items():
                if (run_id, node_id, path) != (t["run_id"], t["node_id"], t["path"]):
                    continue
                if node["embedding"] not in (None, model):
                    continue
                points = stored.get((run_id, node_id, path, model, node["maxdim"]))
                if points == n:
                    continue
                what = "missing" if points is None else f"stale ({points} points of {n})"
                out.append(
                    Finding(
                        "missing_diagram",
                        f"run {run_id[:8]} {node_id}{path}",
                        f"H0..H{node['maxdim']} diagram of the '{model}' embeddings {what}",
                        True,
                        {
                            "key": [run_id, node_id, path],
                            "model": model,
                            "maxdim": node["maxdim"],
                            "metric": node["metric"],
                        },
                    )
                )
    return out


def persistence_nodes(run: dict[str, Any], cycle_id: str) -> list[dict[str, Any]]:
    """The persistence nodes of a run's tree that analyse the cycle `cycle_id`: their
    embedding (None: every model), maxdim and metric."""
    return [n for n in _persistence_nodes(run) if n["of"] == cycle_id]


def _persistence_nodes(run: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for node in tree_nodes(run) or []:
        if node.get("kind") == "persistence" and node.get("enabled", True) is not False:
            embedding = node.get("embedding")
            found.append(
                {
                    "of": node.get("of"),
                    "embedding": embedding if isinstance(embedding, str) else None,
                    "maxdim": int(node.get("maxdim", 1)),
                    "metric": node.get("metric", "cosine"),
                }
            )
    return found


_IMAGE = re.compile(r'\{"\$image": ("(?:[^"\\]|\\.)*"), "sha256": "([0-9a-f]*)"\}')


def _assets(
    store: Store, runs_by_id: dict[str, dict[str, Any]], steps: dict[Key, list[dict[str, Any]]]
) -> list[Finding]:
    out = []
    for key, rows in steps.items():
        run = runs_by_id.get(key[0])
        if run is None or not run.get("out_dir"):
            continue
        for s in rows:
            if s["kind"] == "image":
                out += _check_image(run, key, s["step"], s["value"], pixels=s["sha256"])
    # Images of `image` nodes (tagged in executions' outputs, with the file's sha256).
    stmt = select(executions.c.run_id, executions.c.node_id, executions.c.output).where(
        executions.c.output.like('%"$image"%'), executions.c.status == "done"
    )
    for run_id, node_id, output in store.conn.execute(stmt):
        run = runs_by_id.get(run_id)
        if run is None or not run.get("out_dir"):
            continue
        for path_text, digest in _IMAGE.findall(output or ""):
            out += _check_image(
                run, (run_id, node_id, ""), None, json.loads(path_text), file=digest
            )
    return out


def _check_image(
    run: dict[str, Any],
    key: Key,
    step: int | None,
    relative: str,
    *,
    pixels: str | None = None,
    file: str | None = None,
) -> list[Finding]:
    from PIL import Image, UnidentifiedImageError

    from genarun.store.confined import UnsafePath, read_bytes

    where = f"run {key[0][:8]} {key[1]}{key[2]}" + (f" step {step}" if step is not None else "")
    folder = Path(run["out_dir"])
    try:
        data = read_bytes(folder, relative)
    except (OSError, UnsafePath):
        return [Finding("missing_asset", where, f"image {folder / relative} is missing", False)]
    if file:
        if hashlib.sha256(data).hexdigest() != file:
            return [_corrupt(where, folder / relative, "its sha256 differs from the one stored")]
        return []
    try:
        with Image.open(io.BytesIO(data)) as img:
            h = hashlib.sha256(f"{img.mode}{img.size}".encode())
            h.update(img.tobytes())
    except (OSError, UnidentifiedImageError, ValueError):
        return [_corrupt(where, folder / relative, "it is not a readable image")]
    if pixels and h.hexdigest() != pixels:
        return [_corrupt(where, folder / relative, "its pixels differ from those stored (sha256)")]
    return []


def _corrupt(where: str, path: Path, why: str) -> Finding:
    return Finding("corrupt_asset", where, f"image {path}: {why}", False)


def _ranges(numbers: list[int]) -> str:
    parts: list[str] = []
    for n in numbers:
        if parts and parts[-1].split("-")[-1] == str(n - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{n}"
        else:
            parts.append(str(n))
    shown = parts[:8]
    return ", ".join(shown) + (f" (+{len(parts) - 8} more)" if len(parts) > 8 else "")
