"""`human` nodes in real runs: waiting durably, answering, resuming without replaying."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from tests.helpers import PATIENCE, TREES, genarun_subprocess, query
from tests.human_helpers import free_port, serving


def _copy(workdir: Path, name: str) -> Path:
    target = workdir / name
    target.write_text((TREES / name).read_text())
    return target


def _executions(db: Path, node: str) -> list[str]:
    rows = query(db, "SELECT status FROM executions WHERE node_id = ? ORDER BY id", node)
    return [r["status"] for r in rows]


def _run_status(db: Path) -> str:
    return query(db, "SELECT status FROM runs")[0]["status"]


@pytest.mark.slow
def test_a_run_waits_exits_0_and_resumes_without_replaying_upstream(workdir: Path) -> None:
    tree = _copy(workdir, "human_wait.yaml")
    db = workdir / "genarun.db"
    result = genarun_subprocess("run", tree, "--db", db, cwd=workdir)
    assert result.returncode == 0, result.stderr
    (run,) = query(db, "SELECT id, status FROM runs")
    assert run["status"] == "waiting"
    short = run["id"][:8]
    out = result.stdout + result.stderr
    assert f"genarun answer {short} pick VALUE" in out
    token = re.search(r"/runs/[0-9a-f]{32}/pick/hook\?token=([\w-]+)", out)
    assert token, out
    (request,) = query(db, "SELECT * FROM human_requests")
    assert request["status"] == "waiting" and token.group(1) not in request["token_hash"]
    assert json.loads(request["options"]) == ["short", "long"]
    asked = request["question"]
    assert asked.startswith("Which length for '") and "answer" in asked
    # The independent branch ran; the human's dependents are parked, neither run nor failed.
    assert _executions(db, "other") == ["done"] and _executions(db, "draft") == ["done"]
    assert _executions(db, "final") == [] and _executions(db, "uses_pick") == []
    assert _executions(db, "pick") == ["waiting"]

    inbox = genarun_subprocess("inbox", "--db", db, cwd=workdir)
    assert f"run {short}  pick  (choice" in inbox.stdout and asked in inbox.stdout
    answered = genarun_subprocess(
        "answer", short, "pick", "long", "--resume", "--db", db, cwd=workdir
    )
    assert answered.returncode == 0, answered.stderr
    assert _run_status(db) == "completed"
    (final,) = query(db, "SELECT output FROM executions WHERE node_id = 'final'")
    assert json.loads(final["output"]).startswith("long version of ")
    assert (
        json.loads(query(db, "SELECT output FROM executions WHERE node_id='uses_pick'")[0][0])
        == "named: long"
    )
    # Nothing upstream of the human step ran again, and the question was never re-rendered.
    assert _executions(db, "draft") == ["done"] and _executions(db, "other") == ["done"]
    assert query(db, "SELECT count(*) FROM human_requests")[0][0] == 1
    assert query(db, "SELECT question FROM human_requests")[0][0] == asked
    show = genarun_subprocess("runs", "show", short, "--db", db, cwd=workdir)
    assert (
        "human requests:" in show.stdout
        and '"long" by ' in show.stdout
        and "via cli" in show.stdout
    )


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = PATIENCE) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _requests(db: Path) -> int:
    try:
        return query(db, "SELECT count(*) FROM human_requests")[0][0]
    except Exception:
        return 0


@pytest.mark.slow
def test_kill_9_while_another_branch_runs_then_answer_and_resume(workdir: Path) -> None:
    tree = _copy(workdir, "human_kill.yaml")
    db = workdir / "genarun.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "genarun", "run", str(tree), "--db", str(db)],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "GENARUN_DEVICE": "cpu"},
    )
    _wait_for(lambda: _requests(db) == 1, "the human request")
    assert process.poll() is None  # the slow branch still runs
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=PATIENCE)
    assert _run_status(db) == "running"  # nothing recorded the kill
    assert len([s for s in _executions(db, "slow_step") if s == "done"]) < 6
    run_id = query(db, "SELECT id FROM runs")[0][0]
    answered = genarun_subprocess("answer", run_id[:8], "pick", "keep", "--db", db, cwd=workdir)
    assert answered.returncode == 0, answered.stderr
    resumed = genarun_subprocess("resume", run_id[:8], "--db", db, cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr
    assert _run_status(db) == "completed"
    assert _executions(db, "draft") == ["done"]  # upstream of the human step: once
    assert _executions(db, "final") == ["done"]
    assert len([s for s in _executions(db, "slow_step") if s == "done"]) == 6
    (final,) = query(db, "SELECT output FROM executions WHERE node_id = 'final'")
    assert json.loads(final["output"]).startswith("keep: ")


def test_each_on_timeout(workdir: Path, cli) -> None:
    tree = _copy(workdir, "human_timeouts.yaml")
    db = workdir / "genarun.db"
    first = cli("run", tree)
    assert first.exit_code == 0, first.output
    assert _run_status(db) == "waiting"
    time.sleep(1.2)
    late = cli("answer", "latest", "with_default", "4")
    assert late.exit_code == 2 and "expired before this answer" in late.output
    resumed = cli("resume", "latest")
    assert resumed.exit_code == 0, resumed.output
    assert _run_status(db) == "completed"
    output = query(db, "SELECT output FROM executions WHERE node_id='doubled'")
    assert json.loads(output[0][0]) == 6  # the default, 3, doubled
    skipped = query(db, "SELECT status, error FROM executions WHERE node_id='skipped'")[-1]
    assert skipped["status"] == "skipped" and "on_timeout: skip" in skipped["error"]
    assert _executions(db, "after_skip") == []

    fail_tree = workdir / "fail.yaml"
    fail_tree.write_text(
        "genarun: 1\nname: human-fail\nnodes:\n  - id: failing\n    kind: human\n"
        "    ask: text\n    question: Say something\n    timeout: 1s\n    on_timeout: fail\n"
    )
    assert cli("run", fail_tree).exit_code == 0
    time.sleep(1.2)
    failed = cli("resume", "latest")
    assert failed.exit_code == 1
    assert "node 'failing' failed: no answer by" in failed.output
    assert "on_timeout: fail" in failed.output and "Traceback" not in failed.output
    statuses = [r[0] for r in query(db, "SELECT status FROM human_requests ORDER BY id")]
    assert statuses == ["expired", "expired", "expired"]


def test_a_poll_of_five_answers_in_a_run(workdir: Path, cli) -> None:
    tree = _copy(workdir, "human_poll.yaml")
    db = workdir / "genarun.db"
    assert cli("run", tree).exit_code == 0
    for voter, name in enumerate(["Rex", "Ziggy", "Ziggy", "Spike", "Ziggy"]):
        reply = cli("answer", "latest", "vote", name, "--as", f"voter{voter}")
        assert reply.exit_code == 0, reply.output
    assert "(4/5)" not in reply.output and "answered vote" in reply.output
    assert cli("resume", "latest").exit_code == 0
    (announce,) = query(db, "SELECT output FROM executions WHERE node_id = 'announce'")
    assert json.loads(announce["output"]) == "The winner is Ziggy with 3 votes"
    (vote,) = query(db, "SELECT output FROM executions WHERE node_id = 'vote' AND status='done'")
    assert json.loads(vote["output"])["tally"] == {"Rex": 1, "Spike": 1, "Ziggy": 3}


class _Receiver(BaseHTTPRequestHandler):
    bodies: ClassVar[list[dict]] = []
    status = 200

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        type(self).bodies.append(
            {"body": json.loads(self.rfile.read(length)), "key": self.headers["Idempotency-Key"]}
        )
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Receiver", (_Receiver,), {"bodies": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/inbox", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_notify_posts_the_answer_url_and_serve_continues_the_run(
    workdir: Path, receiver: tuple[str, type[_Receiver]]
) -> None:
    url, handler = receiver
    port = free_port()
    tree = _copy(workdir, "human_wait.yaml")
    text = tree.read_text().replace(
        "options: [short, long]", f"options: [short, long]\n        notify: {url}"
    )
    tree.write_text(text)
    db = workdir / "genarun.db"
    env = {**os.environ, "GENARUN_SERVE_URL": f"http://127.0.0.1:{port}"}
    result = subprocess.run(
        [sys.executable, "-m", "genarun", "run", str(tree), "--db", str(db)],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    (sent,) = handler.bodies
    body = sent["body"]
    assert body["question"].startswith("Which length") and body["options"] == ["short", "long"]
    assert body["answer_url"].startswith(f"http://127.0.0.1:{port}/runs/")
    assert query(db, "SELECT notify_status FROM human_requests")[0][0] == "sent (200)"
    with serving(db, "--sweep", "1", port=port) as base:
        reply = httpx.post(
            body["answer_url"], json={"answer": "short", "responder": "bot"}, timeout=PATIENCE
        )
        assert reply.status_code == 200 and reply.json()["resuming"] is True
        assert base in body["answer_url"]
        _wait_for(lambda: _run_status(db) == "completed", "the server to continue the run")
    (final,) = query(db, "SELECT output FROM executions WHERE node_id = 'final'")
    assert json.loads(final["output"]).startswith("short version of ")
    assert _executions(db, "draft") == ["done"]


def test_a_notify_that_fails_is_retried_recorded_and_the_request_stays_answerable(
    workdir: Path, receiver: tuple[str, type[_Receiver]], cli
) -> None:
    url, handler = receiver
    handler.status = 503
    tree = _copy(workdir, "human_wait.yaml")
    tree.write_text(
        tree.read_text().replace(
            "options: [short, long]", f"options: [short, long]\n        notify: {url}"
        )
    )
    db = workdir / "genarun.db"
    assert cli("run", tree).exit_code == 0
    assert len(handler.bodies) == 4  # the first try and 3 retries
    assert len({b["key"] for b in handler.bodies}) == 1  # one idempotency key for all
    status = query(db, "SELECT notify_status, notify_attempts FROM human_requests")[0]
    assert status["notify_status"].startswith("failed:") and "503" in status["notify_status"]
    assert status["notify_attempts"] == 4
    assert "notify: failed" in cli("inbox").output
    assert cli("answer", "latest", "pick", "short", "--resume").exit_code == 0
    assert _run_status(db) == "completed"


def test_the_same_answer_reuses_downstream_work_and_diff_shows_answers(workdir: Path, cli) -> None:
    tree = _copy(workdir, "human_cache.yaml")
    db = workdir / "genarun.db"
    runs = []
    for animal in ("gecko", "gecko", "iguana"):
        assert cli("run", tree).exit_code == 0
        runs.append(query(db, "SELECT id FROM runs ORDER BY started DESC LIMIT 1")[0][0])
        result = cli("answer", runs[-1][:8], "pick", animal, "--resume")
        assert result.exit_code == 0, result.output
    reused = query(
        db,
        "SELECT run_id, reused_from FROM executions WHERE node_id = 'write' ORDER BY id",
    )
    by_run = {r["run_id"]: r["reused_from"] for r in reused}
    assert by_run[runs[0]] is None and by_run[runs[1]] is not None  # the same answer
    assert by_run[runs[2]] is None  # another answer: written anew
    diff = cli("diff", runs[0][:8], runs[2][:8])
    assert "pick" in diff.output and "gecko" in diff.output and "iguana" in diff.output
    same = cli("diff", runs[0][:8], runs[1][:8])
    assert "iguana" not in same.output


def test_a_random_seed_never_asks_another_question_on_resume(workdir: Path, cli) -> None:
    tree = workdir / "r.yaml"
    tree.write_text(
        "genarun: 1\nname: r\nnodes:\n  - id: q\n    kind: human\n    seed: random\n"
        "    ask: text\n    question: '[alpha|beta|gamma|delta|epsilon|zeta|eta|theta] "
        "[1|2|3|4|5|6|7|8|9]?'\n"
    )
    db = workdir / "genarun.db"
    assert cli("run", tree).exit_code == 0
    asked = query(db, "SELECT question, seed FROM human_requests")
    for _ in range(2):  # resumed with no answer: it waits again, asking the same
        again = cli("resume", "latest")
        assert again.exit_code == 0 and "waiting" in again.output
    assert [tuple(r) for r in query(db, "SELECT question, seed FROM human_requests")] == [
        tuple(asked[0])
    ]
    assert cli("answer", "latest", "q", "fine", "--resume").exit_code == 0
    done = query(db, "SELECT output FROM executions WHERE node_id = 'q' AND status = 'done'")
    assert json.loads(done[0][0]) == "fine"


@pytest.mark.slow
def test_serve_applies_on_timeout_when_the_time_is_up(workdir: Path, cli) -> None:
    tree = _copy(workdir, "human_timeouts.yaml")
    db = workdir / "genarun.db"
    assert cli("run", tree).exit_code == 0
    assert _run_status(db) == "waiting"
    with serving(db, "--sweep", "0.5"):
        _wait_for(lambda: _run_status(db) == "completed", "the sweep to continue the run")
    assert json.loads(query(db, "SELECT output FROM executions WHERE node_id='doubled'")[0][0]) == 6
    assert _executions(db, "skipped")[-1] == "skipped"


def test_a_notify_the_asking_process_never_sent_goes_out_on_resume(
    workdir: Path, receiver: tuple[str, type[_Receiver]], cli
) -> None:
    url, handler = receiver
    tree = _copy(workdir, "human_wait.yaml")
    tree.write_text(
        tree.read_text().replace(
            "options: [short, long]", f"options: [short, long]\n        notify: {url}"
        )
    )
    db = workdir / "genarun.db"
    assert cli("run", tree).exit_code == 0
    first = handler.bodies[0]["body"]["answer_url"]
    # As if the process had been killed between storing the request and sending it.
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE human_requests SET notify_status = NULL, notify_attempts = NULL")
    assert cli("resume", "latest").exit_code == 0
    assert len(handler.bodies) == 2
    second = handler.bodies[1]["body"]["answer_url"]
    assert second != first and "?token=" in second
    assert query(db, "SELECT notify_status FROM human_requests")[0][0] == "sent (200)"
    assert cli("resume", "latest").exit_code == 0 and len(handler.bodies) == 2  # once only
