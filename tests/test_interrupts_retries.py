"""Ctrl-C once while a fetch is in flight: the request finishes (here: a 503 the server sends
once the run has taken the Ctrl-C), and is not retried: a retry is new work, and the person asked for nothing new to start. Before, the run
went on retrying for the whole backoff schedule (four requests here) while it said "nothing
new starts"."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.helpers import PATIENCE, ctrl_c_reaches_it, query, wait_until


class _Silent(BaseHTTPRequestHandler):
    """Takes each request and answers it only when the test says so, with a 503 (which a
    client retries)."""

    def do_GET(self) -> None:
        server = self.server
        server.arrivals.append(time.monotonic())  # type: ignore[attr-defined]
        server.release.wait(PATIENCE)  # type: ignore[attr-defined]
        body = b'{"error": "busy"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def silent_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Silent)
    server.daemon_threads = True
    server.arrivals = []  # type: ignore[attr-defined]
    server.release = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        yield server
    finally:
        server.release.set()  # type: ignore[attr-defined]
        server.shutdown()
        thread.join()
        server.server_close()


def test_ctrl_c_during_a_fetch_stops_its_retries(
    workdir: Path, silent_server: ThreadingHTTPServer
) -> None:
    port = silent_server.server_address[1]
    (workdir / "tree.yaml").write_text(
        "genarun: 1\nname: stoppable-fetch\nnodes:\n  - id: get\n    kind: fetch\n"
        f"    url: http://127.0.0.1:{port}/slow\n    timeout: 60\n    retries: 3\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "genarun", "run", "tree.yaml"],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_reaches_it,
    )
    arrivals: list[float] = silent_server.arrivals  # type: ignore[attr-defined]
    wait_until(lambda: arrivals or proc.poll() is not None, "the fetch reaching the server")
    assert proc.poll() is None, proc.communicate()
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or []), daemon=True)
    reader.start()
    proc.send_signal(signal.SIGINT)
    # The request is still in flight when the run takes the Ctrl-C; only then does it fail.
    wait_until(lambda: any("stopping:" in line for line in lines), "the run to take Ctrl-C")
    silent_server.release.set()  # type: ignore[attr-defined]
    proc.wait(timeout=PATIENCE)
    reader.join(timeout=PATIENCE)
    err = "".join(lines)
    out = proc.stdout.read() if proc.stdout else ""
    # The one execution in flight failed, saying why; nothing was left to start, so the run
    # ends failed (not interrupted), and resume runs the fetch again.
    assert proc.returncode == 1, (out, err)
    assert len(arrivals) == 1, err  # before: a retry after each timeout, four requests in all
    assert "failed after 1 attempt(s): status 503: busy" in err
    assert "not retried: the run is stopping (Ctrl-C)" in err and "Traceback" not in err
    assert "genarun resume" in err
    assert query(workdir / "genarun.db", "SELECT status FROM runs")[0]["status"] == "failed"
