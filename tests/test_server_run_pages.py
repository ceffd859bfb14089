"""The runs pages of `genarun serve`, through Starlette's ASGI test client."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import app_client, query

TREE = """genarun: 1
name: pages
seed: 2
nodes:
  - id: title
    kind: template
    text: "A <b>bold</b> title"
    children:
      - id: cover
        kind: image
        model: dummy
        prompt: "Cover for {{ title }}"
        width: 16
        height: 16
      - id: pick
        kind: human
        ask: approve
        question: "Publish {{ title }}?"
"""


def test_the_runs_and_a_run_with_its_executions_images_and_requests(workdir: Path, ran) -> None:
    run_id = ran("pages.yaml", TREE)
    db = workdir / "genarun.db"
    client = app_client(db)
    listing = client.get("/runs").text
    assert f'<a href="/runs/{run_id}">{run_id[:8]}</a>' in listing
    assert '<span class="badge waiting">waiting</span>' in listing
    assert run_id[:8] not in client.get("/runs", params={"status": "completed"}).text
    assert run_id[:8] in client.get("/runs", params={"q": "pages"}).text
    page = client.get(f"/runs/{run_id[:8]}")
    assert page.status_code == 200
    html = page.text
    for node in ("title", "cover", "pick"):
        assert f"<td>{node}</td>" in html
    assert "Publish" in html and "waiting" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html  # escaped
    (cover,) = query(db, "SELECT output FROM executions WHERE node_id = 'cover'")
    src = f"/runs/{run_id}/files/{json.loads(cover[0])['$image']}"
    assert src in html and 'class="bar"' in html
    image = client.get(src)
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    missing = client.get("/runs/abcdef12")
    assert missing.status_code == 404 and 'href="/runs"' in missing.text
    assert "no run matches" in missing.text
