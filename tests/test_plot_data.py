"""`genarun tda plots`: each PNG has its data as CSV beside it; a matrix key with one value
gets no box plot; labels keep whole values."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from click.testing import Result


def test_every_plot_has_its_csv_and_single_value_keys_have_no_box(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    assert cli("run", tree("ftle.yaml")).exit_code == 0  # seed: 3 values, prompt: 1
    result = cli("tda", "plots", "latest", "--out", workdir / "plots")
    assert result.exit_code == 0, result.output
    assert "each with its data as CSV beside it" in result.output
    names = {p.name for p in (workdir / "plots").iterdir()}
    pngs = {n for n in names if n.endswith(".png")}
    assert {n.removesuffix(".png") + ".csv" for n in pngs} <= names
    assert "entropy_H1_by_seed.png" in pngs
    assert not any("by_prompt" in n for n in names)  # one prompt: nothing to compare
    with (workdir / "plots" / "drift_dummy-embed.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 6 and {r["trajectory"].split(" ", 1)[1] for r in rows} == {
        "1 a red fox",
        "2 a red fox",
        "3 a red fox",
    }
    with (workdir / "plots" / "entropy_H1_by_seed.csv").open() as f:
        assert [r["seed"] for r in csv.DictReader(f)] == ["1", "2", "3"]
