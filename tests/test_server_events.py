"""Live progress over server-sent events, against a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import PATIENCE, query
from tests.human_helpers import serving

SLOW = """genarun: 1
name: slow-progress
seed: 3
models:
  slow: {provider: dummy, id: dummy, options: {delay: 0.4}}
nodes:
  - id: start
    kind: generate
    model: slow
    prompt: begin
    children:
      - id: step
        kind: generate
        foreach: range(3)
        model: slow
        prompt: "step {{ index }} after {{ start }}"
        children:
          - id: finish
            kind: generate
            model: slow
            prompt: "end of {{ step }}"
"""


def _events(response: httpx.Response) -> list[tuple[str | None, str, dict]]:
    events, current = [], {}
    for line in response.iter_lines():
        if line.startswith("id: "):
            current["id"] = line[4:]
        elif line.startswith("event: "):
            current["event"] = line[7:]
        elif line.startswith("data: "):
            current["data"] = json.loads(line[6:])
        elif line == "" and current:
            events.append((current.get("id"), current["event"], current["data"]))
            if current["event"] == "end":
                break
            current = {}
    return events


def _run_status(db: Path) -> str | None:
    try:
        rows = query(db, "SELECT status FROM runs")
    except Exception:
        return None
    return rows[0]["status"] if rows else None


@pytest.mark.slow
def test_a_stream_opened_mid_run_shows_progress_and_replays_after_a_reconnect(
    tmp_path: Path,
) -> None:
    tree = tmp_path / "slow.yaml"
    tree.write_text(SLOW)
    db = tmp_path / "g.db"
    with serving(db, "--no-auto-resume") as base:
        run = subprocess.Popen(
            [sys.executable, "-m", "genarun", "run", str(tree), "--db", str(db)],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "GENARUN_DEVICE": "cpu"},
        )
        try:
            deadline = time.monotonic() + PATIENCE
            while _run_status(db) != "running":
                assert time.monotonic() < deadline and run.poll() is None
                time.sleep(0.05)
            run_id = query(db, "SELECT id FROM runs")[0]["id"]
            with httpx.stream(
                "GET", f"{base}/api/v1/runs/{run_id}/events", timeout=PATIENCE
            ) as live:
                assert live.headers["content-type"].startswith("text/event-stream")
                events = _events(live)
            assert run.wait(timeout=PATIENCE) == 0
        finally:
            if run.poll() is None:
                run.kill()
        executions = [e for e in events if e[1] == "execution"]
        assert events[-1][1:] == ("end", {"status": "completed"})
        stored = query(db, "SELECT id, node_id FROM executions ORDER BY id")
        assert [(int(e[0]), e[2]["node"]) for e in executions] == [tuple(r) for r in stored]
        assert [e[2]["index"] for e in executions if e[2]["node"] == "step"] == [[0], [1], [2]]

        third = executions[2][0]
        again = httpx.get(
            f"{base}/api/v1/runs/{run_id}/events",
            headers={"Last-Event-ID": third},
            timeout=PATIENCE,
        )
        replayed = [line for line in again.text.splitlines() if line.startswith("id: ")]
        assert replayed == [f"id: {e[0]}" for e in executions[3:]]
        assert "event: end" in again.text
        assert (
            httpx.get(f"{base}/api/v1/runs/{'a' * 32}/events", timeout=PATIENCE).status_code == 404
        )
