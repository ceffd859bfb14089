"""A run whose `genarun run` process was killed (kill -9: nothing recorded) reads `crashed` in
`runs show`, as in `runs list`, with the command that finishes it: never `running`."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from tests.helpers import PATIENCE, app_client

TREE = """\
genarun: 1
name: killed
seed: 1
models:
  slow: {provider: dummy, id: w, options: {delay: 0.4}}
nodes:
  - id: first
    kind: generate
    model: slow
    prompt: one
    children:
      - id: second
        kind: generate
        model: slow
        prompt: "two {{ first }}"
        children:
          - id: third
            kind: generate
            model: slow
            prompt: "three {{ second }}"
"""


def _done(db: Path) -> int:
    try:
        conn = sqlite3.connect(db, timeout=0.2)
        try:
            return int(
                conn.execute("SELECT count(*) FROM executions WHERE status = 'done'").fetchone()[0]
            )
        finally:
            conn.close()
    except sqlite3.OperationalError:  # not created yet
        return 0


def _killed_run(workdir: Path) -> None:
    """A real `genarun run` killed with SIGKILL after its first execution was stored."""
    (workdir / "tree.yaml").write_text(TREE)
    db = workdir / "genarun.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "genarun", "run", "tree.yaml", "-q"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + PATIENCE
    while _done(db) < 1:
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline, "the first execution never finished"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=PATIENCE)


def test_runs_show_says_crashed_after_kill_9(workdir: Path, cli: Callable[..., Result]) -> None:
    _killed_run(workdir)

    shown = cli("runs", "show", "latest")
    assert shown.exit_code == 0, shown.output
    status = next(line for line in shown.output.splitlines() if line.startswith("status"))
    assert "crashed" in status and "running" not in status.split("(")[0], status
    assert "genarun resume" in status
    assert "crashed" in cli("runs", "list").output
    # and the command it names finishes the run, keeping what was done
    resumed = cli("resume", "latest")
    assert resumed.exit_code == 0, resumed.output
    assert "status   completed" in cli("runs", "show", "latest").output


def test_every_surface_says_crashed_after_kill_9(workdir: Path, cli: Callable[..., Result]) -> None:
    """The JSON of `runs list`/`show`, the API, the pages and the event stream agree with the
    text: all take the status from display_status, none says `running`."""
    _killed_run(workdir)
    (stored,) = [
        r[0] for r in sqlite3.connect(workdir / "genarun.db").execute("SELECT status FROM runs")
    ]
    assert stored == "running"  # nothing was recorded: the shown status is derived
    listed = json.loads(cli("runs", "list", "--json").output)
    assert [r["status"] for r in listed] == ["crashed"]
    run_id = listed[0]["id"]
    assert json.loads(cli("runs", "show", "latest", "--json").output)["status"] == "crashed"

    client = app_client(workdir / "genarun.db")
    assert [r["status"] for r in client.get("/api/v1/runs").json()["runs"]] == ["crashed"]
    assert client.get("/api/v1/runs", params={"status": "running"}).json() == {"runs": []}
    only = client.get("/api/v1/runs", params={"status": "crashed"}).json()["runs"]
    assert [r["id"] for r in only] == [run_id]
    assert client.get(f"/api/v1/runs/{run_id[:8]}").json()["status"] == "crashed"
    enum = client.get("/api/v1/openapi.json").json()["paths"]["/api/v1/runs"]["get"]
    assert "crashed" in str(enum["parameters"])
    page = client.get(f"/runs/{run_id}").text
    assert '<span class="badge crashed">crashed</span>' in page and "badge running" not in page
    listing = client.get("/runs").text
    assert '<span class="badge crashed">crashed</span>' in listing
    assert "badge running" not in listing
    assert run_id[:8] in client.get("/runs", params={"status": "crashed"}).text
    # the live stream ends (it waited forever for rows a dead process never writes)
    events = client.get(f"/api/v1/runs/{run_id}/events").text
    assert 'event: end\ndata: {"status": "crashed"}' in events


def _run_held_by_another_host(workdir: Path, cli: Callable[..., Result], beat: float | None) -> str:
    """A run stored as running by a process on another host (a database on a shared disk):
    its pid cannot be looked at from here, only its heartbeat."""
    (workdir / "tree.yaml").write_text(TREE.replace("delay: 0.4", "delay: 0"))
    assert cli("run", "tree.yaml", "-q").exit_code == 0
    with sqlite3.connect(workdir / "genarun.db") as conn:
        conn.execute(
            "UPDATE runs SET status = 'running', ended = NULL, pid = 4242, "
            "host = 'gpu-box-7.example', heartbeat = ?",
            (beat,),
        )
        (run_id,) = conn.execute("SELECT id FROM runs").fetchone()
    return str(run_id)


def test_a_run_whose_other_host_went_quiet_is_crashed(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    """Another host's run whose heartbeat stopped (kill -9 or a lost machine there) is crashed
    on every surface, as a killed run of this host is: it said `running` forever."""
    run_id = _run_held_by_another_host(workdir, cli, time.time() - 3600)
    assert [r["status"] for r in json.loads(cli("runs", "list", "--json").output)] == ["crashed"]
    status = next(ln for ln in cli("runs", "show", "latest").output.splitlines() if "status" in ln)
    assert "crashed" in status and f"genarun resume {run_id[:8]}" in status
    client = app_client(workdir / "genarun.db")
    assert client.get(f"/api/v1/runs/{run_id[:8]}").json()["status"] == "crashed"
    assert client.get("/api/v1/runs", params={"status": "running"}).json() == {"runs": []}
    events = client.get(f"/api/v1/runs/{run_id}/events").text
    assert 'event: end\ndata: {"status": "crashed"}' in events


def test_a_live_run_of_another_host_says_whose_word_running_is(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    """A fresh heartbeat (or none, from an older genarun) keeps `running`, and `runs show`
    says it is another host's process, which this one cannot look at."""
    for beat in (time.time(), None):
        run_id = _run_held_by_another_host(workdir, cli, beat)
        assert [r["status"] for r in json.loads(cli("runs", "list", "--json").output)] == [
            "running"
        ]
        shown = cli("runs", "show", run_id[:8]).output
        status = next(ln for ln in shown.splitlines() if ln.startswith("status"))
        assert "running (on host gpu-box-7.example, process 4242" in status, status
        assert ("last heartbeat" in status) == (beat is not None), status
        (workdir / "genarun.db").unlink()
