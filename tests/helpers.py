"""Helpers shared by the tests (importable as `tests.helpers`; pytest puts the repo root on sys.path)."""

from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.testclient import TestClient

TREES = Path(__file__).parent / "trees"


def genarun_subprocess(
    *args: object, cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `python -m genarun ARGS...` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "genarun", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# The address test clients send as Host: a server without a token answers only loopback names.
LOCAL = "http://127.0.0.1"


def app_client(db: Path, **options: Any) -> TestClient:
    """An ASGI test client of `genarun serve`'s app on `db` (ServeOptions `options`); no
    worker continues answered runs unless `auto_resume=True` is given."""
    from starlette.testclient import TestClient

    from genarun.server.app import ServeOptions, create_app

    app = create_app(ServeOptions(db=db, **{"auto_resume": False, **options}))
    return TestClient(app, base_url=LOCAL)


def query(db: Path, sql: str, *params: object) -> list[sqlite3.Row]:
    """Rows from the SQLite file itself, read with the standard library, not our store."""
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def comparable_outputs(folder: Path, db: Path) -> Any:
    """A run's output.json with each embedding's id replaced by its vector (ids depend on the
    order rows were written), and each image by its pixels' digest: equal for two runs that
    made the same values (the local and the Ray executor; bench/ray_overhead.py too)."""
    conn = sqlite3.connect(db)
    vectors = dict(conn.execute("SELECT id, vector FROM embeddings").fetchall())
    conn.close()

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            if "embedding" in value and "dim" in value:
                return {**value, "embedding": vectors[value["embedding"]].hex()}
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, str) and value.startswith("assets/"):
            # The pixels: the PNG's text chunks name the run, which differs between any two.
            from PIL import Image

            with Image.open(folder / value) as image:
                return hashlib.sha256(image.mode.encode() + image.tobytes()).hexdigest()
        return value

    return plain(json.loads((folder / "output.json").read_text()))


def ctrl_c_reaches_it() -> None:
    """`preexec_fn` of a child that a test sends SIGINT, as a person's Ctrl-C: a shell starts
    background jobs with SIGINT ignored, every process inherits that, and a Python started so
    keeps ignoring it outside genarun's own run handler (a CI job run with `&` failed so).
    Ctrl-C reaches a foreground process, whose SIGINT is the default: so is the child's."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
