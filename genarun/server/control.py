"""Pipeline control from `genarun serve`: start a run of a tree file, rerun nodes of a run,
stop a running one, pause and unpause it.

`POST /api/v1/runs` checks the request as `genarun run` would (the tree validated and compiled,
`--set` values read by the same rules; a problem is a 422 with the CLI's own message), then
starts `genarun run` as a worker process, never in the request handler, and answers with the
run's id once the worker has stored it. Tree files are taken only from the server's trees
folder (`serve --trees`, default the current folder). `POST /api/v1/runs/{run}/stop` sends
the process running it an interrupt: it stops cleanly, its status `interrupted`, resumable.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

START_TIMEOUT = 60.0  # seconds for a worker to store its run


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _tree_path(root: Path, name: Any) -> Path:
    if not isinstance(name, str) or not name.strip():
        raise ControlError(422, "tree: the path of a tree file, relative to the trees folder")
    root = root.resolve()
    try:  # a NUL byte or an over-long name is no file either (ValueError, ENAMETOOLONG)
        path = (root / name).resolve()
        outside = not path.is_relative_to(root)
        found = not outside and path.is_file()
    except (OSError, ValueError):
        outside, found = False, False
    if outside:
        raise ControlError(403, f"tree: {name} is outside the trees folder ({root})")
    if not found:
        raise ControlError(404, f"tree: no file {name[:200]} in the trees folder ({root})")
    return path


def _strings(payload: dict[str, Any], key: str) -> list[str]:
    value = payload.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ControlError(422, f"{key}: a list of text")
    return value


def start_run(store: Any, db: Path, trees: Path, payload: Any) -> dict[str, Any]:
    """Check and start a run; returns its id and worker pid (ControlError otherwise)."""
    from genarun.cli.common import parse_set
    from genarun.errors import GenarunError
    from genarun.run.model_checks import check_all_models
    from genarun.run.runner import RunOptions, prepare

    if not isinstance(payload, dict):
        raise ControlError(422, 'send {"tree": PATH, "set": ["name=value"], "seed": N, ...}')
    unknown = sorted(set(payload) - {"tree", "set", "seed", "skip", "only"})
    if unknown:
        raise ControlError(
            422, f"unknown field(s) {', '.join(unknown)}: tree, set, seed, skip, only"
        )
    path = _tree_path(trees, payload.get("tree"))
    sets, skip, only = (
        _strings(payload, "set"),
        _strings(payload, "skip"),
        _strings(payload, "only"),
    )
    seed = payload.get("seed")
    if (
        seed is not None
        and seed != "random"
        and (isinstance(seed, bool) or not isinstance(seed, int))
    ):
        raise ControlError(422, "seed: a whole number or random")
    try:
        overrides = parse_set(tuple(sets))
        compiled = prepare(path, RunOptions(seed=seed, overrides=overrides, skip=set(skip)))
        check_all_models(compiled)
    except GenarunError as exc:
        raise ControlError(422, str(exc)) from None
    command = [sys.executable, "-m", "genarun", "run", str(path), "--db", str(db)]
    for flag, values in (("--set", sets), ("--skip", skip), ("--only", only)):
        for value in values:
            command += [flag, value]
    if seed is not None:
        command += ["--seed", str(seed)]
    run_id, pid = _launch(db, command, path.parent)
    return {"run": run_id, "pid": pid, "tree": str(path)}


def rerun(store: Any, db: Path, run_ref: str, payload: Any) -> dict[str, Any]:
    """Rerun nodes (or single foreach items, `cover[2]`) of a run as a new run, in a worker."""
    from genarun.errors import StoreError, UserError
    from genarun.graph.plan import parse_node_ref

    if not isinstance(payload, dict) or set(payload) != {"node"}:
        raise ControlError(422, 'send {"node": ["ID", "ID[INDEX]", ...]}')
    nodes = _strings(payload, "node")
    if not nodes:
        raise ControlError(422, "node: name at least one node to run again")
    try:
        run = store.resolve_run(run_ref)
        for node in nodes:
            parse_node_ref(node)
    except StoreError as exc:
        raise ControlError(404, str(exc)) from None
    except UserError as exc:
        raise ControlError(422, str(exc)) from None
    command = [sys.executable, "-m", "genarun", "rerun", run["id"], "--db", str(db)]
    for node in nodes:
        command += ["--node", node]
    folder = Path(run["tree_path"]).parent if run.get("tree_path") else Path.cwd()
    run_id, pid = _launch(db, command, folder if folder.is_dir() else Path.cwd())
    return {"run": run_id, "pid": pid, "source": run["id"]}


def _launch(db: Path, command: list[str], cwd: Path) -> tuple[str, int]:
    """Start a genarun worker; its run's id once stored (ControlError with what it said)."""
    with tempfile.TemporaryFile() as log:  # what the worker says if it fails to start
        worker = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=cwd,
            start_new_session=True,
        )
        run_id = _wait_for_run(db, worker)
        if run_id is None:
            log.seek(0)
            said = log.read().decode(errors="replace").strip()[-500:]
            if worker.poll() is None:
                worker.kill()
            said = said.removeprefix("error: ")
            raise ControlError(422, said or f"the run did not start (exit {worker.returncode})")
    _reap_later(worker)
    return run_id, worker.pid


def _wait_for_run(db: Path, worker: subprocess.Popen[bytes]) -> str | None:
    """The run the worker stored (its claim holds the worker's pid); None if it exited first.
    Read with a connection of its own each time: a fresh look at what the worker committed.
    `db` is the server's database file, not its store's path: a server on a database that is
    not there yet reads an empty one in memory, where the worker's run never appears."""
    import sqlite3

    from genarun.store.opening import uri

    def mine() -> set[str]:
        # A server on a new database has not made the file (serving creates none): the
        # worker makes it and its tables; until then it has stored no run.
        try:
            conn = sqlite3.connect(uri(db, "ro"), uri=True, timeout=30)
        except sqlite3.OperationalError:
            return set()
        try:
            rows = conn.execute("SELECT id FROM runs WHERE pid = ?", (worker.pid,))
            return {r[0] for r in rows}
        except sqlite3.OperationalError:  # the file, not yet its tables
            return set()
        finally:
            conn.close()

    # An old run whose process had the same pid is not the worker's (a rerun's `started` is
    # not the time it was made, so time cannot tell them apart).
    before = mine()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        exited = worker.poll() is not None
        found = mine() - before
        if found:
            return found.pop()
        if exited:
            return None
        time.sleep(0.1)
    return None


def _reap_later(worker: subprocess.Popen[bytes]) -> None:
    """Wait for the worker in a thread, so it leaves no zombie behind."""
    import threading

    threading.Thread(target=worker.wait, name="genarun-run-worker", daemon=True).start()


def stop_run(store: Any, run_ref: str) -> dict[str, Any]:
    """Interrupt the process running a run (this host only); ControlError otherwise."""
    from genarun.errors import StoreError
    from genarun.store.processes import process_alive

    try:
        run = store.resolve_run(run_ref)
    except StoreError as exc:
        raise ControlError(404, str(exc)) from None
    short = run["id"][:8]
    if run["status"] != "running":
        raise ControlError(409, f"run {short} is not running (it is {run['status']})")
    alive = process_alive(run)
    if alive is None:
        raise ControlError(409, f"run {short} runs on another host ({run['host']}): stop it there")
    if not alive:
        raise ControlError(409, f"run {short} is not running: its process is gone (resume it)")
    os.kill(int(run["pid"]), signal.SIGINT)  # Ctrl-C: finished work is kept, resumable
    return {"run": run["id"], "stopping": True}


def pause(store: Any, run_ref: str, *, by: str) -> dict[str, Any]:
    """Pause a running run: no new executions start (ControlError 404/409 otherwise)."""
    from genarun.errors import StoreError
    from genarun.store.pauses import PauseRefused, pause_run

    try:
        run = store.resolve_run(run_ref)
        return pause_run(store, run, by=by)
    except PauseRefused as exc:
        raise ControlError(409, str(exc)) from None
    except StoreError as exc:
        raise ControlError(404, str(exc)) from None


def unpause(store: Any, run_ref: str) -> dict[str, Any]:
    """Let a paused run go on (ControlError 404, or 409 when it is not paused)."""
    from genarun.errors import StoreError
    from genarun.store.pauses import PauseRefused, unpause_run

    try:
        run = store.resolve_run(run_ref)
        return unpause_run(store, run)
    except PauseRefused as exc:
        raise ControlError(409, str(exc)) from None
    except StoreError as exc:
        raise ControlError(404, str(exc)) from None
