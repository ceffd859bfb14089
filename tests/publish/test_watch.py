"""`genarun watch`: an edit reruns only what changed (the rest comes from the cache), a file
the tree reads counts as the tree, and the site export is refreshed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from PIL import Image

from genarun.publish.watch import Watcher, files_read
from genarun.run.interrupts import taken_by_last_run
from tests.fetch_server import FetchServer, Reply
from tests.helpers import PATIENCE, batches_started, ctrl_c_reaches_it, query, wait_until


def _photo(path: Path, colour: tuple[int, int, int]) -> None:
    Image.new("RGB", (16, 16), colour).save(path)


def _executed(db: Path, run_id: str) -> list[str]:
    """The nodes (with foreach index) a run executed itself, not reused from the cache."""
    rows = query(
        db,
        "SELECT node_id, path FROM executions WHERE run_id = ? AND reused_from IS NULL "
        "AND status = 'done' ORDER BY node_id, path",
        run_id,
    )
    return [r["node_id"] + ("" if r["path"] == "[]" else r["path"]) for r in rows]


def _bump(path: Path) -> None:
    """Make a change visible to mtime polling even within one second."""
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + 2))


def test_an_edit_reruns_only_the_changed_node(tree: Callable[[str], Path], workdir: Path) -> None:
    path = tree("watch_site.yaml")
    _photo(workdir / "photo.png", (200, 30, 30))
    assert files_read(path) == [path, (workdir / "photo.png").resolve()]
    db = workdir / "genarun.db"
    watcher = Watcher([workdir], db=db)
    (first,) = watcher.poll()
    assert first.error is None, first.error
    run1 = first.outcome.runs[0].id
    assert _executed(db, run1) == ["article[0]", "article[1]", "outro", "photo_caption", "plan"]
    assert first.exported == [workdir / "site"]
    assert json.loads((workdir / "site/site-data.json").read_text())["site"]["run"] == run1

    assert watcher.poll() == []  # nothing changed: nothing runs

    path.write_text(path.read_text().replace("Say goodbye.", "Say farewell."))
    _bump(path)
    (second,) = watcher.poll()
    run2 = second.outcome.runs[0].id
    assert _executed(db, run2) == ["outro"]
    assert second.outcome.runs[0].counts["reused"] == 4
    data = json.loads((workdir / "site/site-data.json").read_text())
    assert data["site"]["run"] == run2 and data["site"]["complete"]

    # A file the tree reads changed: its reader runs again, nothing else.
    _photo(workdir / "photo.png", (30, 30, 200))
    _bump(workdir / "photo.png")
    (third,) = watcher.poll()
    assert _executed(db, third.outcome.runs[0].id) == ["photo_caption"]


def test_a_broken_edit_is_reported_and_watching_goes_on(
    tree: Callable[[str], Path], workdir: Path
) -> None:
    path = tree("watch_site.yaml")
    _photo(workdir / "photo.png", (1, 2, 3))
    watcher = Watcher([path], db=workdir / "genarun.db")
    good = path.read_text()
    path.write_text(good.replace("kind: caption", "kind: captoin"))
    (event,) = watcher.poll()
    assert event.outcome is None and "unknown kind 'captoin'" in str(event.error)
    assert not (workdir / "site").exists()
    path.write_text(good)
    _bump(path)
    (event,) = watcher.poll()
    assert event.error is None and (workdir / "site/site-data.json").is_file()


def test_watch_once_from_the_command_line(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    tree("watch_site.yaml")
    _photo(workdir / "photo.png", (9, 9, 9))
    result = cli("watch", workdir, "--once")
    assert result.exit_code == 0, result.output
    assert "5 ran, 0 reused" in result.output
    assert f"site export refreshed in {workdir / 'site'}" in result.output
    result = cli("watch", workdir, "--once")
    assert "0 ran, 5 reused" in result.output
    empty = workdir / "empty"
    empty.mkdir()
    result = cli("watch", empty)
    assert result.exit_code == 2 and "no tree files" in result.output


def test_watch_process_reruns_on_an_edit(tree: Callable[[str], Path], workdir: Path) -> None:
    """The real loop, as a process: it runs the tree, sees an edit, runs it again."""
    path = tree("watch_site.yaml")
    _photo(workdir / "photo.png", (5, 5, 5))
    db = workdir / "genarun.db"
    env = {**os.environ, "GENARUN_DB": str(db)}
    process = subprocess.Popen(
        [sys.executable, "-m", "genarun", "watch", str(path), "--interval", "0.2"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=ctrl_c_reaches_it,
    )
    try:

        def runs() -> list[str]:
            if not db.exists():
                return []
            try:
                return [
                    r["id"] for r in query(db, "SELECT id FROM runs WHERE status = 'completed'")
                ]
            except sqlite3.OperationalError:  # the file exists before its tables do
                return []

        wait_until(lambda: len(runs()) >= 1, "the first run")
        assert len(runs()) == 1
        path.write_text(path.read_text().replace("Say goodbye.", "Say hello."))
        _bump(path)
        wait_until(lambda: len(runs()) >= 2, "the run after the edit")
        assert len(runs()) == 2
        newest = query(db, "SELECT id FROM runs ORDER BY started DESC LIMIT 1")[0]["id"]
        assert _executed(db, newest) == ["outro"]
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=PATIENCE)
    assert process.returncode == 130, output
    assert "Traceback" not in output


SLOW_TREE = """\
genarun: 1
name: slow-watch
models:
  slow: {provider: dummy, id: w, options: {delay: 2.5}}
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
"""


def test_ctrl_c_during_a_run_stops_watching(workdir: Path) -> None:
    """Ctrl-C while a watched tree runs: the batch in flight is saved, the run is interrupted
    (resumable) and the watcher ends with 130, instead of reporting the run and going on."""
    path = workdir / "slow.yaml"
    path.write_text(
        SLOW_TREE.replace("delay: 2.5", f'delay: 2.5, batch_log: "{workdir}/batches.log"')
    )
    db = workdir / "genarun.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "genarun", "watch", str(path), "--interval", "0.2"],
        cwd=workdir,
        env={**os.environ, "GENARUN_DB": str(db)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_reaches_it,
    )
    try:
        # Once the batch is in flight (the dummy logs it as it starts), the run has taken over
        # Ctrl-C: a fixed 0.5 s after the run was stored was a guess a slower machine loses.
        log = workdir / "batches.log"
        wait_until(lambda: process.poll() is not None or batches_started(log), "the batch")
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=PATIENCE)
    finally:
        process.kill()
    assert process.returncode == 130, (out, err)
    assert "interrupted: finished work is saved" in err and "genarun resume" in err
    assert "Traceback" not in out + err
    assert [r["status"] for r in query(db, "SELECT status FROM runs")] == ["interrupted"]
    assert _executed(db, query(db, "SELECT id FROM runs")[0]["id"]) == ["first"]


def _stored_runs(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        return len(query(db, "SELECT id FROM runs"))
    except sqlite3.OperationalError:  # the file exists before its tables do
        return 0


class _PressingServer(FetchServer):
    """Presses Ctrl-C (SIGINT to this process) while it answers: the run, whose only work this
    request is, takes the press and then finishes its last work: it is complete."""

    def answer(self, method: str, path: str, prefix: str, nth: int, body: bytes) -> Reply:
        if prefix == "/press":
            os.kill(os.getpid(), signal.SIGINT)
            # Until the main thread's handler has taken it, while this request runs (a fixed
            # 0.5 s could end first on a busy machine: the press then came after the run).
            wait_until(taken_by_last_run, "the run to take the Ctrl-C")
            return 200, {"Content-Type": "application/json"}, b'{"pressed": true}'
        return super().answer(method, path, prefix, nth, body)


def test_a_ctrl_c_that_came_as_the_run_finished_still_stops_watching(workdir: Path) -> None:
    """The press came as the last work finished, so the run is complete: it stays complete,
    and the watcher still stops rather than swallow the press and watch on."""
    with _PressingServer() as server:
        path = workdir / "press.yaml"
        path.write_text(
            "genarun: 1\nname: press\nnodes:\n"
            f"  - id: ask\n    kind: fetch\n    url: {server.url}/press\n"
        )
        db = workdir / "genarun.db"
        watcher = Watcher([path], db=db)
        seen: list[str] = []

        def report(event: Any) -> None:
            seen.append(event.outcome.status)
            _bump(path)  # without the fix the loop runs again, and ends after two passes

        with pytest.raises(KeyboardInterrupt):
            watcher.loop(report, interval=0.1, passes=2)
    assert seen == ["completed"]
    assert [r["status"] for r in query(db, "SELECT status FROM runs")] == ["completed"]
