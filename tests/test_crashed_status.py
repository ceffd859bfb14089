"""A run whose `genarun run` process was killed (kill -9: nothing recorded) reads `crashed` in
`runs show`, as in `runs list`, with the command that finishes it: never `running`."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

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


def test_runs_show_says_crashed_after_kill_9(workdir: Path, cli: Callable[..., Result]) -> None:
    (workdir / "tree.yaml").write_text(TREE)
    db = workdir / "genarun.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "genarun", "run", "tree.yaml", "-q"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while _done(db) < 1:
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline, "the first execution never finished"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

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
