"""Plots of a clustering: each trajectory's cluster over its steps (a timeline) and the matrix
of transitions between clusters; each PNG has a CSV of its data beside it."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genarun.analysis.plots import new_figure, save_figure, wrap_text

if TYPE_CHECKING:
    from genarun.store.db import Store


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    """A plot's data beside it, for a reader who wants the numbers, not the picture."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def clustering_plots(store: Store, clustering: dict[str, Any], out: Path) -> list[Path]:
    """cluster_timeline.png/.csv and cluster_transitions.png/.csv for one clustering."""
    import numpy as np

    from genarun.experiments.clusters import trajectory_sequences, transition_tables
    from genarun.store.clusters import clusters_of

    cid = clustering["id"]
    model = clustering["embedding_model"]
    sequences = trajectory_sequences(store, cid)
    labels = sorted({label for pairs in sequences.values() for _, label in pairs})
    names = {r["label"]: r for r in clusters_of(store, cid)}
    written: list[Path] = []

    # Timeline: one row per trajectory, one cell per step, coloured by cluster (noise grey).
    keys = sorted(sequences)
    last = max((step for pairs in sequences.values() for step, _ in pairs), default=0)
    grid = np.full((len(keys), last + 1), np.nan)
    rows = []
    for i, key in enumerate(keys):
        for step, label in sequences[key]:
            grid[i, step] = label
            rows.append([*key, step, label])
    written.append(
        write_csv(
            out / "cluster_timeline.csv", ["run_id", "node_id", "path", "step", "cluster"], rows
        )
    )
    fig = new_figure(9.0, 1.5 + 0.25 * max(len(keys), 4))
    ax = fig.add_subplot()
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    palette = colormaps["tab20"].resampled(max(len(labels), 1))
    colours = [(0.8, 0.8, 0.8, 1.0) if lab == -1 else palette(n) for n, lab in enumerate(labels)]
    index = {lab: n for n, lab in enumerate(labels)}
    coded = (
        np.vectorize(lambda v: np.nan if np.isnan(v) else index[int(v)])(grid)
        if grid.size
        else grid
    )
    ax.imshow(
        np.ma.masked_invalid(coded),
        aspect="auto",
        interpolation="nearest",
        cmap=ListedColormap(colours or [(0.8, 0.8, 0.8, 1.0)]),
        vmin=-0.5,
        vmax=max(len(labels), 1) - 0.5,
    )
    ax.set_yticks(range(len(keys)), [f"{k[0][:8]} {k[1]}{k[2]}" for k in keys], fontsize="x-small")
    ax.set_xlabel("step")
    ax.set_title(
        wrap_text(
            f"Cluster of each step, clustering {cid[:8]} of '{model}' embeddings (grey: noise)"
        ),
        fontsize="medium",
    )
    written.append(save_figure(fig, out / "cluster_timeline.png"))

    # Transition matrix: counts of step-to-next-step moves, summed over trajectories.
    tables = transition_tables(store, cid)
    size = len(labels)
    matrix = np.zeros((size, size), dtype=int)
    for t in tables["cluster_transitions"]:
        matrix[index[t["from_cluster"]], index[t["to_cluster"]]] += t["count"]
    written.append(
        write_csv(
            out / "cluster_transitions.csv",
            ["from_cluster", "to_cluster", "count", "from_medoid", "to_medoid"],
            [
                [a, b, int(matrix[index[a], index[b]]), _name(names, a), _name(names, b)]
                for a in labels
                for b in labels
            ],
        )
    )
    fig = new_figure(6.0 + 0.15 * size, 5.0 + 0.15 * size)
    ax = fig.add_subplot()
    shown = ax.imshow(matrix, cmap="viridis")
    ticks = [("noise" if lab == -1 else str(lab)) for lab in labels]
    ax.set_xticks(range(size), ticks, fontsize="x-small", rotation=90)
    ax.set_yticks(range(size), ticks, fontsize="x-small")
    ax.set_xlabel("to cluster")
    ax.set_ylabel("from cluster")
    if size <= 15:
        for i in range(size):
            for j in range(size):
                if matrix[i, j]:
                    ax.text(
                        j,
                        i,
                        str(matrix[i, j]),
                        ha="center",
                        va="center",
                        fontsize="x-small",
                        color="w",
                    )
    fig.colorbar(shown, ax=ax, label="moves (step to next step)")
    ax.set_title(
        wrap_text(f"Transitions between clusters, clustering {cid[:8]} of '{model}' embeddings"),
        fontsize="medium",
    )
    written.append(save_figure(fig, out / "cluster_transitions.png"))
    return written


def _name(names: dict[int, dict[str, Any]], label: int) -> str:
    row = names.get(label)
    if row is None:
        return "noise" if label == -1 else ""
    return " ".join(str(row.get("medoid_value") or "").split())[:200]
