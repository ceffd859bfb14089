"""What the offline examples share: a JSON fixture server on 127.0.0.1 that stands in for a
real API, and running an example's tree against it with `--set NAME=URL`.

Each example's `offline.py` gives its routes (path and query -> status and JSON answer); see
examples/weather/offline.py and examples/hn-digest/offline.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# (path, parsed query) -> (HTTP status, the JSON answer)
Answer = Callable[[str, dict[str, list[str]]], tuple[int, Any]]


def start_json_server(answer: Answer) -> ThreadingHTTPServer:
    """A started server on a free port of 127.0.0.1 answering GETs with `answer` (stop it
    with .shutdown())."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            status, reply = answer(parts.path, urllib.parse.parse_qs(parts.query))
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the example's own output only

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_offline(
    server: ThreadingHTTPServer, tree: Path, url_vars: list[str], what: str, argv: list[str]
) -> int:
    """Run `tree` with each of `url_vars` set to the server's URL (and `argv`'s options), then
    stop the server; the run's exit code."""
    url = f"http://127.0.0.1:{server.server_address[1]}"
    print(f"fixture server ({what} stand-in) on {url}", file=sys.stderr)
    try:
        command = [sys.executable, "-m", "genarun", "run", str(tree)]
        for name in url_vars:
            command += ["--set", f"{name}={url}"]
        return subprocess.call([*command, *argv])
    finally:
        server.shutdown()
