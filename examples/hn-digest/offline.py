"""Run the hn-digest example offline: a small server on 127.0.0.1 answers like the Hacker News
API (`/v0/topstories.json`, `/v0/item/<id>.json`, same JSON shapes, made-up stories), and the
tree runs against it with `--set base_url=...`.

    python examples/hn-digest/offline.py [more genarun run options, e.g. --set count=3]

`fixture_server()` is also what the tests start.
"""

from __future__ import annotations

import re
import sys
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/offline_server.py, run as a script or loaded

from offline_server import run_offline, start_json_server  # noqa: E402

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


def answer(path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
    found = re.fullmatch(r"/v0/item/(\d+)\.json", path)
    if path == "/v0/topstories.json":
        return 200, [FIRST_ID + i for i in range(len(TITLES))]
    if found:
        return 200, item(int(found.group(1)))
    return 404, {"error": "Permission denied"}  # what Firebase says


def fixture_server() -> ThreadingHTTPServer:
    """A started server on a free port of 127.0.0.1 (stop it with .shutdown())."""
    return start_json_server(answer)


def main(argv: list[str]) -> int:
    tree = HERE / "tree.yaml"
    return run_offline(fixture_server(), tree, ["base_url"], "Hacker News API", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
