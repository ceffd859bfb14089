"""`genarun resume`: real kill -9 and Ctrl-C of `genarun run` subprocesses, then resume.

No finished execution may be lost or executed twice, and the resumed run's output.json must
equal an uninterrupted run's.
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
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.helpers import PATIENCE, TREES, ctrl_c_reaches_it, query

SLOW = "resume_slow.yaml"
EXECUTIONS = 21  # plan, 6 x (chapter, picture, caption), blurb, verdict


def _start(tree: Path, db: Path, out: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "GENARUN_DEVICE": "cpu"}
    return subprocess.Popen(
        [sys.executable, "-m", "genarun", "run", str(tree), "--db", str(db), "--out", str(out)],
        cwd=tree.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_reaches_it,
        env=env,
    )


def _freeze_at(
    db: Path, proc: subprocess.Popen[str], done: int, timeout: float = PATIENCE
) -> sqlite3.Connection:
    """Once the run is stored and `done` executions have finished, hold the database's write
    lock and return its connection: the run can record nothing more (it waits on the lock), so
    it is certainly unfinished when the test interrupts it. The caller closes the connection."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            err = proc.communicate()[1]
            raise AssertionError(f"the run ended before {done} finished executions: {err}")
        if db.exists():
            conn = sqlite3.connect(db, timeout=0.2, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")  # the write lock; readers still read
                stored = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
                finished = conn.execute(
                    "SELECT count(*) FROM executions WHERE status = 'done'"
                ).fetchone()[0]
                if stored and finished >= done:
                    return conn
                conn.execute("ROLLBACK")
            except sqlite3.OperationalError:  # tables not created yet, or the run is writing
                pass
            conn.close()
        time.sleep(0.01)
    raise AssertionError(f"the run never reached {done} finished executions")


def _output(folder: str | Path) -> dict:
    return json.loads((Path(folder) / "output.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """output.json of an uninterrupted run of the slow tree."""
    base = tmp_path_factory.mktemp("reference")
    tree = base / SLOW
    tree.write_text((TREES / SLOW).read_text())
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "genarun",
            "run",
            str(tree),
            "--db",
            str(base / "ref.db"),
            "--out",
            str(base / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "GENARUN_DEVICE": "cpu"},
    )
    assert proc.returncode == 0, proc.stderr
    folder = query(base / "ref.db", "SELECT out_dir FROM runs")[0]["out_dir"]
    return _output(folder)


def _check_resumed(db: Path, run_id: str, reference: dict) -> None:
    run = query(db, "SELECT status, out_dir FROM runs WHERE id = ?", run_id)[0]
    assert run["status"] == "completed"
    rows = query(
        db,
        "SELECT node_id, path FROM executions WHERE run_id = ? AND status = 'done' AND reused_from IS NULL",
        run_id,
    )
    per_item = Counter((r["node_id"], r["path"]) for r in rows)
    assert len(per_item) == EXECUTIONS
    assert set(per_item.values()) == {1}, [k for k, n in per_item.items() if n > 1]
    assert _output(run["out_dir"]) == reference


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [0, 7, 14])
def test_kill_9_then_resume(
    kill_after: int, workdir: Path, cli: Callable[..., Result], reference: dict
) -> None:
    tree = workdir / SLOW
    tree.write_text((TREES / SLOW).read_text())
    db = workdir / "kill.db"
    proc = _start(tree, db, workdir / "out")
    lock = _freeze_at(db, proc, kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=PATIENCE)
    lock.close()
    runs = query(db, "SELECT id, status FROM runs")
    run_id = runs[0]["id"]
    assert runs[0]["status"] == "running"  # kill -9 leaves no chance to record anything
    finished = query(db, "SELECT count(*) AS n FROM executions WHERE status = 'done'")[0]["n"]
    assert kill_after <= finished < EXECUTIONS
    listed = cli("runs", "list", "--db", db)
    assert "crashed" in listed.output
    result = cli("resume", run_id[:10], "--db", db)
    assert result.exit_code == 0, result.output
    assert "had finished" in result.output
    _check_resumed(db, run_id, reference)


@pytest.mark.slow
def test_ctrl_c_marks_interrupted_and_says_how_to_resume(
    workdir: Path, cli: Callable[..., Result], reference: dict
) -> None:
    tree = workdir / SLOW
    tree.write_text((TREES / SLOW).read_text())
    db = workdir / "int.db"
    proc = _start(tree, db, workdir / "out")
    lock = _freeze_at(db, proc, 3)  # the run cannot finish before the signal lands
    proc.send_signal(signal.SIGINT)
    lock.close()
    _out, err = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 130, err
    run_id = query(db, "SELECT id FROM runs")[0]["id"]
    assert f"genarun resume {run_id[:12]} --db {db}" in err
    assert query(db, "SELECT status FROM runs")[0]["status"] == "interrupted"
    result = cli("resume", run_id, "--db", db)
    assert result.exit_code == 0, result.output
    _check_resumed(db, run_id, reference)


def test_interrupted_foreach_has_one_entry_per_item(workdir: Path) -> None:
    # Ctrl-C once `plan` is stored, while the six chapters are with the (slow) model: the
    # chapters that did not finish are null, so each entry stays at its item's index.
    tree = workdir / SLOW
    tree.write_text((TREES / SLOW).read_text())
    db = workdir / "int.db"
    proc = _start(tree, db, workdir / "out")
    lock = _freeze_at(db, proc, 1)
    proc.send_signal(signal.SIGINT)
    lock.close()
    _out, err = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 130, err
    output = _output(query(db, "SELECT out_dir FROM runs")[0]["out_dir"])
    chapters = output["plan"]["chapter"]
    assert len(chapters) == len(output["plan"]["value"]) == 6
    assert all(c is None or isinstance(c, dict) for c in chapters)


def test_failed_node_is_retried_on_resume(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    path = tree("resume_failing.yaml")
    first = cli("run", path)
    assert first.exit_code == 1
    run = query(workdir / "genarun.db", "SELECT id, status FROM runs")[0]
    assert run["status"] == "failed"
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 10, 10)).save(workdir / "photo.png")
    result = cli("resume", run["id"])
    assert result.exit_code == 0, result.output
    rows = query(
        workdir / "genarun.db",
        "SELECT node_id, status FROM executions WHERE run_id = ? ORDER BY id",
        run["id"],
    )
    done = Counter(r["node_id"] for r in rows if r["status"] == "done")
    assert done == {"intro": 1, "describe": 1, "outro": 1}  # intro was not executed again
    assert query(workdir / "genarun.db", "SELECT status FROM runs")[0]["status"] == "completed"


def _row_counts(db: Path) -> dict[str, int]:
    return {
        t: query(db, f"SELECT count(*) AS n FROM {t}")[0]["n"]
        for t in ("runs", "experiments", "executions", "logs")
    }


def test_resume_bad_input_changes_nothing(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    path = tree("rerun_blog.yaml")
    db = workdir / "genarun.db"
    shared = ""
    while not shared:  # runs until two ids share their first character (at most 17)
        assert cli("run", path).exit_code == 0
        ids = [r["id"] for r in query(db, "SELECT id FROM runs")]
        firsts = Counter(i[0] for i in ids)
        shared = next((c for c, n in firsts.items() if n > 1), "")
    before = _row_counts(db)
    completed = cli("resume", ids[0])
    assert completed.exit_code == 2
    assert "is completed: nothing to resume" in completed.output
    ambiguous = cli("resume", shared)
    assert ambiguous.exit_code == 2
    assert "matches several runs" in ambiguous.output
    missing = cli("resume", "ffffffffffff0")
    assert missing.exit_code == 2
    assert _row_counts(db) == before
