"""`genarun tda plots`: PNG figures of an experiment's trajectories, drawn by genarun.analysis."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genarun.experiments.cluster_plots import write_csv
from genarun.experiments.topology import diagrams_for, require_keys
from genarun.models.weights import resolved_text
from genarun.store import trajectories as tstore
from genarun.store.reports import run_models

if TYPE_CHECKING:
    from genarun.analysis.drift import DriftMetric
    from genarun.store.db import Store


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")[:60] or "x"


def _value(v: Any, models: dict[str, dict[str, str]] | None = None) -> str:
    """A matrix value for a label; model names (a network, an embedder) with what they resolved
    to beside them: `painter>captioner (tiny-sd>tiny-blip)`."""
    names = v if isinstance(v, list) else [v]
    shown = ">".join(map(str, names))
    if models and names and all(isinstance(n, str) and n in models for n in names):
        targets = ">".join(models[n]["model"] for n in names)
        if targets != shown:
            return f"{shown} ({targets})"
    return shown


def experiment_plots(
    store: Store,
    runs: list[dict[str, Any]],
    out: Path,
    *,
    maxdim: int = 1,
    drift: DriftMetric = "cosine",
) -> list[Path]:
    """Persistence diagrams per run, entropy grouped by each matrix key (with more than one
    value) and by embedding model, drift from the start prompt over the steps (`drift`: its
    definition), and trajectories projected to 2-D; each PNG with a CSV of its data beside it."""
    import numpy as np

    from genarun.analysis import drift_from_start
    from genarun.analysis.drift import DRIFT_LABELS
    from genarun.analysis.plots import (
        plot_diagram,
        plot_drift,
        plot_entropy_by_group,
        plot_trajectories_2d,
    )

    by_id = {r["id"]: r for r in runs}
    models: dict[str, dict[str, str]] = {}  # every run's model names -> what they resolved to
    for r in runs:
        models.update(run_models(r))
    keys = require_keys(store, list(by_id), maxdim)  # nothing to plot: said, nothing written
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    entropy_rows: list[tuple[dict[str, Any], str, list[float]]] = []
    for key in keys:
        diagrams, _fresh = diagrams_for(store, key)
        bindings = json.loads(by_id[key.run_id]["bindings"] or "{}")
        entropy_rows.append((bindings, key.model, list(diagrams.entropy)))
        label = " ".join(f"{k}={_value(v, models)}" for k, v in bindings.items())
        index = "" if key.path == "[]" else _slug(key.path)
        name = f"diagram_{key.run_id[:8]}_{key.node_id}{index}_{_slug(key.model)}.png"
        shown = resolved_text(key.model, models.get(key.model))
        written.append(
            plot_diagram(diagrams, out / name, title=f"{key.run_id[:8]} {label} ({shown})")
        )
        written.append(
            write_csv(
                (out / name).with_suffix(".csv"),
                ["homology_dim", "birth", "death", "entropy"],
                [
                    [dim, float(b), float(d), diagrams.entropy[dim]]
                    for dim, dgm in enumerate(diagrams.diagrams)
                    for b, d in dgm
                ],
            )
        )
    # Entropy grouped by every matrix key and by embedding model, per homology dimension.
    for dim in range(maxdim + 1):
        groupings: dict[str, dict[str, list[float]]] = {"embedding_model": {}}
        for bindings, model, entropy in entropy_rows:
            if dim >= len(entropy):
                continue
            groupings["embedding_model"].setdefault(_value(model, models), []).append(entropy[dim])
            for k, v in bindings.items():
                groupings.setdefault(k, {}).setdefault(_value(v, models), []).append(entropy[dim])
        for group, values in groupings.items():
            # A key with one value (one prompt for every run) compares nothing: no box of it.
            if len(values) < 2:
                continue
            target = out / f"entropy_H{dim}_by_{_slug(group)}.png"
            written.append(
                plot_entropy_by_group(
                    values,
                    target,
                    group_label=group,
                    title=f"H{dim} persistence entropy by {group}",
                )
            )
            written.append(
                write_csv(
                    target.with_suffix(".csv"),
                    [group, "homology_dim", "entropy"],
                    [[label, dim, e] for label, es in values.items() for e in es],
                )
            )
    # Drift and 2-D trajectories, one figure per embedding model.
    for model in sorted({k.model for k in keys}):
        drifts: dict[str, Any] = {}
        drift_steps: dict[str, list[int]] = {}
        paths: dict[str, Any] = {}
        for key in (k for k in keys if k.model == model):
            steps, matrix = tstore.embedding_series(store, key.run_id, key.node_id, key.path, model)
            if not steps:
                continue
            start = matrix[steps.index(-1)] if -1 in steps else None
            points = matrix[[i for i, s in enumerate(steps) if s >= 0]]
            if len(points) == 0:
                continue
            bindings = json.loads(by_id[key.run_id]["bindings"] or "{}")
            # Whole values: a network's every model, a prompt in full (the legend wraps).
            label = f"{key.run_id[:6]} " + " ".join(_value(v, models) for v in bindings.values())
            drifts[label] = drift_from_start(points, start, drift)
            drift_steps[label] = [s for s in steps if s >= 0]
            paths[label] = points
        if drifts:
            written.append(
                write_csv(
                    out / f"drift_{_slug(model)}.csv",
                    ["trajectory", "step", f"drift_{drift}"],
                    [
                        [label, step, float(value)]
                        for label, series in drifts.items()
                        for step, value in zip(drift_steps[label], series, strict=True)
                    ],
                )
            )
            written.append(
                plot_drift(
                    drifts,
                    out / f"drift_{_slug(model)}.png",
                    steps=drift_steps,
                    ylabel=DRIFT_LABELS[drift],
                    title=f"Semantic drift from the start prompt "
                    f"({resolved_text(model, models.get(model))}, {drift})",
                )
            )
            dims = {p.shape[1] for p in paths.values()}
            if len(dims) == 1:
                from genarun.analysis import project_2d

                flat = project_2d(np.concatenate(list(paths.values())))
                rows, offset = [], 0
                for label, array in paths.items():
                    for step, (x, y) in zip(
                        drift_steps[label], flat[offset : offset + len(array)], strict=True
                    ):
                        rows.append([label, step, float(x), float(y)])
                    offset += len(array)
                written.append(
                    write_csv(
                        out / f"trajectories_2d_{_slug(model)}.csv",
                        ["trajectory", "step", "pc1", "pc2"],
                        rows,
                    )
                )
                written.append(
                    plot_trajectories_2d(
                        paths,
                        out / f"trajectories_2d_{_slug(model)}.png",
                        title=f"Trajectories, PCA ({resolved_text(model, models.get(model))})",
                    )
                )
    return written
