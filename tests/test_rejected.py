"""A tree rejected before it starts leaves nothing behind (no database, rows, folders, no
experiment that becomes `latest`), and commands asked to work on runs that give them nothing
to do say so and exit non-zero instead of writing nothing with exit 0."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from tests.helpers import TREES, query

# The second matrix combination names an unknown model: found only when that run's models
# are checked, after the first run's.
REJECTED = """genarun: 1
name: rejected
seed: 1
matrix:
  writer: [dummy, tiny-gpt3]
nodes:
  - id: text
    kind: generate
    model: "{{ writer }}"
    prompt: hi
"""


def _count(db: Path, table: str) -> int:
    return query(db, f"SELECT count(*) FROM {table}")[0][0]


def test_a_tree_rejected_before_it_starts_writes_nothing(
    cli: Callable[..., Result], workdir: Path
) -> None:
    rejected = workdir / "rejected.yaml"
    rejected.write_text(REJECTED)
    result = cli("run", rejected)
    assert result.exit_code == 2
    assert f"{rejected}:9 node 'text': unknown model 'tiny-gpt3'" in result.stderr
    assert "Traceback" not in result.output
    # Not even an empty database in the current folder, nor the tree's output folder.
    assert sorted(p.name for p in workdir.iterdir()) == ["rejected.yaml"]

    shutil.copy(TREES / "matrix.yaml", workdir / "matrix.yaml")
    assert cli("run", workdir / "matrix.yaml").exit_code == 0
    db = workdir / "genarun.db"
    before = {t: _count(db, t) for t in ("experiments", "runs", "executions", "logs")}
    latest = json.loads(cli("runs", "show", "latest", "--json").stdout)
    result = cli("run", rejected)
    assert result.exit_code == 2
    assert {t: _count(db, t) for t in before} == before
    assert not (workdir / "rejected").exists()
    assert json.loads(cli("runs", "show", "latest", "--json").stdout)["run"] == latest["run"]
    shown = cli("experiments", "show", "latest")
    assert shown.exit_code == 0 and "matrix" in shown.stdout


def test_latest_skips_an_empty_experiment_and_naming_one_is_an_error(
    cli: Callable[..., Result], workdir: Path
) -> None:
    """Databases of older versions hold an empty experiment for each rejected tree."""
    shutil.copy(TREES / "matrix.yaml", workdir / "matrix.yaml")
    assert cli("run", workdir / "matrix.yaml").exit_code == 0
    db = workdir / "genarun.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO experiments (id, name, created) VALUES (?, ?, ?)",
            ("e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0", "rejected", 4e9),  # the newest
        )
    result = cli("export", "data", "latest", "--out", workdir / "data", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert "runs.csv (4 rows)" in result.stdout
    result = cli("export", "data", "e0e0e0", "--out", workdir / "none", "--format", "csv")
    assert result.exit_code == 2
    assert "experiment e0e0e0e0 (rejected) has no runs" in result.stderr
    assert not (workdir / "none").exists()


def test_commands_with_nothing_to_do_say_so(cli: Callable[..., Result], workdir: Path) -> None:
    """tda and image exports of runs without trajectories: a message and exit 2, no folder."""
    shutil.copy(TREES / "matrix.yaml", workdir / "matrix.yaml")
    assert cli("run", workdir / "matrix.yaml").exit_code == 0
    for args, out in (
        (("tda", "plots", "latest", "--out"), "plots"),
        (("export", "images", "latest", "--out"), "images"),
        (("tda", "compute", "latest"), None),
        (("tda", "compare", "latest"), None),
    ):
        result = cli(*args, *([workdir / out] if out else []))
        assert result.exit_code == 2, (args, result.output)
        assert "no trajectories" in result.stderr or "no images in these runs" in result.stderr
        assert "wrote" not in result.stdout
        if out:
            assert not (workdir / out).exists()
