"""Managing stored experiments: `genarun embed` with another model, `export db`, `experiments
delete`, `export images --every --limit`."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from genarun.cli import main
from tests.helpers import query


@pytest.fixture
def ran(tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path) -> Path:
    result = cli("run", tree("ftle.yaml"))
    assert result.exit_code == 0, result.output
    return workdir / "genarun.db"


def test_embed_past_runs_with_another_model_then_diagrams(
    ran: Path, cli: Callable[..., Result]
) -> None:
    result = cli("embed", "latest", "--model", "dummy-text-embed", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    # 3 trajectories x (3 captions + the start prompt); the images are not texts
    assert (
        "embedded 12 outputs of 3 trajectories with 'dummy-text-embed' (0 had one" in result.output
    )
    rows = query(ran, "SELECT COUNT(*) AS n FROM embeddings WHERE model = 'dummy-text-embed'")
    assert rows[0]["n"] == 12
    again = cli("embed", "latest", "--model", "dummy-text-embed")
    assert "embedded 0 outputs" in again.output and "(9 had one already)" in again.output
    assert cli("tda", "compute", "latest", "--embedding", "dummy-text-embed").exit_code == 0
    diagrams = query(
        ran, "SELECT points FROM persistence WHERE embedding_model = 'dummy-text-embed'"
    )
    assert [d["points"] for d in diagrams] == [3, 3, 3]
    assert cli("doctor").exit_code == 0  # each step's references name the new vectors


def test_embed_with_a_model_that_cannot_embed_is_refused(
    ran: Path, cli: Callable[..., Result]
) -> None:
    before = query(ran, "SELECT COUNT(*) AS n FROM embeddings")[0]["n"]
    result = cli("embed", "latest", "--model", "dummy-i2t")
    assert result.exit_code == 2
    assert "'dummy-i2t' cannot embed (it does: caption)" in result.output
    assert query(ran, "SELECT COUNT(*) AS n FROM embeddings")[0]["n"] == before


def test_export_db_copies_an_experiment_with_everything(
    ran: Path, cli: Callable[..., Result], workdir: Path
) -> None:
    assert cli("cluster", "latest", "--min-cluster-size", "2").exit_code == 0
    out = workdir / "other.db"
    result = cli("export", "db", "latest", "--out", out)
    assert result.exit_code == 0, result.output
    for table in ("runs", "executions", "embeddings", "trajectory_steps", "cluster_labels"):
        assert query(out, f"SELECT COUNT(*) AS n FROM {table}") == query(
            ran, f"SELECT COUNT(*) AS n FROM {table}"
        )
    assert cli("doctor", "--db", out).exit_code == 0
    again = cli("export", "db", "latest", "--out", out)
    assert again.exit_code == 2 and "nothing was copied" in again.output
    # Deleting the copy keeps the folders, which the original's runs still name.
    deleted = cli("experiments", "delete", "latest", "--db", out, "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert "0 folders" in deleted.output
    folder = Path(query(ran, "SELECT out_dir FROM experiments")[0]["out_dir"])
    assert folder.is_dir()


def test_experiments_delete_asks_and_removes_rows_and_folders(
    ran: Path, cli: Callable[..., Result]
) -> None:
    folder = Path(query(ran, "SELECT out_dir FROM experiments")[0]["out_dir"])
    runner = CliRunner()
    kept = runner.invoke(main, ["experiments", "delete", "latest"], input="n\n")
    assert kept.exit_code == 0 and "nothing was deleted" in kept.output
    assert folder.is_dir() and query(ran, "SELECT COUNT(*) AS n FROM runs")[0]["n"] == 3
    gone = runner.invoke(main, ["experiments", "delete", "latest"], input="y\n")
    assert gone.exit_code == 0, gone.output
    assert "deleted experiment" in gone.output and "3 runs" in gone.output
    assert not folder.exists()
    for table in ("runs", "executions", "embeddings", "trajectories", "trajectory_steps", "logs"):
        assert query(ran, f"SELECT COUNT(*) AS n FROM {table}")[0]["n"] == 0
    assert cli("doctor").exit_code == 0


def test_deleting_a_running_experiment_is_refused(ran: Path, cli: Callable[..., Result]) -> None:
    import os

    conn = sqlite3.connect(ran)
    with conn:  # this very process holds it: alive
        conn.execute(
            "UPDATE runs SET status = 'running', pid = ?, host = ?",
            (os.getpid(), socket.gethostname()),
        )
    conn.close()
    result = cli("experiments", "delete", "latest", "--yes")
    assert result.exit_code == 2
    assert "is running" in result.output and "nothing was deleted" in result.output
    assert query(ran, "SELECT COUNT(*) AS n FROM runs")[0]["n"] == 3


def test_export_images_every_and_limit(
    ran: Path, cli: Callable[..., Result], workdir: Path
) -> None:
    # 6 steps of [t2i, i2t]: images at steps 0, 2, 4 of each of 3 runs
    result = cli("export", "images", "latest", "--every", "2", "--out", workdir / "a")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (workdir / "a").iterdir())
    assert len(names) == 6 and all(n.endswith(("step0000.png", "step0004.png")) for n in names)
    limited = cli("export", "images", "latest", "--limit", "4", "--out", workdir / "b")
    assert limited.exit_code == 0 and len(list((workdir / "b").iterdir())) == 4
