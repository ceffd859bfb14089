"""Plots of trajectory dynamics, each with a CSV of its data beside it: finite-time Lyapunov
exponents per network, and a run's drift against the sampling-noise floor."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genarun.analysis.plots import new_figure, save_figure, wrap_text
from genarun.experiments.cluster_plots import write_csv

if TYPE_CHECKING:
    from genarun.experiments.dynamics import GroupResult, NoiseReport


def plot_ftle(results: list[GroupResult], rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """ftle.png: each pair's exponent as a point, per network (groups of one network side by
    side), with each group's pooled exponent as a bar; ftle.csv: one row per pair."""
    header = list(rows[0]) if rows else ["network", "group", "exponent"]
    written = [write_csv(out / "ftle.csv", header, [[r[k] for k in header] for r in rows])]
    networks = sorted({g.network for g in results})
    fig = new_figure(max(6.0, 1.6 * len(results) + 2), 5.0)
    ax = fig.add_subplot()
    ticks = []
    for x, g in enumerate(results):
        values = [p.exponent for p in g.result.pairs if math.isfinite(p.exponent)]
        colour = f"C{networks.index(g.network) % 10}"
        if math.isfinite(g.result.pooled):
            ax.bar(x, g.result.pooled, width=0.6, color=colour, alpha=0.35)
        ax.scatter([x] * len(values), values, color=colour, s=18, zorder=3)
        ticks.append(wrap_text(f"{g.network}\n{g.prompt[:40]}", 24))
    ax.axhline(0, color="0.4", linewidth=0.8)
    ax.set_xticks(range(len(results)), ticks, fontsize="x-small")
    ax.set_ylabel("exponent (log distance per step)")
    model = results[0].model if results else ""
    ax.set_title(
        wrap_text(f"Finite-time Lyapunov exponents of pairs of runs, '{model}' embeddings "
              "(points: pairs; bars: pooled fit per group)"),
        fontsize="medium",
    )  # fmt: skip
    written.append(save_figure(fig, out / "ftle.png"))
    return written


def plot_drift_vs_noise(report: NoiseReport, run: dict[str, Any], out: Path) -> list[Path]:
    """drift_vs_noise.png: the run's step-to-step drift with the noise floor (mean and max
    spread of regenerated outputs) as lines; drift_vs_noise.csv: its numbers."""
    f = report.floor
    rows = [[s, d, f.pairwise_mean, f.pairwise_max] for s, d in report.drift]
    written = [
        write_csv(
            out / "drift_vs_noise.csv",
            ["step", "drift_from_previous", "noise_mean", "noise_max"],
            rows,
        )
    ]
    fig = new_figure(8.0, 4.5)
    ax = fig.add_subplot()
    if report.drift:
        steps, drift = zip(*report.drift, strict=True)
        ax.plot(steps, drift, marker=".", label="drift from the previous step")
    ax.axhline(
        f.pairwise_mean,
        color="C3",
        linestyle="--",
        label=f"noise floor, mean ({f.pairwise_mean:.4f})",
    )
    ax.axhline(
        f.pairwise_max, color="C3", linestyle=":", label=f"noise floor, max ({f.pairwise_max:.4f})"
    )
    ax.set_xlabel("step")
    ax.set_ylabel("drift distance (orthogonal = √2)")
    ax.set_title(
        wrap_text(f"Run {run['id'][:8]}: drift against the noise of step {report.step} ({report.model}) "
              f"regenerated under {f.samples} seeds, '{report.embedding_model}' embeddings"),
        fontsize="medium",
    )  # fmt: skip
    ax.legend(fontsize="small")
    written.append(save_figure(fig, out / "drift_vs_noise.png"))
    return written
