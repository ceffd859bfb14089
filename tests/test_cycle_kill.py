"""kill -9 in the middle of a matrix experiment of trajectories, then `genarun resume EXPERIMENT`.

No finished step, embedding or diagram may be redone or lost, and every stored row must equal
an uninterrupted run's (the dummy models are deterministic, so equal means bit for bit).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from tests.helpers import PATIENCE, TREES, query

TREE = "cycle_kill.yaml"
RUNS, STEPS = 6, 12


def _run(tree: Path, db: Path, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "genarun", "run", str(tree), "--db", str(db), "--out", str(out)],
        cwd=tree.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "GENARUN_DEVICE": "cpu"},
    )


def _steps_stored(db: Path) -> int:
    try:
        return query(db, "SELECT count(*) AS n FROM trajectory_steps")[0]["n"] if db.exists() else 0
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def _rows(db: Path) -> dict[str, dict[Any, Any]]:
    """Every step, embedding and diagram, keyed by the run's matrix values (run ids differ)."""
    runs = {r["id"]: r["bindings"] for r in query(db, "SELECT id, bindings FROM runs")}
    steps = {
        (runs[r["run_id"]], r["step"]): (r["sha256"], r["seed"], r["model"])
        for r in query(db, "SELECT * FROM trajectory_steps")
    }
    vectors = {
        (runs[r["run_id"]], r["item"], r["model"]): r["vector"]
        for r in query(db, "SELECT * FROM embeddings")
    }
    diagrams = {
        (runs[r["run_id"]], r["embedding_model"]): (r["diagrams"], r["entropy"])
        for r in query(db, "SELECT * FROM persistence")
    }
    return {"steps": steps, "embeddings": vectors, "persistence": diagrams}


Rows = dict[str, dict[Any, Any]]


@pytest.fixture
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], Rows]]:
    """The rows of an uninterrupted run of the tree, in a process started at once and read
    when first asked for: it runs while the test kills and resumes its twin (most of either
    is waiting: the dummy models' delays, a worker process importing ripser)."""
    base = tmp_path_factory.mktemp("reference")
    tree = base / TREE
    tree.write_text((TREES / TREE).read_text())
    proc = _run(tree, base / "ref.db", base / "out")
    rows: Rows = {}

    def read() -> Rows:
        if not rows:
            _out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            rows.update(_rows(base / "ref.db"))
        return rows

    yield read
    if proc.poll() is None:  # the test failed before it asked
        proc.kill()
        proc.communicate()


# Slow: three genarun processes' worth of work (the reference, the killed run, the resume),
# two of them starting a worker that imports the persistence engines; 19.6 s in the fast suite
# at load 8-10 even with the reference run alongside (11.7 s + 7.5 s before, at load 5).
@pytest.mark.slow
def test_kill_9_mid_experiment_then_resume_the_experiment(
    workdir: Path, cli: Callable[..., Result], reference: Callable[[], Rows]
) -> None:
    tree = workdir / TREE
    tree.write_text((TREES / TREE).read_text())
    db = workdir / "kill.db"
    proc = _run(tree, db, workdir / "out")
    deadline = time.time() + PATIENCE
    while _steps_stored(db) < RUNS * STEPS // 3 and proc.poll() is None:
        assert time.time() < deadline, "the experiment never got a third of the way"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=PATIENCE)
    assert proc.returncode == -signal.SIGKILL
    # A row's id with its creation time (steps) or its vector (embeddings): a redone step or
    # embedding would be a new row, or the same id written again.
    columns = {"trajectory_steps": "id, created", "embeddings": "id, vector"}
    before = {t: {tuple(r) for r in query(db, f"SELECT {c} FROM {t}")} for t, c in columns.items()}
    assert 0 < len(before["trajectory_steps"]) < RUNS * STEPS

    # What a researcher sees: crashed runs, interrupted trajectories, the progress of every
    # stage against what the experiment will have, and how to finish it.
    experiment = query(db, "SELECT id FROM experiments")[0]["id"]
    shown = cli("experiments", "show", "latest", "--db", db)
    assert "crashed" in shown.output and "interrupted" in shown.output
    assert f"genarun resume {experiment[:8]}" in shown.output
    progress = json.loads(cli("experiments", "show", "latest", "--db", db, "--json").output)
    assert "interrupted" in cli("runs", "list", "--db", db).output

    unfinished = len(query(db, "SELECT id FROM runs WHERE status != 'completed'"))
    result = cli("resume", experiment[:8], "--db", db)
    assert result.exit_code == 0, result.output
    assert result.output.count("resuming run") == unfinished > 0  # the experiment's, at once
    assert "trajectory steps kept: " in result.output
    assert {r["status"] for r in query(db, "SELECT status FROM runs")} == {"completed"}

    # Nothing finished before the kill was redone: the same rows, untouched ...
    for table, rows in before.items():
        assert rows <= {tuple(r) for r in query(db, f"SELECT {columns[table]} FROM {table}")}
    # ... nothing stored twice ...
    keys = Counter(
        (r["run_id"], r["step"]) for r in query(db, "SELECT run_id, step FROM trajectory_steps")
    )
    assert set(keys.values()) == {1}
    embedded = Counter(
        (r["run_id"], r["item"], r["model"])
        for r in query(db, "SELECT run_id, item, model FROM embeddings")
    )
    assert set(embedded.values()) == {1}
    # ... and every step, vector and diagram equals the uninterrupted run's.
    assert _rows(db) == reference()
    # The progress shown before the resume counted every embedding the experiment has
    # (dummy-text-embed takes only texts: the outputs it will embed, not all of them).
    assert progress["stages"]["embeddings"]["total"] == len(reference()["embeddings"])
    again = cli("resume", experiment[:8], "--db", db)
    assert again.exit_code == 2 and "nothing to resume" in again.output


def test_seed_random_survives_kill_9_resume_and_rerun(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    """A killed `seed: random` experiment resumes drawing fresh randomness at every step: it
    was resumed with one fixed seed per run (seed_random 0), so every trajectory stopped at a
    repeat, another experimental condition than the one the tree asks for."""
    tree = workdir / "cycle_kill_random.yaml"
    tree.write_text((TREES / "cycle_kill_random.yaml").read_text())
    db = workdir / "random.db"
    proc = _run(tree, db, workdir / "out")
    deadline = time.time() + PATIENCE
    while _steps_stored(db) < 3 * 12 // 3 and proc.poll() is None:
        assert time.time() < deadline, "the experiment never got a third of the way"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=PATIENCE)
    assert proc.returncode == -signal.SIGKILL
    kept = {
        (r["run_id"], r["step"]) for r in query(db, "SELECT run_id, step FROM trajectory_steps")
    }
    assert 0 < len(kept) < 3 * 12
    # A database written before runs.seed_random: resume tells the mode from the trajectories.
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET seed_random = NULL WHERE rowid % 2 = 0")

    result = cli("resume", "latest", "--db", db)
    assert result.exit_code == 0, result.output
    runs = query(db, "SELECT id, status, seed_random FROM runs")
    assert [(r["status"], r["seed_random"]) for r in runs] == [("completed", 1)] * 3
    trajectories = query(db, "SELECT * FROM trajectories")
    assert [(t["seed_random"], t["stop_reason"], t["length"]) for t in trajectories] == [
        (1, "max_steps", 12)
    ] * 3
    for run in runs:
        steps = query(db, "SELECT step, seed FROM trajectory_steps WHERE run_id = ?", run["id"])
        resumed = [s["seed"] for s in steps if (run["id"], s["step"]) not in kept]
        assert resumed, "the resume ran no step of this run"
        assert len({s["seed"] for s in steps}) == 12  # fresh at every step, before and after

    # A rerun of one of its runs keeps the mode too.
    source = runs[0]["id"]
    result = cli("rerun", source[:8], "--node", "traj", "--db", db)
    assert result.exit_code == 0, result.output
    new = query(db, "SELECT id, seed_random FROM runs WHERE source_run_id = ?", source)[0]
    assert new["seed_random"] == 1
    traj = query(db, "SELECT * FROM trajectories WHERE run_id = ?", new["id"])[0]
    assert (traj["seed_random"], traj["stop_reason"], traj["length"]) == (1, "max_steps", 12)
    steps = query(db, "SELECT seed FROM trajectory_steps WHERE run_id = ?", new["id"])
    assert len({s["seed"] for s in steps}) == 12
    shown = json.loads(cli("runs", "show", new["id"][:8], "--db", db, "--json").output)
    assert shown["seed_random"] is True
