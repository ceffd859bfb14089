"""Managing stored experiments: `genarun embed` with another model, `export db`, `experiments
delete`, `export images --every --limit`."""

from __future__ import annotations

import json
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


def test_export_images_of_image_nodes_with_their_metadata(
    cli: Callable[..., Result], workdir: Path
) -> None:
    # PANIC-TDA's "export images from one or all runs": a run's pictures are not all in
    # trajectories; the covers an image node painted are exported too, with what made them.
    (workdir / "covers.yaml").write_text(
        """genarun: 1
name: covers
seed: 5
models: {painter: dummy-t2i}
nodes:
  - id: cover
    kind: image
    foreach: range(3)
    model: painter
    prompt: "Cover {{ index }}, [ink | pastel]"
  - id: traj
    kind: cycle
    network: [dummy-t2i, dummy-i2t]
    start: a red fox
    steps: 2
"""
    )
    assert cli("run", workdir / "covers.yaml").exit_code == 0
    result = cli("export", "images", "all", "--format", "jpeg", "--out", workdir / "all")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (workdir / "all").iterdir())
    run = names[0][:8]
    assert names == [
        f"{run}_cover-0.jpeg",
        f"{run}_cover-1.jpeg",
        f"{run}_cover-2.jpeg",
        f"{run}_traj_step0000.jpeg",
    ]
    from PIL import Image

    rows = query(
        workdir / "genarun.db", "SELECT seed, params FROM executions WHERE node_id = 'cover'"
    )
    with Image.open(workdir / "all" / f"{run}_cover-1.jpeg") as img:
        meta = json.loads(img.getexif()[0x010E])
    assert meta["node"] == "cover" and meta["item"] == "[1]" and meta["model"] == "painter"
    assert meta["model_id"] == "dummy-t2i" and meta["provider"] == "dummy"
    assert meta["seed"] == rows[1]["seed"]
    assert meta["prompt"] == json.loads(rows[1]["params"])["prompt"]
    assert meta["prompt"].startswith("Cover 1, ") and "[" not in meta["prompt"]
    every = cli("export", "images", "latest", "--every", "2", "--out", workdir / "every")
    assert sorted(p.name for p in (workdir / "every").iterdir()) == [
        f"{run}_cover-0.png",
        f"{run}_cover-2.png",
        f"{run}_traj_step0000.png",
    ]
    assert every.exit_code == 0
    limited = cli("export", "images", "latest", "--limit", "2", "--out", workdir / "two")
    assert limited.exit_code == 0 and len(list((workdir / "two").iterdir())) == 2
