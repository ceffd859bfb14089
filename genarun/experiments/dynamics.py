"""Dynamics of stored trajectories (`genarun dynamics`): finite-time Lyapunov exponents between
runs of one network and prompt (or, for paraphrases, of one network and seed), change points
along each trajectory, and the sampling-noise floor of one step."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genarun.errors import UserError
from genarun.store import trajectories as tstore

if TYPE_CHECKING:
    import numpy as np

    from genarun.analysis.dynamics import GroupExponent, NoiseFloor
    from genarun.store.db import Store


def _series(store: Store, t: dict[str, Any], model: str) -> tuple[np.ndarray, np.ndarray]:
    """A trajectory's embedded steps (the start prompt left out): (steps, vectors)."""
    import numpy as np

    steps, matrix = tstore.embedding_series(store, t["run_id"], t["node_id"], t["path"], model)
    keep = [i for i, s in enumerate(steps) if s >= 0]
    return np.asarray(steps)[keep], matrix[keep]


def trajectory_label(t: dict[str, Any]) -> str:
    return f"{t['run_id'][:8]} {t['node_id']}{t['path'] if t['path'] != '[]' else ''}"


@dataclass
class GroupResult:
    model: str
    network: str  # the network's model labels joined with ->
    prompt: str  # the start prompt; for paraphrases, "seed N" (prompts differ)
    runs: int
    result: GroupExponent


def ftle_groups(
    store: Store, runs: list[dict[str, Any]], model: str, *, paraphrases: bool = False
) -> list[GroupResult]:
    """One FTLE result per group of trajectories sharing network and prompt (paraphrases:
    network and seed, so the prompts are what differs); every pair of a group is measured."""
    from genarun.analysis.dynamics import ftle

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    run_seeds = {r["id"]: r["seed"] for r in runs}
    for t in tstore.trajectories_of(store, [r["id"] for r in runs]):
        network = " -> ".join(json.loads(t["network"] or "[]"))
        # The run's seed names the group; the trajectory's own seed (derived from it and the
        # node's place) tells runs apart when a tree has several cycles.
        seed = f"seed {run_seeds[t['run_id']]}" + ("" if t["seed"] is None else f"/{t['seed']}")
        second = seed if paraphrases else str(t["start"])
        groups.setdefault((network, second), []).append(t)
    shared = {k: v for k, v in groups.items() if len(v) >= 2}
    if not shared:
        what = "network and seed (with different prompts)" if paraphrases else "network and prompt"
        sizes = ", ".join(f"{n} ({p[:40]}): {len(v)}" for (n, p), v in list(groups.items())[:5])
        raise UserError(
            f"finite-time Lyapunov exponents compare pairs of runs with the same {what}; "
            f"every such group here has one run ({sizes or 'no trajectories'}): add seeds to the "
            "matrix (or paraphrases of the prompt, with --paraphrases), or name more runs"
        )
    out = []
    for (network, second), trajs in sorted(shared.items()):
        series = {}
        for t in trajs:
            steps, vectors = _series(store, t, model)
            if len(steps):
                series[trajectory_label(t)] = (steps, vectors)
        if len(series) < 2:
            continue
        out.append(GroupResult(model, network, second, len(series), ftle(series)))
    if not out:
        raise UserError(f"no two runs of one group have '{model}' embeddings to compare")
    return out


def ftle_rows(results: list[GroupResult]) -> list[dict[str, Any]]:
    """One row per pair, with its group's summary (for CSV)."""
    rows = []
    for g in results:
        for p in g.result.pairs:
            rows.append(
                {
                    "embedding_model": g.model,
                    "network": g.network,
                    "group": g.prompt,
                    "run_a": p.a,
                    "run_b": p.b,
                    "exponent": _num(p.exponent),
                    "r_squared": _num(p.r_squared),
                    "steps": p.steps,
                    "group_mean": _num(g.result.mean),
                    "group_pooled": _num(g.result.pooled),
                    "group_pooled_r_squared": _num(g.result.pooled_r_squared),
                }
            )
    return rows


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else round(x, 6)


def change_point_rows(
    store: Store, runs: list[dict[str, Any]], model: str, *, penalty: float
) -> list[dict[str, Any]]:
    """Each trajectory's change points (the first step of each new regime)."""
    from genarun.analysis.dynamics import change_points

    rows = []
    for t in tstore.trajectories_of(store, [r["id"] for r in runs]):
        steps, vectors = _series(store, t, model)
        if not len(steps):
            continue
        found = [int(steps[i]) for i in change_points(vectors, penalty=penalty)]
        rows.append(
            {
                "run_id": t["run_id"],
                "node_id": t["node_id"],
                "path": t["path"],
                "embedding_model": model,
                "steps": len(steps),
                "change_points": found,
            }
        )
    return rows


@dataclass
class NoiseReport:
    step: int
    model: str  # the generative model that made the step
    embedding_model: str
    floor: NoiseFloor
    drift: list[tuple[int, float]]  # the trajectory's step-to-step drift, for comparison


def noise_floor_of(
    store: Store,
    run: dict[str, Any],
    *,
    step: int,
    seeds: int,
    embedding: str,
    device: str | None = None,
) -> NoiseReport:
    """Regenerate step `step` of a run's trajectory from its stored input under `seeds` seeds,
    embed each, and measure their spread (and their distance to the stored output)."""
    import numpy as np

    from genarun.analysis.dynamics import drift_distance, noise_floor
    from genarun.experiments.reembed import _image, resolve_embedder, takes
    from genarun.models.base import Invocation
    from genarun.models.cache import model_cache
    from genarun.models.catalog import resolve_model

    trajs = tstore.trajectories_of(store, [run["id"]])
    if not trajs:
        raise UserError(f"run {run['id'][:8]} has no trajectory")
    t = trajs[0]
    rows = {s["step"]: s for s in tstore.stored_steps(store, run["id"], t["node_id"], t["path"])}
    if step not in rows:
        raise UserError(
            f"run {run['id'][:8]} has no step {step} (it has 0..{max(rows, default=-1)})"
        )
    network = json.loads(t["network"] or "[]")
    from genarun.experiments.reembed import run_aliases

    spec = resolve_model(rows[step]["model"], run_aliases(run))
    embedder = resolve_embedder(embedding, run)
    kind = rows[step]["kind"]
    if kind not in takes(embedder):
        raise UserError(
            f"step {step} is {'an' if kind == 'image' else 'a'} {kind}, which '{embedding}' does not embed; "
            f"choose a step of the other kind (the network is {' -> '.join(network)})"
        )
    folder = run.get("out_dir") or "."
    if step == 0:
        given: Any = t["start"]
    else:
        before = rows.get(step - 1)
        if before is None:
            raise UserError(f"step {step - 1}, the input of step {step}, is not stored")
        given = (
            _image(Path(folder), before["value"]) if before["kind"] == "image" else before["value"]
        )
    task = "image" if kind == "image" else ("caption" if not isinstance(given, str) else "generate")
    model = model_cache().get(spec, device)
    base_seed = int(t["seed"] or 0)
    outputs = model.run(task, [Invocation(task, given, base_seed + 1 + i) for i in range(seeds)])
    etask = "embed_image" if kind == "image" else "embed_text"
    emodel = model_cache().get(embedder, device)
    vectors = np.vstack(
        [
            np.asarray(v, np.float32)
            for v in emodel.run(etask, [Invocation(etask, o, 0) for o in outputs])
        ]
    )
    original = None
    if embedding in json.loads(rows[step]["embeddings"] or "{}"):
        steps, matrix = tstore.embedding_series(
            store, run["id"], t["node_id"], t["path"], embedding
        )
        if step in steps:
            original = matrix[steps.index(step)]
    s, x = _series(store, t, embedding)
    drift = []
    if len(s) > 1:
        d = drift_distance(x[1:], x[:-1])
        drift = [(int(a), float(b)) for a, b in zip(s[1:], d, strict=True)]
    return NoiseReport(step, rows[step]["model"], embedding, noise_floor(vectors, original), drift)
