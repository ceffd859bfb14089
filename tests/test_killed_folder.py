"""A run's folder shows what has finished while the run goes on, so a run killed mid-way (kill
-9, a crash, SIGTERM, the terminal closed) leaves its finished outputs where a person looks: in
its output.json, not only in SQLite until `genarun resume`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from tests.helpers import PATIENCE, query

# Each step takes 1 s: the first is stored at about 1 s, the folder's first snapshot comes at
# about 3 s (run/snapshots.py), and the last would end at about 4 s (LAST s after the fourth).
TREE = """\
genarun: 1
name: killed
seed: 1
models:
  slow: {provider: dummy, id: w, options: {delay: 1}}
  last: {provider: dummy, id: w, options: {delay: LAST}}
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
          - id: fourth
            kind: generate
            model: slow
            prompt: "four {{ second }}"
            children:
              - id: fifth
                kind: generate
                model: last
                prompt: "five {{ fourth }}"
"""


def _start(workdir: Path, last: float = 1) -> subprocess.Popen[str]:
    (workdir / "tree.yaml").write_text(TREE.replace("LAST", f"{last:g}"))
    return subprocess.Popen(
        [sys.executable, "-m", "genarun", "run", "tree.yaml", "-q"],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run_folder(workdir: Path) -> Path:
    (folder,) = [f for f in (workdir / "killed").iterdir() if f.name != "latest"]
    return folder


def _outputs_shown(workdir: Path, proc: subprocess.Popen[str]) -> dict[str, object]:
    """Wait until the running process's folder shows a finished output; return output.json."""
    deadline = time.time() + PATIENCE
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "output.json never showed a finished output"
        try:
            shown = json.loads((_run_folder(workdir) / "output.json").read_text())
        except (OSError, ValueError):  # no folder yet (the file itself is written atomically)
            shown = {}
        if shown:
            return dict(shown)
        time.sleep(0.05)


def _stored(workdir: Path) -> dict[str, str]:
    rows = query(workdir / "genarun.db", "SELECT node_id, output FROM executions")
    return {r["node_id"]: json.loads(r["output"]) for r in rows}


def test_a_run_killed_with_sigkill_leaves_its_finished_outputs_in_its_folder(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    proc = _start(workdir)
    _outputs_shown(workdir, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=PATIENCE)
    assert proc.returncode == -signal.SIGKILL

    folder = _run_folder(workdir)
    shown = json.loads((folder / "output.json").read_text())
    stored = _stored(workdir)
    assert "first" in stored and "fifth" not in stored  # killed mid-way
    # What the folder shows is what was stored, in output.json's usual shape.
    assert shown["first"]["value"] == stored["first"]
    if "value" in shown["first"].get("second", {}):
        assert shown["first"]["second"]["value"] == stored["second"]
    run_json = json.loads((folder / "run.json").read_text())
    assert run_json["status"] == "running" and run_json["partial"] is True
    assert not (workdir / "killed" / "latest").exists()

    # resume completes the same folder, which then holds everything and is no longer partial
    resumed = cli("resume", "latest")
    assert resumed.exit_code == 0, resumed.output
    shown = json.loads((folder / "output.json").read_text())
    assert shown["first"]["second"]["fourth"]["fifth"] == _stored(workdir)["fifth"]
    run_json = json.loads((folder / "run.json").read_text())
    assert run_json["status"] == "completed" and run_json["partial"] is False


def test_sigterm_stops_at_once_and_writes_the_folder(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    """SIGTERM (kill, a job scheduler's limit): the process ends without waiting for the
    batch in flight, records the run as interrupted and writes the folder, without a
    traceback; exit 143 (128 + 15)."""
    # The last step's batch takes 120 s: SIGTERM comes while it is in flight (or before it),
    # and an end that waited for it would take that long; 60 s is room for a busy machine.
    proc = _start(workdir, last=120)
    _outputs_shown(workdir, proc)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 143, (out, err)
    assert time.monotonic() - sent < 60
    assert "Traceback" not in err
    assert "interrupted: finished work is saved; to finish the run: genarun resume" in err
    assert query(workdir / "genarun.db", "SELECT status FROM runs")[0]["status"] == "interrupted"
    folder = _run_folder(workdir)
    stored = _stored(workdir)
    shown = json.loads((folder / "output.json").read_text())
    assert shown["first"]["value"] == stored["first"]  # everything stored is in the folder
    assert ("second" in stored) == ("value" in shown["first"].get("second", {}))
    run_json = json.loads((folder / "run.json").read_text())
    assert run_json["status"] == "interrupted" and run_json["partial"] is True
    assert len(json.loads((folder / "logs.json").read_text())) > 0
