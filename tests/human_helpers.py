"""Helpers for the human-step tests: a real `genarun serve` on 127.0.0.1, and requests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import PATIENCE, Transcript


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(
    db: Path, *args: str, port: int | None = None, env: dict[str, str] | None = None
) -> Iterator[str]:
    """`genarun serve` as a real process on 127.0.0.1; yields its base URL, stops it after."""
    import os

    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "genarun", "serve", "--db", str(db), "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    base = f"http://127.0.0.1:{port}"
    # Read as it comes: a server's log left in the pipe fills it, and the server then blocks.
    said = Transcript(process.stdout)  # type: ignore[arg-type]
    try:
        # It starts in seconds here; a slower, busier machine may take many times that: the
        # deadline is reached only if it never starts.
        deadline = time.monotonic() + PATIENCE
        while True:
            if process.poll() is not None:
                raise AssertionError(f"serve exited: {said.finish()}")
            try:
                if httpx.get(base + "/health", timeout=10).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"serve did not start in {PATIENCE:g} s")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def make_request(db: Path, **overrides: Any) -> tuple[Any, str]:
    """A run (status waiting) and one human request of it, written as a run would; returns
    the request and its token."""
    from genarun.human.answers import answer_schema
    from genarun.store.db import Store
    from genarun.store.human import open_request

    store = Store(db)
    try:
        experiment = store.create_experiment(name="t")
        run_id = store.create_run(name="t", experiment_id=experiment, status="waiting")
        ask = overrides.pop("ask", "choice")
        options = overrides.pop("options", ["red", "green", "blue"])
        values: dict[str, Any] = {
            "run_id": run_id,
            "node_id": "pick",
            "path": (),
            "ask": ask,
            "question": "Which colour?",
            "options": options,
            "images": None,
            "schema": answer_schema(ask, options, overrides.pop("custom_schema", None)),
            "default": None,
            "has_default": False,
            "seed": 7,
            "timeout": None,
            "on_timeout": "fail",
            "collect": None,
            "notify_url": None,
        } | overrides
        return open_request(store, **values)
    finally:
        store.close()
