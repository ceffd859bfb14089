"""One run is resumed by one process: a claim in SQLite (pid, host, heartbeat) that a second
`genarun resume` sees, names and stops at; a stale claim (its process gone) is taken over."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from genarun.store.claims import Heartbeat
from genarun.store.db import Store
from tests.helpers import PATIENCE, TREES, query, wait_until

# Slow enough that the first resume still runs when the second one starts (about 5 s).
SLOW_TREE = (TREES / "resume_slow.yaml").read_text().replace("delay: 0.08", "delay: 0.25")
EXECUTIONS = 21


def _genarun(*args: object, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "genarun", *map(str, args)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "GENARUN_DEVICE": "cpu"},
    )


def _done(db: Path) -> int:
    try:
        return query(db, "SELECT count(*) AS n FROM executions WHERE status = 'done'")[0]["n"]
    except sqlite3.OperationalError:
        return -1


def _killed_run(workdir: Path, after: int = 3, delay: float = 0.25) -> tuple[Path, str]:
    """A run of the slow tree killed with SIGKILL after `after` finished executions."""
    tree = workdir / "slow.yaml"
    tree.write_text(SLOW_TREE.replace("delay: 0.25", f"delay: {delay}"))
    db = workdir / "genarun.db"
    proc = _genarun("run", tree, "--db", db, cwd=workdir)
    deadline = time.time() + PATIENCE
    while _done(db) < after:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the run never got going"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=PATIENCE)
    (run,) = query(db, "SELECT id, status FROM runs")
    assert run["status"] == "running"  # nothing recorded the kill
    return db, run["id"]


def _set_claim(db: Path, run_id: str, **values: object) -> None:
    with sqlite3.connect(db) as conn:
        sets = ", ".join(f"{k} = ?" for k in values)
        conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*values.values(), run_id))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.slow  # real processes killed and resumed
def test_two_concurrent_resumes_of_a_killed_run(workdir: Path) -> None:
    db, run_id = _killed_run(workdir)
    first = _genarun("resume", run_id, "--db", db, cwd=workdir)
    second = _genarun("resume", run_id, "--db", db, cwd=workdir)
    results = {p.pid: (p.wait(timeout=120), *p.communicate()) for p in (first, second)}
    codes = sorted(code for code, _out, _err in results.values())
    assert codes[0] == 0 and codes[1] != 0, results
    (winner,) = [pid for pid, (code, _o, _e) in results.items() if code == 0]
    (loser,) = [r for r in results.values() if r[0] != 0]
    # The second says who holds the run, without a traceback.
    assert f"is being run by process {winner}" in loser[2], loser
    assert "Traceback" not in loser[2] and "internal error" not in loser[2]
    (run,) = query(db, "SELECT status FROM runs")
    assert run["status"] == "completed"
    rows = query(
        db,
        "SELECT node_id, path FROM executions WHERE status = 'done' AND reused_from IS NULL",
    )
    per_item = Counter((r["node_id"], r["path"]) for r in rows)
    assert len(per_item) == EXECUTIONS
    assert set(per_item.values()) == {1}, [k for k, n in per_item.items() if n > 1]


@pytest.mark.slow  # real processes killed and resumed
def test_a_killed_resume_leaves_a_stale_claim_that_is_taken_over(workdir: Path) -> None:
    db, run_id = _killed_run(workdir, delay=0.08)
    resume = _genarun("resume", run_id, "--db", db, cwd=workdir)
    start = _done(db)
    deadline = time.time() + PATIENCE
    while _done(db) < start + 2:
        assert resume.poll() is None, resume.communicate()
        assert time.time() < deadline
        time.sleep(0.02)
    resume.send_signal(signal.SIGKILL)
    resume.wait(timeout=PATIENCE)
    (run,) = query(db, "SELECT pid FROM runs")
    assert run["pid"] == resume.pid  # the killed resume's claim is still there
    again = _genarun("resume", run_id, "--db", db, cwd=workdir)
    code = again.wait(timeout=120)
    assert code == 0, again.communicate()
    assert query(db, "SELECT status FROM runs")[0]["status"] == "completed"


@pytest.fixture
def failed_run(
    workdir: Path, cli: Callable[..., Result]
) -> tuple[Path, str, Callable[..., Result]]:
    """A run that failed (its photo is missing), resumable once photo.png exists."""
    from PIL import Image

    tree = workdir / "failing.yaml"
    tree.write_text((TREES / "resume_failing.yaml").read_text())
    assert cli("run", tree).exit_code == 1
    Image.new("RGB", (8, 8)).save(workdir / "photo.png")
    db = workdir / "genarun.db"
    (run,) = query(db, "SELECT id FROM runs")
    return db, run["id"], cli


def test_a_live_holder_on_this_host_is_named_and_kept(
    failed_run: tuple[Path, str, Callable[..., Result]],
) -> None:
    db, run_id, cli = failed_run
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _set_claim(
            db,
            run_id,
            status="running",
            pid=holder.pid,
            host=socket.gethostname(),
            heartbeat=time.time(),
        )
        for args in ((), ("--force",)):  # --force never takes a run from a live process
            result = cli("resume", run_id, *args)
            assert result.exit_code != 0
            assert f"is being run by process {holder.pid}" in result.output
        assert query(db, "SELECT pid FROM runs")[0]["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()
    result = cli("resume", run_id)  # its process is gone now: the claim is stale
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("host", "age", "force", "taken"),
    [
        ("elsewhere", 1.0, False, False),  # another host, a fresh heartbeat: held
        ("elsewhere", 1.0, True, False),  # ... even with --force: it is alive
        ("elsewhere", 3600.0, False, True),  # no heartbeat for an hour: stale
        ("elsewhere", None, False, False),  # no heartbeat at all (older genarun): unknown
        ("elsewhere", None, True, True),  # ... --force takes it
        (None, None, False, False),  # no host recorded: unknown
    ],
)
def test_claims_that_cannot_be_checked_go_by_their_heartbeat(
    host: str | None,
    age: float | None,
    force: bool,
    taken: bool,
    failed_run: tuple[Path, str, Callable[..., Result]],
) -> None:
    db, run_id, cli = failed_run
    beat = time.time() - age if age is not None else None
    _set_claim(db, run_id, status="running", pid=_dead_pid(), host=host, heartbeat=beat)
    result = cli("resume", run_id, *(["--force"] if force else []))
    if taken:
        assert result.exit_code == 0, result.output
        assert query(db, "SELECT pid FROM runs")[0]["pid"] == os.getpid()
    else:
        assert result.exit_code != 0
        assert "Traceback" not in result.output
        assert (f"host {host}" if host else "cannot check") in result.output
        assert query(db, "SELECT status FROM runs")[0]["status"] == "running"


def test_a_dead_holder_on_this_host_is_taken_over(
    failed_run: tuple[Path, str, Callable[..., Result]],
) -> None:
    db, run_id, cli = failed_run
    _set_claim(
        db, run_id, status="running", pid=_dead_pid(), host=socket.gethostname(), heartbeat=None
    )
    result = cli("resume", run_id)
    assert result.exit_code == 0, result.output


def test_a_resume_that_stops_before_running_gives_the_claim_back(
    failed_run: tuple[Path, str, Callable[..., Result]],
) -> None:
    db, run_id, cli = failed_run
    _set_claim(db, run_id, tree_text="genarun: 1\nname: x\nnodes: [{id: a, kind: nope}]\n")
    result = cli("resume", run_id)
    assert result.exit_code == 2, result.output
    assert query(db, "SELECT status FROM runs")[0]["status"] == "failed"


def test_the_heartbeat_refreshes_only_the_runs_this_process_holds(workdir: Path) -> None:
    store = Store(workdir / "beat.db")

    def beat_of(run_id: str) -> float:
        rows = query(workdir / "beat.db", "SELECT heartbeat FROM runs WHERE id = ?", run_id)
        return float(rows[0]["heartbeat"] or 0)

    try:
        mine = store.create_run(name="a", pid=os.getpid(), host="h", heartbeat=0.0)
        other = store.create_run(name="b", pid=_dead_pid(), host="h", heartbeat=0.0)
        beat = Heartbeat(store, [mine, other], every=0.02)
        beat.start()
        # Until it has beaten a few times (a fixed 0.3 s could pass before its thread ran).
        wait_until(lambda: beat_of(mine) > 0, "the first heartbeat")
        first = beat_of(mine)
        wait_until(lambda: beat_of(mine) > first, "another heartbeat")
        beat.stop()
    finally:
        store.close()
    rows = {r["id"]: r["heartbeat"] for r in query(workdir / "beat.db", "SELECT * FROM runs")}
    assert rows[mine] > time.time() - 5 and rows[other] == 0.0
