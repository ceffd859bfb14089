"""`genarun dynamics`: FTLE over runs of one network and prompt, change points, noise floor."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from tests.helpers import query


def test_three_runs_of_six_steps_give_one_ftle_result_over_three_pairs(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    assert cli("run", tree("ftle.yaml")).exit_code == 0
    result = cli("dynamics", "ftle", "latest", "--csv", workdir / "f.csv", "--out", workdir / "p")
    assert result.exit_code == 0, result.output
    groups = [line for line in result.output.splitlines() if not line.startswith(" ")]
    groups = [g for g in groups if "pairs" in g]
    assert (
        groups == [groups[0]] and "dummy-t2i -> dummy-i2t | a red fox: 3 runs, 3 pairs" in groups[0]
    )
    with (workdir / "f.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and {r["steps"] for r in rows} == {"6"}
    assert (workdir / "p" / "ftle.png").stat().st_size > 1000
    assert (workdir / "p" / "ftle.csv").exists()

    changes = cli("dynamics", "changes", "latest", "--csv", workdir / "c.csv")
    assert changes.exit_code == 0, changes.output
    assert changes.output.count("6 steps, regimes begin at step") == 3

    run = query(workdir / "genarun.db", "SELECT id FROM runs LIMIT 1")[0]["id"]
    noise = cli("dynamics", "noise", run[:8], "--step", "1", "--seeds", "4", "--out", workdir / "n")
    assert noise.exit_code == 0, noise.output
    # The dummy captioner ignores its seed: the floor is exactly 0, every drift is above it.
    assert "spread between them: mean 0.0000, max 0.0000" in noise.output
    assert "above the floor at 5 of 5 steps" in noise.output
    with (workdir / "n" / "drift_vs_noise.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 5


def test_ftle_with_one_run_is_refused(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    assert cli("run", tree("ftle.yaml"), "--set", "seed=1").exit_code == 0
    result = cli("dynamics", "ftle", "latest")
    assert result.exit_code == 2
    assert "every such group here has one run" in result.output
    assert "Traceback" not in result.output


def test_paraphrases_compare_runs_whose_prompts_differ(
    tree: Callable[[str], Path], cli: Callable[..., Result]
) -> None:
    assert cli("run", tree("ftle_paraphrases.yaml")).exit_code == 0
    assert cli("dynamics", "ftle", "latest").exit_code == 2  # three prompts: groups of one
    result = cli("dynamics", "ftle", "latest", "--paraphrases")
    assert result.exit_code == 0, result.output
    assert (
        "dummy-t2i -> dummy-i2t | seed 5/" in result.output and "3 runs, 3 pairs" in result.output
    )
