"""`genarun doctor`: findings on a damaged store, exit 1; `--fix` repairs, exit 0 after.
NaN and zero vectors are refused when written."""

from __future__ import annotations

import json
import sqlite3
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import Result

from tests.helpers import query


@pytest.fixture
def ran(tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path) -> Path:
    result = cli("run", tree("doctor.yaml"))
    assert result.exit_code == 0, result.output
    return workdir / "genarun.db"


def test_a_healthy_store_is_ok(ran: Path, cli: Callable[..., Result]) -> None:
    result = cli("doctor")
    assert result.exit_code == 0, result.output
    assert "ok: no problems" in result.output


def damage(db: Path) -> dict[str, str]:
    """Inject a gap, a NaN vector, a missing diagram and an orphan; returns the runs hit."""
    runs = [r["id"] for r in query(db, "SELECT id FROM runs ORDER BY started, id")]
    a, b = runs
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("DELETE FROM trajectory_steps WHERE run_id = ? AND step = 2", (a,))
        nan = struct.pack("<4f", float("nan"), 1, 2, 3) + b"\0" * 4 * 28
        conn.execute("UPDATE embeddings SET vector = ? WHERE run_id = ? AND item = 4", (nan, b))
        conn.execute("DELETE FROM persistence WHERE run_id = ?", (b,))
        conn.execute(
            "INSERT INTO logs (run_id, node_id, path, time, level, message) "
            "VALUES ('deadbeef', 'x', '[]', 0, 'info', 'left behind')"
        )
    conn.close()
    return {"gap": a, "nan": b}


def test_doctor_finds_each_problem_and_fix_repairs_them(
    ran: Path, cli: Callable[..., Result]
) -> None:
    hit = damage(ran)
    result = cli("doctor", "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["ok"] is False
    checks = sorted(f["check"] for f in report["findings"])
    assert checks == ["bad_vector", "gap", "missing_diagram", "orphan"]
    by_check = {f["check"]: f for f in report["findings"]}
    assert by_check["gap"]["where"].startswith(f"run {hit['gap'][:8]} traj")
    assert "step 2 missing of 6" in by_check["gap"]["message"]
    assert "NaN" in by_check["bad_vector"]["message"]
    assert "deadbeef" in by_check["orphan"]["message"]

    text = cli("doctor")
    assert text.exit_code == 1
    assert "4 problems" in text.output and "--fix" in text.output

    fixed = cli("doctor", "--fix")
    assert fixed.exit_code == 0, fixed.output
    assert "removed 1 orphan logs row" in fixed.output
    assert "cut before the missing step 2" in fixed.output
    assert "removed the unusable 'dummy-embed' vector" in fixed.output
    assert "embedded 1 step with 'dummy-embed'" in fixed.output
    assert "computed the H0..H1 diagram" in fixed.output
    assert "ok: no problems" in fixed.output
    again = cli("doctor")
    assert again.exit_code == 0, again.output

    # What the repairs left: the gap's trajectory ends before step 2, the NaN vector was
    # computed again (the dummy model is deterministic: the same vector as a clean run), and
    # both trajectories have diagrams of all their points.
    steps = query(ran, "SELECT step FROM trajectory_steps WHERE run_id = ?", hit["gap"])
    assert sorted(s["step"] for s in steps) == [0, 1]
    row = query(ran, "SELECT vector FROM embeddings WHERE run_id = ? AND item = 4", hit["nan"])
    assert len(row) == 1 and np.isfinite(np.frombuffer(row[0]["vector"], "<f4")).all()
    diagrams = query(ran, "SELECT run_id, points FROM persistence ORDER BY run_id")
    assert {d["run_id"]: d["points"] for d in diagrams} == {hit["gap"]: 2, hit["nan"]: 6}


def test_missing_image_and_dead_run(ran: Path, cli: Callable[..., Result]) -> None:
    run = query(ran, "SELECT id, out_dir FROM runs ORDER BY started, id")[0]
    image = query(
        ran,
        "SELECT value FROM trajectory_steps WHERE run_id = ? AND kind = 'image' LIMIT 1",
        run["id"],
    )[0]["value"]
    (Path(run["out_dir"]) / image).unlink()
    conn = sqlite3.connect(ran)
    with conn:  # a run marked running by a process that no longer exists
        conn.execute(
            "UPDATE runs SET status = 'running', pid = 999999999, host = ? WHERE id = ?",
            (__import__("socket").gethostname(), run["id"]),
        )
    conn.close()
    result = cli("doctor")
    assert result.exit_code == 1
    assert "missing_asset" in result.output and "(not fixable here)" in result.output
    assert "dead_run" in result.output and "process 999999999 is gone" in result.output
    fixed = cli("doctor", "--fix")
    assert fixed.exit_code == 1  # the image cannot be made again here
    assert "marked interrupted" in fixed.output
    assert query(ran, "SELECT status FROM runs WHERE id = ?", run["id"])[0]["status"] == (
        "interrupted"
    )


def test_nan_and_zero_vectors_are_refused_when_written(workdir: Path) -> None:
    from genarun.errors import InvalidVector
    from genarun.store.db import Store

    store = Store(workdir / "v.db")
    store.create_run(id="r", name="x")
    row = {"run_id": "r", "node_id": "n", "path": "[]", "item": 3, "model": "m", "dim": 3}
    for vector, why in (
        (np.array([0, 0, 0], "<f4"), "all zeros"),
        (np.array([1, np.nan, 0], "<f4"), "NaN"),
        (np.array([1, 2], "<f4"), "2 values where its dimension says 3"),
    ):
        with pytest.raises(InvalidVector, match=why):
            store.add_embeddings([{**row, "vector": vector.tobytes(), "source": "a cat"}])
    assert query(workdir / "v.db", "SELECT COUNT(*) AS n FROM embeddings")[0]["n"] == 0
    store.add_embeddings([{**row, "vector": np.ones(3, "<f4").tobytes(), "source": "a cat"}])
    store.close()
