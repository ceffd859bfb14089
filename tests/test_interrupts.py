"""Ctrl-C of a real `genarun run` process while a model batch is in flight.

Once: nothing new starts, the batch finishes and is stored (it was thrown away after a silent
wait for it), the person is told at once, the run ends `interrupted` and resume runs the rest.
Twice: the process ends at once, without waiting for the batch.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from tests.helpers import (
    PATIENCE,
    Transcript,
    batches_started,
    ctrl_c_reaches_it,
    query,
    wait_until,
)

TREE = """\
genarun: 1
name: stoppable
seed: 1
models:
  slow: {{provider: dummy, id: w, options: {{delay: {delay}, batch_log: "{log}"}}}}
  quick: {{provider: dummy, id: q}}
nodes:
  - id: first
    kind: generate
    model: slow
    prompt: one
    children:
      - id: second
        kind: generate
        model: quick
        prompt: "two {{{{ first }}}}"
"""


def _start(workdir: Path, delay: float) -> subprocess.Popen[str]:
    (workdir / "tree.yaml").write_text(TREE.format(delay=delay, log=workdir / "batches.log"))
    return subprocess.Popen(
        [sys.executable, "-m", "genarun", "run", "tree.yaml"],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_reaches_it,
    )


def _wait_for_the_batch(workdir: Path, proc: subprocess.Popen[str]) -> None:
    """Until first's batch is in flight (the dummy logs it as it starts): the run has taken
    over Ctrl-C by then. A fixed wait after the run was stored (0.5 s) was a guess: on a
    slower machine Ctrl-C came before the run's handler, or after the batch."""
    log = workdir / "batches.log"
    wait_until(lambda: proc.poll() is not None or batches_started(log), "first's batch")
    assert proc.poll() is None, proc.communicate()


def test_ctrl_c_once_lets_the_batch_in_flight_finish_and_saves_it(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    db = workdir / "genarun.db"
    proc = _start(workdir, delay=2.5)
    _wait_for_the_batch(workdir, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 130, (out, err)
    assert "stopping: nothing new starts; what is running (1 model batch) finishes" in err
    assert "Ctrl-C again to stop at once" in err
    assert "interrupted: finished work is saved" in err and "Traceback" not in err
    rows = {r["node_id"]: r["status"] for r in query(db, "SELECT node_id, status FROM executions")}
    assert rows == {"first": "done"}  # the batch's result is kept; nothing new started
    assert query(db, "SELECT status FROM runs")[0]["status"] == "interrupted"
    resumed = cli("resume", "latest")
    assert resumed.exit_code == 0, resumed.output
    rows = {r["node_id"]: r["status"] for r in query(db, "SELECT node_id, status FROM executions")}
    assert rows == {"first": "done", "second": "done"}
    # first ran exactly once: the resume kept it
    assert len(query(db, "SELECT id FROM executions WHERE node_id = 'first'")) == 1


def test_ctrl_c_twice_stops_at_once(workdir: Path, cli: Callable[..., Result]) -> None:
    db = workdir / "genarun.db"
    proc = _start(workdir, delay=120)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = Transcript(proc.stdout), Transcript(proc.stderr)
    _wait_for_the_batch(workdir, proc)
    proc.send_signal(signal.SIGINT)
    # The second press once the first was taken (two signals sent at once may arrive as one).
    err.wait_for("Ctrl-C again to stop at once")
    pressed = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=PATIENCE)
    took = time.monotonic() - pressed
    said = out.finish() + err.finish()
    assert proc.returncode == 130, said
    assert took < 60, f"the second Ctrl-C took {took:.1f} s (the batch takes 120 s)"
    assert "interrupted: finished work is saved" in said and "Traceback" not in said
    assert query(db, "SELECT status FROM runs")[0]["status"] == "interrupted"
    assert not query(db, "SELECT id FROM executions WHERE status = 'done'")
