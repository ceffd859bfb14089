"""Pausing and unpausing runs: through the API, the run page's buttons and the CLI, for runs
run by worker processes (started from the server, or by `genarun run` in another process)."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from genarun.server.openapi import openapi_document
from tests.helpers import PATIENCE, app_client, query
from tests.human_helpers import make_request, serving

# 160 items in batches of 16 (the default), 0.1 s an item: 1.6 s a batch, a pause lands mid-run
# and the batch running then finishes.
SLOW = """genarun: 1
name: slow-pause
seed: 3
models:
  slow: {provider: dummy, id: dummy, options: {delay: 0.1}}
nodes:
  - id: step
    kind: generate
    foreach: range(160)
    model: slow
    prompt: "step {{ index }}"
"""


def _genarun(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "genarun", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _done(db: Path, run_id: str) -> int:
    return int(query(db, "SELECT count(*) FROM executions WHERE run_id = ?", run_id)[0][0])


def _status(db: Path, run_id: str) -> str:
    return str(query(db, "SELECT status FROM runs WHERE id = ?", run_id)[0][0])


def _first_run(db: Path) -> str | None:
    try:
        rows = query(db, "SELECT id FROM runs")
    except sqlite3.Error:  # the worker has not made its tables yet
        return None
    return rows[0][0] if rows else None


def _wait(condition, what: str, limit: float = PATIENCE) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _assert_held(db: Path, run_id: str) -> int:
    """Nothing new starts: once the running ones are recorded, the count stays put. The flag
    is read within 0.25 s and the batch running then takes 1.6 s, longer on a busy machine (a
    fixed 3 s for it was a guess): the count must settle, then stay still for 4 s, in which an
    unpaused run would have finished two batches more."""
    held, since = _done(db, run_id), time.monotonic()
    deadline = since + PATIENCE
    while time.monotonic() - since < 4.0:
        assert time.monotonic() < deadline, f"the count never settled (now {held})"
        time.sleep(0.1)
        now = _done(db, run_id)
        if now != held:
            held, since = now, time.monotonic()
    assert held < 160
    assert _status(db, run_id) == "running"
    return held


def test_bad_pause_and_unpause_requests_are_clear_409s(tmp_path: Path, cli) -> None:
    db = tmp_path / "g.db"
    request, _ = make_request(db)  # a run that waits for a person: not running
    client = app_client(db)
    run = request.run_id
    paused = client.post(f"/api/v1/runs/{run}/pause")
    assert paused.status_code == 409
    assert (
        paused.json()["error"] == f"run {run[:8]} is not running (it is waiting): nothing to pause"
    )
    unpaused = client.post(f"/api/v1/runs/{run}/unpause", json={})
    assert unpaused.status_code == 409
    assert unpaused.json()["error"] == f"run {run[:8]} is not paused (it is waiting)"
    assert client.post("/api/v1/runs/abcdef12/pause").status_code == 404
    assert client.post(f"/api/v1/runs/{run}/pause", json={"now": 1}).status_code == 422
    assert client.get(f"/api/v1/runs/{run}").json()["paused"] is None
    from_cli = cli("runs", "pause", run[:8], "--db", db)
    assert from_cli.exit_code != 0 and "is not running (it is waiting)" in from_cli.output
    assert "Traceback" not in from_cli.output
    stop = cli("runs", "stop", run[:8], "--db", db)
    assert stop.exit_code == 2 and f"run {run[:8]} is not running (it is waiting)" in stop.output
    assert "Traceback" not in stop.output
    assert cli("runs", "stop", "abcdef12", "--db", db).exit_code == 2
    paths = openapi_document()["paths"]
    assert "post" in paths["/api/v1/runs/{run_id}/pause"]
    assert "post" in paths["/api/v1/runs/{run_id}/unpause"]
    read_only = app_client(db, read_only=True)
    assert read_only.post(f"/api/v1/runs/{run}/pause").status_code in (404, 405)
    assert "Pause" not in read_only.get(f"/runs/{run}").text


def _read_until(response: httpx.Response, wanted: str) -> dict:
    name = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name == wanted:
            return json.loads(line[6:])
    raise AssertionError(f"no {wanted} event")


@pytest.mark.slow
def test_a_run_started_from_the_server_pauses_and_unpauses(tmp_path: Path) -> None:
    trees = tmp_path / "trees"
    trees.mkdir()
    (trees / "slow.yaml").write_text(SLOW)
    db = tmp_path / "g.db"
    with serving(db, "--no-auto-resume", "--trees", str(trees)) as base:
        started = httpx.post(f"{base}/api/v1/runs", json={"tree": "slow.yaml"}, timeout=PATIENCE)
        assert started.status_code == 200, started.text
        run_id = started.json()["run"]
        _wait(lambda: _done(db, run_id) >= 16, "the run did not get going")
        paused = httpx.post(f"{base}/api/v1/runs/{run_id}/pause", timeout=PATIENCE)
        assert paused.status_code == 200 and paused.json()["paused"] is True, paused.text
        again = httpx.post(f"{base}/api/v1/runs/{run_id}/pause", timeout=PATIENCE)
        assert again.status_code == 409 and "paused already" in again.json()["error"]
        held = _assert_held(db, run_id)

        # Seen everywhere: the API, the events stream, `runs show` in another process.
        assert httpx.get(f"{base}/api/v1/runs/{run_id}", timeout=PATIENCE).json()["paused"] > 0
        with httpx.stream(
            "GET", f"{base}/api/v1/runs/{run_id}/events", params={"after": 10**9}, timeout=PATIENCE
        ) as live:
            assert _read_until(live, "paused")["since"] > 0
        shown = _genarun("runs", "show", run_id, "--db", db, cwd=tmp_path)
        assert shown.returncode == 0 and "status   running, paused since" in shown.stdout
        assert "genarun runs unpause" in shown.stdout

        # The page's button (its session's CSRF token), as a person would.
        page = httpx.get(f"{base}/runs/{run_id}", timeout=PATIENCE).text
        assert 'value="unpause">Unpause</button>' in page and "paused</span> since" in page
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
        assert csrf is not None
        forged = httpx.post(
            f"{base}/runs/{run_id}/control",
            data={"action": "unpause", "csrf": "0" * 64},
            timeout=PATIENCE,
        )
        assert forged.status_code == 403 and _done(db, run_id) == held
        clicked = httpx.post(
            f"{base}/runs/{run_id}/control",
            data={"action": "unpause", "csrf": csrf.group(1)},
            follow_redirects=True,
            timeout=PATIENCE,
        )
        assert "unpaused" in clicked.text and 'value="pause">Pause</button>' in clicked.text
        _wait(lambda: _status(db, run_id) != "running", "the run did not finish")
    assert _status(db, run_id) == "completed" and _done(db, run_id) == 160
    assert query(db, "SELECT count(*) FROM run_pauses")[0][0] == 0
    logs = [r[0] for r in query(db, "SELECT message FROM logs WHERE run_id = ?", run_id)]
    assert any(m.startswith("paused: no new executions start") for m in logs)
    assert "unpaused: new executions start again" in logs


@pytest.mark.slow
def test_a_cli_run_paused_from_another_process_stays_paused_across_stop_and_resume(
    tmp_path: Path,
) -> None:
    tree = tmp_path / "slow.yaml"
    tree.write_text(SLOW)
    db = tmp_path / "g.db"
    said = tmp_path / "run.log"
    run = subprocess.Popen(
        [sys.executable, "-m", "genarun", "run", str(tree), "--db", str(db), "-v"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=said.open("w"),
        env={**os.environ, "GENARUN_DEVICE": "cpu"},
    )
    try:
        _wait(lambda: _first_run(db) is not None, "no run")
        run_id = str(_first_run(db))
        _wait(lambda: _done(db, run_id) >= 16, "the run did not get going")
        paused = _genarun("runs", "pause", run_id[:8], "--db", db, cwd=tmp_path)
        assert paused.returncode == 0 and f"run {run_id[:8]} paused" in paused.stdout
        held = _assert_held(db, run_id)
        run.send_signal(signal.SIGINT)  # stop while paused: clean, resumable
        assert run.wait(timeout=PATIENCE) == 130
    finally:
        if run.poll() is None:
            run.kill()
    assert _status(db, run_id) == "interrupted" and _done(db, run_id) == held
    # The process running it said so, for whoever watches its terminal.
    assert f"run {run_id[:8]} paused: no new executions start" in said.read_text()
    # `genarun resume` continues the interrupted run, but it is still paused: nothing starts.
    resumed = subprocess.Popen(
        [sys.executable, "-m", "genarun", "resume", run_id, "--db", str(db)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: _status(db, run_id) == "running", "resume did not claim the run")
        assert _assert_held(db, run_id) == held
        unpaused = _genarun("runs", "unpause", run_id[:8], "--db", db, cwd=tmp_path)
        assert unpaused.returncode == 0 and "unpaused" in unpaused.stdout
        assert resumed.wait(timeout=120) == 0
    finally:
        if resumed.poll() is None:
            resumed.kill()
    assert _status(db, run_id) == "completed" and _done(db, run_id) == 160
    again = _genarun("runs", "unpause", run_id[:8], "--db", db, cwd=tmp_path)
    assert again.returncode != 0 and "is not paused (it is completed)" in again.stderr


def test_paused_runs_are_marked_in_every_list(tmp_path: Path, cli) -> None:
    from genarun.store.claims import identity
    from genarun.store.db import Store
    from genarun.store.pauses import pause_run

    db = tmp_path / "g.db"
    store = Store(db)
    experiment = store.create_experiment(name="t")
    # Running, claimed by this (live) process: it can be paused.
    run_id = store.create_run(name="listed", experiment_id=experiment, **identity())
    other = store.create_run(name="other", experiment_id=experiment, **identity())
    pause_run(store, store.resolve_run(run_id), by="test")
    store.close()
    client = app_client(db)
    listed = {r["id"]: r["paused"] for r in client.get("/api/v1/runs").json()["runs"]}
    assert listed[run_id] > 0 and listed[other] is None
    page = client.get("/runs").text
    row = next(line for line in page.splitlines() if run_id[:8] in line)
    assert '<span class="badge waiting">paused</span>' in page and "listed" in row
    shown = cli("runs", "list", "--db", db)
    assert shown.exit_code == 0
    lines = {line.split()[0]: line for line in shown.output.splitlines()[1:] if line.strip()}
    assert "running, paused" in lines[run_id[:8]] and "paused" not in lines[other[:8]]


def test_a_run_that_ends_while_being_paused_keeps_no_flag(tmp_path: Path) -> None:
    from genarun.store.claims import identity
    from genarun.store.db import Store
    from genarun.store.pauses import PauseRefused, pause_run

    store = Store(tmp_path / "g.db")
    run_id = store.create_run(name="ending", **identity())
    seen = store.resolve_run(run_id)  # read while running...
    store.update_run(run_id, status="completed", ended=time.time())  # ...then it ends
    with pytest.raises(PauseRefused, match="is not running \\(it is completed\\)"):
        pause_run(store, seen, by="test")
    assert query(tmp_path / "g.db", "SELECT count(*) FROM run_pauses")[0][0] == 0
    store.close()


@pytest.mark.slow
def test_a_cli_run_stopped_from_another_terminal_ends_interrupted_and_resumes(
    tmp_path: Path,
) -> None:
    # The roadmap's play/pause/stop, from the command line: `runs stop` is Ctrl-C sent from
    # another terminal to the process running the run.
    tree = tmp_path / "slow.yaml"
    tree.write_text(SLOW)
    db = tmp_path / "g.db"
    run = subprocess.Popen(
        [sys.executable, "-m", "genarun", "run", str(tree), "--db", str(db)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "GENARUN_DEVICE": "cpu"},
    )
    try:
        _wait(lambda: _first_run(db) is not None, "no run")
        run_id = str(_first_run(db))
        _wait(lambda: _done(db, run_id) >= 16, "the run did not get going")
        stopped = _genarun("runs", "stop", run_id[:8], "--db", db, cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
        assert f"run {run_id[:8]} stopping" in stopped.stdout
        assert f"genarun resume {run_id[:8]} --db {db}" in stopped.stdout
        assert run.wait(timeout=PATIENCE) == 130
    finally:
        if run.poll() is None:
            run.kill()
    held = _done(db, run_id)
    assert _status(db, run_id) == "interrupted" and 16 <= held < 160
    again = _genarun("runs", "stop", run_id[:8], "--db", db, cwd=tmp_path)
    assert again.returncode == 2 and "is not running (it is interrupted)" in again.stderr
    assert "Traceback" not in again.stderr
    resumed = _genarun("resume", run_id[:8], "--db", db, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert _status(db, run_id) == "completed" and _done(db, run_id) == 160
