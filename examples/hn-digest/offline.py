"""Run the hn-digest example offline: a small server on 127.0.0.1 answers like the Hacker News
API (`/v0/topstories.json`, `/v0/item/<id>.json`, same JSON shapes, made-up stories), and the
tree runs against it with `--set base_url=...`.

    python examples/hn-digest/offline.py [more genarun run options, e.g. --set count=3]

`fixture_server()` is also what the tests start.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TITLES = [
    "Show HN: A pipeline-tree runner for generative models",
    "The surprising physics of sourdough",
    "Why SQLite is a good file format",
    "Ask HN: How do you keep secrets out of logs?",
    "Persistent homology, explained with coffee cups",
    "A tiny GPT-2 you can train on a laptop",
    "The history of the Idempotency-Key header",
    "Rust in the Linux kernel, two years on",
    "How rate limits and Retry-After work",
    "Launch HN: Lizard care as a service (YC W27)",
]
FIRST_ID = 42_000_001


def item(item_id: int) -> dict[str, Any] | None:
    position = item_id - FIRST_ID
    if not 0 <= position < len(TITLES):
        return None  # the real API answers `null` for an id it does not have
    title = TITLES[position]
    story: dict[str, Any] = {
        "id": item_id,
        "type": "story",
        "by": f"user{position + 1}",
        "time": 1_796_000_000 + position * 600,
        "title": title,
        "score": 300 - position * 23,
        "descendants": 120 - position * 9,
        "kids": [item_id * 10 + k for k in range(3)],
    }
    if not title.startswith("Ask HN"):  # Ask HN posts have text, not a link
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        story["url"] = f"https://example.com/{slug}"
    return story


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        found = re.fullmatch(r"/v0/item/(\d+)\.json", path)
        status = 200
        if path == "/v0/topstories.json":
            answer: Any = [FIRST_ID + i for i in range(len(TITLES))]
        elif found:
            answer = item(int(found.group(1)))
        else:
            status, answer = 404, {"error": "Permission denied"}  # what Firebase says
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def fixture_server() -> ThreadingHTTPServer:
    """A started server on a free port of 127.0.0.1 (stop it with .shutdown())."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: list[str]) -> int:
    server = fixture_server()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    print(f"fixture server (Hacker News API stand-in) on {url}", file=sys.stderr)
    try:
        command = [sys.executable, "-m", "genarun", "run", str(HERE / "tree.yaml")]
        return subprocess.call([*command, "--set", f"base_url={url}", *argv])
    finally:
        server.shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
