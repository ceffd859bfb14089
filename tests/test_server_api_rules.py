"""Rules every route of `genarun serve` keeps: what the OpenAPI document lists, command bodies,
cross-site requests, values shown as people read them, the store never touched on the event
loop."""

from __future__ import annotations

import threading
from pathlib import Path

from starlette.testclient import TestClient

from genarun.server.app import ServeOptions, create_app
from tests.helpers import LOCAL, app_client
from tests.human_helpers import make_request


def _client(db: Path, **options: object) -> TestClient:
    return app_client(db, **options)


def test_the_read_only_document_lists_no_post_route(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    make_request(db)
    document = _client(db, read_only=True).get("/api/v1/openapi.json").json()
    methods = {m for item in document["paths"].values() for m in item}
    assert methods == {"get"}
    assert "/api/v1/runs/{run_id}" in document["paths"]
    assert "/runs/{run_id}/{node}/hook" not in document["paths"]  # POST only: gone
    full = _client(db).get("/api/v1/openapi.json").json()
    assert "post" in full["paths"]["/api/v1/runs/{run_id}/stop"]


def test_stop_takes_no_body_or_an_empty_object(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    request, _ = make_request(db)  # a run that waits: not running
    client = _client(db)
    url = f"/api/v1/runs/{request.run_id}/stop"
    for sent in (client.post(url), client.post(url, json={}), client.post(url, content=b" ")):
        assert sent.status_code == 409, sent.text
        assert "is not running (it is waiting)" in sent.json()["error"]
    assert client.post(url, json={"force": True}).status_code == 422
    assert client.post(url, content=b"[", headers={"content-type": "text/plain"}).status_code == 415
    assert client.post("/api/v1/runs/abcdef12/stop").status_code == 404


def test_a_post_from_a_page_of_another_site_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    request, _ = make_request(db)
    client = _client(db)
    foreign = {"origin": "https://evil.example"}
    stop = client.post(f"/api/v1/runs/{request.run_id}/stop", headers=foreign)
    assert stop.status_code == 403 and "another site" in stop.json()["error"]
    answer = client.post(
        f"/api/v1/runs/{request.run_id}/answers",
        json={"node": "pick", "answer": "red"},
        headers=foreign,
    )
    assert answer.status_code == 403
    assert client.get("/api/v1/inbox").json()["requests"]  # nothing was answered


def test_answers_show_as_json_on_the_run_page_not_as_python(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    request, _ = make_request(db, ask="approve", options=None)
    client = _client(db)
    ok = client.post(
        f"/api/v1/runs/{request.run_id}/answers", json={"node": "pick", "answer": True}
    )
    assert ok.status_code == 200, ok.text
    html = client.get(f"/runs/{request.run_id}").text
    assert "<br>true by api via api" in html and "True" not in html


def test_the_store_is_opened_in_pool_threads_never_on_the_event_loop(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    request, _ = make_request(db)
    app = create_app(ServeOptions(db=db, auto_resume=False))
    with TestClient(app, base_url=LOCAL) as client:
        loop_thread = client.portal.call(lambda: threading.current_thread().name)  # type: ignore[union-attr]
        for url in ("/api/v1/runs", f"/api/v1/runs/{request.run_id}", "/runs", "/inbox"):
            assert client.get(url).status_code == 200
        client.post(f"/api/v1/runs/{request.run_id}/stop")
        client.post(f"/runs/{request.run_id}/pick/hook", json={"answer": "red"})
    assert app.state.store_threads and loop_thread not in app.state.store_threads
