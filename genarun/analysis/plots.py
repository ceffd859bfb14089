"""PNG plots of trajectory analyses, drawn with matplotlib's Agg canvas.

Figures are built with ``matplotlib.figure.Figure`` and an Agg canvas rather than pyplot, so
plotting never touches a global backend or figure registry and is safe in worker threads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from genarun.analysis._points import as_points
from genarun.analysis.drift import project_2d
from genarun.analysis.persistence import Diagrams

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100


def plot_diagram(diagrams: Diagrams, path: str | Path, *, title: str | None = None) -> Path:
    """Scatter each dimension's (birth, death) points; classes that never die sit on a top band."""
    fig = new_figure(5.5, 5.0)
    ax = fig.add_subplot()
    finite_values = np.concatenate(
        [d[np.isfinite(d)].ravel() for d in diagrams.diagrams] + [np.zeros(1)]
    )
    top = float(finite_values.max()) or 1.0
    inf_level = top * 1.1
    for dim, dgm in enumerate(diagrams.diagrams):
        if len(dgm) == 0:
            continue
        deaths = np.where(np.isinf(dgm[:, 1]), inf_level, dgm[:, 1])
        ax.scatter(dgm[:, 0], deaths, s=12, alpha=0.7, label=f"H{dim} ({len(dgm)})")
    ax.plot([0, inf_level], [0, inf_level], color="0.5", linewidth=0.8)
    ax.axhline(inf_level, color="0.5", linestyle="--", linewidth=0.8)
    ax.text(0, inf_level, " ∞", va="bottom", color="0.4")
    ax.set_xlim(-0.02 * inf_level, inf_level * 1.05)
    ax.set_ylim(-0.02 * inf_level, inf_level * 1.08)
    ax.set_xlabel(f"birth ({diagrams.metric} distance)")
    ax.set_ylabel("death")
    # Four significant digits: entropies of similar runs differ in the third.
    entropy = ", ".join(f"H{k} {e:.4g}" for k, e in enumerate(diagrams.entropy))
    # A long title (a run's matrix values) is wrapped, not cut off at the figure's edge, and
    # the entropy stays on its own line under it.
    heading = wrap_text(title) if title else f"Persistence diagram, {diagrams.n_points} points"
    ax.set_title(f"{heading}\nentropy {entropy}", fontsize="medium")
    if any(len(d) for d in diagrams.diagrams):
        ax.legend(loc="lower right")
    return save_figure(fig, path)


def plot_entropy_by_group(
    entropies: Mapping[str, Sequence[float]],
    path: str | Path,
    *,
    group_label: str = "group",
    title: str | None = None,
) -> Path:
    """Box plot with jittered points of persistence entropy per group (network, prompt, ...)."""
    if not entropies:
        raise ValueError("entropies is empty: give at least one group")
    labels = list(entropies)
    values = [np.asarray(entropies[label], dtype=np.float64) for label in labels]
    fig = new_figure(max(5.0, 1.1 * len(labels) + 2.0), 4.5)
    ax = fig.add_subplot()
    ax.boxplot(values, showfliers=False, widths=0.5)
    # Seeded jitter: the same data gives the same picture.
    rng = np.random.default_rng(0)
    for position, group in enumerate(values, start=1):
        jitter = rng.uniform(-0.12, 0.12, size=len(group))
        ax.scatter(np.full(len(group), position) + jitter, group, s=14, alpha=0.7, zorder=3)
    # Whole labels (a network names every model), wrapped rather than cut.
    ax.set_xticks(
        range(1, len(labels) + 1),
        [wrap_text(str(label), 24) for label in labels],
        rotation=20 if len(labels) > 4 else 0,
        fontsize="small",
    )
    ax.set_xlabel(group_label)
    ax.set_ylabel("persistence entropy")
    ax.set_title(wrap_text(title or f"Persistence entropy by {group_label}"))
    return save_figure(fig, path)


def plot_drift(
    drifts: Mapping[str, Sequence[float]],
    path: str | Path,
    *,
    steps: Mapping[str, Sequence[int]] | None = None,
    ylabel: str = "cosine distance from start",
    title: str | None = None,
) -> Path:
    """One line per run of a per-step series, e.g. :func:`drift_from_start` or step distances.

    ``steps[label]`` are the series' step numbers (default 0, 1, 2, ...): an embedding model that
    takes only texts or only images has a value at every other step of a two-model network, and
    must be drawn there, not squeezed onto consecutive steps.
    """
    from matplotlib.ticker import MaxNLocator

    if not drifts:
        raise ValueError("drifts is empty: give at least one run")
    fig = new_figure(7.0, 4.0)
    ax = fig.add_subplot()
    for label, series in drifts.items():
        values = np.asarray(series, dtype=np.float64)
        x = np.asarray(steps[label]) if steps and label in steps else np.arange(len(values))
        if len(x) != len(values):
            raise ValueError(f"run {label!r}: {len(x)} steps for {len(values)} values")
        ax.plot(
            x, values, label=wrap_text(label, 70), lw=1.2, marker="." if len(values) <= 40 else None
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(wrap_text(title or "Semantic drift"))
    _legend_outside(ax, len(drifts))
    return save_figure(fig, path)


def plot_trajectories_2d(
    trajectories: Mapping[str, np.ndarray], path: str | Path, *, title: str | None = None
) -> Path:
    """Draw runs as paths in one shared 2-D PCA projection; a circle marks each start."""
    if not trajectories:
        raise ValueError("trajectories is empty: give at least one run")
    arrays = [
        as_points(points, name=f"trajectory {label!r}") for label, points in trajectories.items()
    ]
    dims = {a.shape[1] for a in arrays}
    if len(dims) != 1:
        raise ValueError(f"trajectories have different dimensions {sorted(dims)}")
    # One projection for all runs, so their positions can be compared.
    flat = project_2d(np.concatenate(arrays))
    fig = new_figure(6.0, 6.0)
    ax = fig.add_subplot()
    offset = 0
    for label, array in zip(trajectories, arrays, strict=True):
        xy = flat[offset : offset + len(array)]
        offset += len(array)
        (line,) = ax.plot(xy[:, 0], xy[:, 1], lw=0.9, alpha=0.8, label=wrap_text(label, 70))
        if len(xy):
            ax.scatter(xy[:1, 0], xy[:1, 1], s=40, color=line.get_color(), edgecolors="black")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(wrap_text(title or "Trajectories (PCA)"))
    _legend_outside(ax, len(trajectories))
    return save_figure(fig, path)


def wrap_text(text: str, width: int = 60) -> str:
    """A long label or title broken into lines of `width` characters."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def _legend_outside(ax: Axes, entries: int) -> None:
    """A legend under the axes (inside, it hid the lines it names; beside them, it squeezed
    the plot), the figure growing to hold it; none past 12 entries."""
    if 0 < entries <= 12:
        fig = ax.get_figure()
        width, height = fig.get_size_inches()
        fig.set_size_inches(width, height + 0.22 * entries)
        fig.legend(fontsize="small", loc="outside lower center")


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib figure drawn without pyplot (no global state, no GUI backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """The figure written as a PNG at `path` (its folder made)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, format="png", dpi=DPI)
    return target


__all__ = ["plot_diagram", "plot_drift", "plot_entropy_by_group", "plot_trajectories_2d"]
