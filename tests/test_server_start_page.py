"""The start page of `genarun serve` (a run of a tree file from a form) and `--read-only`."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from genarun.server.app import ServeOptions, create_app
from tests.helpers import LOCAL, PATIENCE, query
from tests.human_helpers import make_request

TREE = """genarun: 1
name: start-page
seed: 3
vars:
  topic: lizards
nodes:
  - id: intro
    kind: template
    text: "About {{ topic }}"
  - id: cover
    kind: image
    model: dummy
    prompt: "A cover about {{ topic }}"
    width: 8
    height: 8
"""


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, html
    return found.group(1)


def _setup(tmp_path: Path, **options: object) -> tuple[TestClient, Path]:
    trees = tmp_path / "trees"
    (trees / "sub").mkdir(parents=True, exist_ok=True)
    (trees / "start.yaml").write_text(TREE)
    (trees / "sub" / "broken.yaml").write_text(TREE.replace("{{ topic }}", "{{ topik }}"))
    (trees / ".hidden").mkdir(exist_ok=True)
    (trees / ".hidden" / "secret.yaml").write_text(TREE)
    db = tmp_path / "g.db"
    app = create_app(ServeOptions(db=db, auto_resume=False, trees=trees, **options))  # type: ignore[arg-type]
    return TestClient(app, base_url=LOCAL), db


def _finished(db: Path, run_id: str) -> dict[str, object]:
    deadline = time.monotonic() + PATIENCE
    while True:
        (row,) = query(db, "SELECT status, seed, bindings FROM runs WHERE id = ?", run_id)
        if row["status"] != "running":
            return dict(row)
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.1)


def test_the_start_page_lists_trees_and_their_nodes(tmp_path: Path) -> None:
    client, _ = _setup(tmp_path)
    page = client.get("/start").text
    assert "<option>start.yaml</option>" in page and "<option>sub/broken.yaml</option>" in page
    assert "secret.yaml" not in page  # hidden folders are not listed
    assert 'id="start"' not in page  # no form before a tree is chosen
    chosen = client.get("/start", params={"tree": "start.yaml"}).text
    for node, kind in (("intro", "template"), ("cover", "image")):
        assert f'name="node" value="{node}" checked> {node} <small>({kind})</small>' in chosen
    assert "<option selected>start.yaml</option>" in chosen
    broken = client.get("/start", params={"tree": "sub/broken.yaml"}).text
    assert "undefined name &#39;topik&#39;" in broken and 'name="node"' not in broken
    outside = client.get("/start", params={"tree": "../g.db"}).text
    assert "outside the trees folder" in outside
    assert 'href="/start"' in client.get("/runs").text  # the runs page links to it


def test_a_bad_start_form_is_refused_with_the_cli_message_and_keeps_what_was_typed(
    tmp_path: Path, cli
) -> None:
    client, db = _setup(tmp_path)
    csrf = _csrf(client.get("/start", params={"tree": "start.yaml"}).text)
    form = {"csrf": csrf, "tree": "start.yaml", "set": "=x", "seed": "7"}
    bad = client.post("/start", data=form)
    assert bad.status_code == 422
    from_cli = cli("run", tmp_path / "trees" / "start.yaml", "--set", "=x")
    message = re.search(r'role="alert">([^<]+)<', bad.text)
    assert message and message.group(1).strip()[:40] in from_cli.output.replace("'", "&#39;")
    assert ">=x</textarea>" in bad.text and 'name="seed" value="7"' in bad.text
    assert client.post("/start", data={**form, "set": "", "seed": "x"}).status_code == 422
    forged = client.post("/start", data={**form, "csrf": "0" * 64, "set": ""})
    assert forged.status_code == 403 and "stale or forged" in forged.text
    other_site = client.post(
        "/start", data={**form, "set": ""}, headers={"Origin": "https://evil.example"}
    )
    assert other_site.status_code == 403
    missing = client.post("/start", data={**form, "tree": "nope.yaml", "set": ""})
    assert missing.status_code == 404
    assert not db.exists() or query(db, "SELECT count(*) FROM runs")[0][0] == 0


@pytest.mark.slow  # two worker runs: about 6 s on 2 cores
def test_the_start_form_starts_a_worker_run_with_its_values_seed_and_nodes(
    tmp_path: Path,
) -> None:
    client, db = _setup(tmp_path)
    csrf = _csrf(client.get("/start", params={"tree": "start.yaml"}).text)
    base = {"csrf": csrf, "tree": "start.yaml", "shown": ["intro", "cover"]}
    skipped = client.post(
        "/start",
        data={**base, "set": "topic=geckos\n", "seed": "11", "node": ["intro"], "mode": "skip"},
        follow_redirects=False,
    )
    assert skipped.status_code == 303, skipped.text
    run_id = skipped.headers["location"].rsplit("/", 1)[1]
    row = _finished(db, run_id)
    assert row["status"] == "completed" and row["seed"] == 11 and "geckos" in str(row["bindings"])
    ran = query(db, "SELECT node_id, status FROM executions WHERE run_id = ?", run_id)
    assert {r["node_id"]: r["status"] for r in ran}.get("cover") in (None, "skipped")
    assert any(r["node_id"] == "intro" and r["status"] == "done" for r in ran)
    only = client.post(
        "/start", data={**base, "node": ["cover"], "mode": "only"}, follow_redirects=False
    )
    assert only.status_code == 303
    other = only.headers["location"].rsplit("/", 1)[1]
    assert _finished(db, other)["status"] == "completed"
    ran = query(db, "SELECT node_id FROM executions WHERE run_id = ? AND status = 'done'", other)
    assert [r["node_id"] for r in ran] == ["cover"]
    page = client.get(f"/runs/{other}")
    assert page.status_code == 200 and "<td>cover</td>" in page.text


def test_read_only_serves_no_post_route_and_pages_show_no_controls(tmp_path: Path) -> None:
    client, db = _setup(tmp_path, read_only=True)
    request, _ = make_request(db)
    inbox = client.get("/inbox").text
    assert request.question in inbox and "<form" not in inbox and "Read-only" in inbox
    assert 'href="/start"' not in client.get("/runs").text
    assert client.get("/start").status_code == 404
    for path in ("/answer", "/start", "/api/v1/runs", f"/api/v1/runs/{request.run_id}/answers"):
        assert client.post(path, json={}).status_code in (404, 405), path
    hook = client.post(f"/runs/{request.run_id}/{request.node_id}/hook", json={"answer": "x"})
    assert hook.status_code in (404, 405)
    assert client.get("/api/v1/inbox").status_code == 200
    assert client.get("/api/v1/runs").status_code == 200
    assert query(db, "SELECT status FROM human_requests")[0][0] == "waiting"


@pytest.mark.parametrize("read_only", [False, True])
def test_the_inbox_shows_its_forms_only_when_not_read_only(tmp_path: Path, read_only: bool) -> None:
    client, db = _setup(tmp_path, read_only=read_only)
    make_request(db)
    assert ('<form method="post" action="answer">' in client.get("/inbox").text) is not read_only
