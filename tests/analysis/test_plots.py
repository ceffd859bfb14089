"""Every plot writes a valid PNG of a sensible size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genarun.analysis import drift_from_start, persistence_diagrams
from genarun.analysis.plots import (
    plot_diagram,
    plot_drift,
    plot_entropy_by_group,
    plot_trajectories_2d,
)


def walks(count: int = 3, steps: int = 60, dims: int = 24) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        f"run {i}": np.cumsum(rng.standard_normal((steps, dims)), axis=0) + 5 for i in range(count)
    }


def assert_png(path: Path, min_width: int = 400, min_height: int = 300) -> None:
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert min_width <= width <= 3000 and min_height <= height <= 3000
        extrema = image.convert("L").getextrema()
        assert extrema[0] < extrema[1]  # something was drawn


def test_plot_diagram(tmp_path: Path) -> None:
    dgms = persistence_diagrams(next(iter(walks().values())))
    out = plot_diagram(dgms, tmp_path / "nested" / "diagram.png")
    assert out == tmp_path / "nested" / "diagram.png"
    assert_png(out)
    # An empty diagram still draws its axes.
    assert_png(plot_diagram(persistence_diagrams(np.empty((0, 3))), tmp_path / "empty.png"))


def test_plot_entropy_by_group(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    groups = {name: rng.uniform(1, 3, 8).tolist() for name in ("sd-turbo>blip", "flux>moondream")}
    groups["single"] = [2.0]
    assert_png(plot_entropy_by_group(groups, tmp_path / "entropy.png", group_label="network"))
    with pytest.raises(ValueError, match="empty"):
        plot_entropy_by_group({}, tmp_path / "none.png")


def test_plot_drift(tmp_path: Path) -> None:
    series = {label: drift_from_start(points) for label, points in walks().items()}
    assert_png(plot_drift(series, tmp_path / "drift.png"))


def test_plot_trajectories_2d(tmp_path: Path) -> None:
    assert_png(plot_trajectories_2d(walks(), str(tmp_path / "paths.png")))
    with pytest.raises(ValueError, match="different dimensions"):
        plot_trajectories_2d({"a": np.ones((3, 2)), "b": np.ones((3, 4))}, tmp_path / "bad.png")


def test_drift_is_drawn_at_its_steps_and_long_titles_wrap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A text-only embedding model of a painter/captioner network has values at steps 1, 3, 5:
    # they were drawn at 0, 1, 2. A run's matrix values in a title ran off the figure.
    from genarun.analysis import plots

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig) or Path(path))
    plot_drift({"a": [0.1, 0.2, 0.3]}, tmp_path / "d.png", steps={"a": [1, 3, 5]})
    (ax,) = figures[0].axes
    assert list(ax.lines[0].get_xdata()) == [1, 3, 5]
    assert all(float(t).is_integer() for t in ax.get_xticks())
    with pytest.raises(ValueError, match="3 steps for 2 values"):
        plot_drift({"a": [0.1, 0.2]}, tmp_path / "bad.png", steps={"a": [1, 3, 5]})
    title = "0123abcd network=painter>captioner seed=545654 prompt=Test prompt 1 embedding=embedder (embedder)"
    plot_diagram(
        persistence_diagrams(next(iter(walks().values()))), tmp_path / "t.png", title=title
    )
    shown = figures[-1].axes[0].get_title()
    assert all(len(line) <= 60 for line in shown.splitlines())
    assert " ".join(shown.splitlines()[:-1]) == title and shown.splitlines()[-1].startswith(
        "entropy H0"
    )
