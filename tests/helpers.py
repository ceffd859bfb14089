"""Helpers shared by the tests (importable as `tests.helpers`; pytest puts the repo root on sys.path)."""

from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.testclient import TestClient

TREES = Path(__file__).parent / "trees"

# Seconds a test waits for something that happens in well under a second here (a process
# starting, a server answering, a batch starting). CI runs on slower, busier machines: a
# deadline is only reached when the awaited thing is broken, so a long one costs nothing.
PATIENCE = 180.0


def wait_until(condition: Callable[[], object], what: str, seconds: float = PATIENCE) -> None:
    """Poll `condition` until it is true; fail naming `what` after `seconds`. A test waits for
    the event it needs (a row, a file, a line) this way, never for a fixed time."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds:g} s for {what}"
        time.sleep(0.02)


def batches_started(log: Path) -> int:
    """How many batches the dummy model given `batch_log: LOG` has started."""
    try:
        return len(log.read_text().splitlines())
    except FileNotFoundError:
        return 0


def start_local_ray(ray: Any, **options: Any) -> None:
    """`ray.init(**options)`, started again if Ray gave up on its own start: it waits a fixed
    30 s (not configurable) for its raylet to register, which a busy machine can miss."""
    for attempt in range(3):
        try:
            ray.init(**options)
            return
        except Exception as exc:
            if "timed out during startup" not in str(exc) or attempt == 2:
                raise
            ray.shutdown()


class Transcript:
    """What a child process writes to a pipe, read line by line as it comes by a thread of
    its own, so a test can wait for a line the child says (and the pipe never fills)."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: list[str] = []
        self._ended = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    @property
    def text(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def wait_for(self, words: str, seconds: float = PATIENCE) -> None:
        """Until a line containing `words` has come; fail (showing what came) otherwise."""

        def said() -> bool:
            return any(words in line for line in self._lines)

        with self._changed:
            self._changed.wait_for(lambda: said() or self._ended, seconds)
            assert said(), f"never said {words!r}; it said:\n{''.join(self._lines)}"

    def finish(self, seconds: float = PATIENCE) -> str:
        """Everything it said, once the pipe has closed (the process ended)."""
        self._reader.join(seconds)
        assert not self._reader.is_alive(), f"the pipe is still open after {seconds:g} s"
        return self.text


def genarun_subprocess(
    *args: object, cwd: Path, timeout: float = PATIENCE
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
