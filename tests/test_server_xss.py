"""What a tree, a model or an answer writes is shown as text on every page of `genarun serve`,
never as markup: outputs, picks, vars, a human request's question and options, and the tree's
name and description hold HTML and script payloads, and no page may carry one unescaped."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import app_client
from tests.human_helpers import make_request

PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(2)>",
    '"><svg onload=alert(3)>',
    "'><iframe src=javascript:alert(4)>",
    "</textarea><script>alert(5)</script>",
    "</title><script>alert(6)</script>",
    '<a href="javascript:alert(7)">x</a>',
    "<style>*{display:none}</style>",
    "{{7*7}}<b>bold</b>",
    "<!--<script>alert(8)//-->",
]
# What would be markup if a payload were written unescaped.
MARKERS = ["<script>alert", "<img src=x", "<svg onload", "<iframe src", "<b>bold</b>",
           "<style>*", '<a href="javascript:', "<!--<script"]  # fmt: skip


def _tree_text() -> str:
    lines = ["genarun: 1", "name: xss", "description: |-", "  " + " ".join(PAYLOADS), "vars:"]
    lines += [f"  v{i}: {p!r}" for i, p in enumerate(PAYLOADS)]
    lines += ["nodes:"]
    for i, _ in enumerate(PAYLOADS):
        lines += [f"  - id: out{i}", "    kind: template", f'    text: "{{{{ v{i} }}}}"']
    lines += ["  - id: listed", "    kind: template", "    text: '{{ [v0, v1, v2] | json }}'"]
    lines += ["    parse: json", "  - id: each", "    kind: template", "    foreach: listed"]
    lines += ["    text: '{{ item }}'"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("read_only", [False, True])
def test_no_page_shows_a_payload_as_markup(
    workdir: Path, ran: Callable[..., str], read_only: bool
) -> None:
    run_id = ran("xss.yaml", _tree_text())
    db = workdir / "genarun.db"
    request, _ = make_request(db, question=" ".join(PAYLOADS), options=PAYLOADS[:5])
    client = app_client(db, trees=workdir, read_only=read_only)
    pages = [
        "/runs",
        f"/runs/{run_id}",
        f"/runs/{run_id}/nodes/out0",
        f"/runs/{run_id}/nodes/each",
        f"/runs/{request.run_id}",
        "/inbox",
        f"/diff?a={run_id}&b={request.run_id}",
        f"/diff?a={run_id}&b={run_id}&all=1",
        "/trees",
        "/trees/xss.yaml",
        "/experiments",
        "/start",
    ]
    seen = 0
    for url in pages:
        reply = client.get(url)
        if reply.status_code in (404, 405):  # /start in read-only mode
            continue
        assert reply.status_code == 200, (url, reply.status_code)
        html = reply.text
        seen += sum(p.replace("<", "&lt;")[:12] in html for p in PAYLOADS)
        for marker in MARKERS:
            assert marker not in html, (url, marker)
    assert seen >= 10  # the payloads are on the pages, as text
