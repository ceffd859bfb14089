"""What a run is asked to do: the options of `genarun run` (and of resume and rerun)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genarun.graph.matrix import MAX_RUNS


@dataclass
class RunOptions:
    """How `genarun run` runs a tree: the command line's choices, passed to `run_tree`."""

    seed: int | str | None = None  # an int, or "random" (fresh entropy, recorded)
    overrides: dict[str, Any] = field(default_factory=dict)
    out: Path | None = None
    db: Path | None = None
    device: str | None = None
    batch_size: int = 16
    workers: int = 4
    skip: set[str] = field(default_factory=set)
    progress: Any = None
    only: set[str] = field(default_factory=set)  # run these subtrees, reuse what they need
    from_run: str | None = None  # where --only takes what it needs (default: latest run)
    cache: bool = True  # reuse identical stored executions from any run
    max_runs: int = MAX_RUNS  # the most runs the matrix may expand into (--max-runs)
    executor: str = "local"  # or "ray" (genarun.run.ray_backend)
    ray_address: str | None = None  # a Ray cluster to join (default: RAY_ADDRESS, or start one)
    # per-model or per-gpu (genarun.run.ray_sharing); default: GENARUN_RAY_ACTORS, or per-model
    ray_actors: str | None = None
    # Stop (resumable) once the runs' recorded spend reaches it (genarun.usage.budget).
    budget: float | None = None
