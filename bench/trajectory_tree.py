"""The tree the trajectory benchmarks run: one `cycle` node that paints and captions in turn and
embeds every step, once per seed of the matrix (bench/gpu_trajectories.py with real models,
bench/gil_contention.py and bench/scheduler_gap.py with fakes). Imported by those scripts from
their own folder."""

from __future__ import annotations

from typing import Any


def fake_models(
    provider: str, ids: tuple[str, str, str], *, size: int, batch: int
) -> dict[str, dict[str, Any]]:
    """The painter, captioner and embedder of a fake provider (model ids in that order)."""
    options = {"max_batch": batch}
    painter, captioner, embedder = ids
    return {
        "painter": {
            "provider": provider,
            "id": painter,
            "options": {**options, "width": size, "height": size},
        },
        "captioner": {"provider": provider, "id": captioner, "options": options},
        "embedder": {"provider": provider, "id": embedder, "options": options},
    }


def cycle_tree(
    name: str,
    models: dict[str, dict[str, Any]],
    seeds: list[int],
    *,
    start: str,
    steps: int,
    tokens: int,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The tree: `models` names painter, captioner and embedder; one run per seed."""
    cycle: dict[str, Any] = {
        "id": "traj",
        "kind": "cycle",
        "network": ["painter", "captioner"],
        "start": start,
        "steps": steps,
        "stop_on_repeat": False,
        "embed": ["embedder"],
        "max_tokens": tokens,
    }
    if settings is not None:
        cycle["settings"] = settings
    return {
        "genarun": 1,
        "name": name,
        "models": models,
        "matrix": {"seed": seeds},
        "nodes": [cycle],
    }
