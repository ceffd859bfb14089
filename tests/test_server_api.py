"""The JSON API of `genarun serve` (/api/v1), through Starlette's ASGI test client."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.routing import Route
from starlette.testclient import TestClient

from genarun.server.app import ServeOptions, create_app
from genarun.server.openapi import openapi_document
from tests.helpers import app_client
from tests.human_helpers import make_request


def _client(db: Path, token: str | None = None) -> TestClient:
    return app_client(db, token=token)


def test_runs_a_run_and_the_inbox(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    request, _ = make_request(db)
    make_request(db, node_id="vote", collect=3)
    client = _client(db)
    runs = client.get("/api/v1/runs").json()["runs"]
    assert len(runs) == 2 and {r["status"] for r in runs} == {"waiting"}
    assert client.get("/api/v1/runs", params={"status": "completed"}).json() == {"runs": []}
    assert len(client.get("/api/v1/runs", params={"q": request.run_id[:10]}).json()["runs"]) == 1
    assert client.get("/api/v1/runs", params={"status": "sleeping"}).status_code == 422
    assert client.get("/api/v1/runs", params={"limit": "many"}).status_code == 422
    run = client.get(f"/api/v1/runs/{request.run_id[:8]}").json()
    assert run["run"] == request.run_id and run["human"][0]["question"] == "Which colour?"
    assert "token_hash" not in str(run)
    missing = client.get("/api/v1/runs/abcdef12")
    assert missing.status_code == 404 and "no run matches" in missing.json()["error"]
    inbox = client.get("/api/v1/inbox").json()["requests"]
    assert [(r["node"], r["votes"]) for r in inbox] == [("pick", None), ("vote", 0)]
    assert inbox[0]["schema"] == {"enum": ["red", "green", "blue"]}


def test_answering_through_the_api(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    request, _ = make_request(db)
    client = _client(db)
    url = f"/api/v1/runs/{request.run_id}/answers"
    form = client.post(url, data={"node": "pick", "answer": "red"})
    assert form.status_code == 415  # a form of another site cannot answer (CSRF)
    assert client.post(url, json={"answer": "red"}).status_code == 422
    assert client.post(url, json={"node": "pick", "path": [-1], "answer": "red"}).status_code == 422
    bad = client.post(url, json={"node": "pick", "answer": "teal"})
    assert bad.status_code == 422 and bad.json()["accepted"] == 'accepted: "red", "green", "blue"'
    assert client.post(url, json={"node": "pikc", "answer": "red"}).status_code == 404
    ok = client.post(url, json={"node": "pick", "answer": "green", "responder": "ana"})
    assert ok.status_code == 200 and ok.json()["result"] == "green"
    again = client.post(url, json={"node": "pick", "answer": "red"})
    assert again.status_code == 409 and "answered already by ana via api" in again.json()["error"]
    assert client.get("/api/v1/inbox").json() == {"requests": []}


def test_a_server_token_guards_the_api(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    make_request(db)
    client = _client(db, token="s3cret-token")
    assert client.get("/api/v1/runs").status_code == 401
    wrong = client.get("/api/v1/runs", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    ok = client.get("/api/v1/runs", headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200 and len(ok.json()["runs"]) == 1
    assert client.get("/api/v1/openapi.json").status_code == 200  # the document is public


def test_every_api_route_is_in_the_openapi_document(tmp_path: Path) -> None:
    app = create_app(ServeOptions(db=tmp_path / "g.db", auto_resume=False))
    document = openapi_document()
    # OpenAPI has no converters: /api/v1/trees/{tree:path} is /api/v1/trees/{tree} there.
    paths = {
        re.sub(r":\w+}", "}", r.path)
        for r in app.routes
        if isinstance(r, Route) and r.path.startswith("/api/v1/")
    }
    assert paths - {"/api/v1/openapi.json"} == set(document["paths"]) - {
        "/runs/{run_id}/{node}/hook"
    }
    assert document["openapi"] == "3.1.0"
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            assert operation["responses"], (path, method)
