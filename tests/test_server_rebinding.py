"""DNS rebinding: a page of another site whose name comes to resolve to 127.0.0.1 is, to the
browser, same-origin with `genarun serve`: its requests carry its own name as Host (and as
Origin), so the Origin check and the pages' CSRF token (read from the page it can now fetch)
do not stop it. A server without a token answers only loopback names
(genarun/server/hosts.py); with a token, the session cookie and bearer token do that work."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from genarun.server.app import ServeOptions, create_app
from genarun.server.hosts import is_loopback_host
from tests.helpers import LOCAL, query
from tests.human_helpers import make_request

# What a rebound page's requests carry as Host (its own name, any port), and lookalikes of
# loopback names that are not loopback.
FOREIGN = [
    "evil.example",
    "evil.example:8000",
    "EVIL.example:8000",
    "127.0.0.1.evil.example:8000",
    "127.0.0.1.nip.io:8000",
    "localhost.evil.example",
    "localhost:8000@evil.example",
    "evil.example:8000@localhost",
    "localhost:8000:8000",
    "localhost/evil",
    "localhost\u3002evil.example",
    "xn--localhost-.evil.example",
    "0.0.0.0:8000",
    "10.0.0.1:8000",
    "192.168.1.10",
    "169.254.169.254",
    "[::]:8000",
    "[fe80::1]:8000",
    "[::ffff:7f00:1]:8000",
    "2130706433:8000",
    "0x7f000001",
    "",
    " ",
]
LOOPBACK = [
    "localhost",
    "localhost:8000",
    "LOCALHOST:8000",
    "localhost.:8000",
    "127.0.0.1",
    "127.0.0.1:8000",
    "127.1.2.3:9",
    "[::1]",
    "[::1]:8000",
    "app.localhost:8000",
]


@pytest.mark.parametrize("host", FOREIGN)
def test_foreign_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback_host(host)


@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_hosts_are(host: str) -> None:
    assert is_loopback_host(host)


def _client(db: Path, **options: object) -> TestClient:
    app = create_app(ServeOptions(db=db, auto_resume=False, **options))  # type: ignore[arg-type]
    return TestClient(app, base_url=LOCAL)


@pytest.mark.parametrize("host", [h for h in FOREIGN if h.strip() and h.isascii()])
def test_a_rebound_page_can_neither_read_nor_answer(tmp_path: Path, host: str) -> None:
    db = tmp_path / "g.db"
    request, _ = make_request(db)
    client = _client(db)
    rebound = {"host": host, "origin": f"http://{host}"}
    for url in ("/inbox", "/runs", f"/runs/{request.run_id}", "/api/v1/runs", "/api/v1/inbox"):
        seen = client.get(url, headers={"host": host})
        assert seen.status_code == 403, (url, seen.status_code)
        assert request.run_id not in seen.text and "localhost" in seen.json()["error"]
    answer = client.post(
        f"/api/v1/runs/{request.run_id}/answers",
        json={"node": "pick", "answer": "red"},
        headers=rebound,
    )
    stop = client.post(f"/api/v1/runs/{request.run_id}/stop", headers=rebound)
    assert (answer.status_code, stop.status_code) == (403, 403)
    assert query(db, "SELECT COUNT(*) AS n FROM human_answers")[0]["n"] == 0
    assert client.get("/api/v1/inbox").json()["requests"]  # still waiting, seen from 127.0.0.1


def test_loopback_names_and_a_token_server_are_answered(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    request, _ = make_request(db)
    client = _client(db)
    for host in LOOPBACK:
        assert client.get("/api/v1/inbox", headers={"host": host}).status_code == 200, host
    answered = client.post(
        f"/api/v1/runs/{request.run_id}/answers",
        json={"node": "pick", "answer": "red"},
        headers={"host": "localhost:8000", "origin": "http://localhost:8000"},
    )
    assert answered.status_code == 200, answered.text
    # With a token the server may be reached under any name: the token is what it checks.
    guarded = _client(db, token="t0ken-for-tests")
    named = {"host": "lab.example:8000"}
    assert guarded.get("/api/v1/inbox", headers=named).status_code == 401
    ok = guarded.get("/api/v1/inbox", headers={**named, "authorization": "Bearer t0ken-for-tests"})
    assert ok.status_code == 200


def test_a_webhook_through_a_tunnel_is_answered_with_its_own_token(tmp_path: Path) -> None:
    """A webhook carries its own credential: it is taken under any Host (a tunnel's name),
    and without its token it is refused as before."""
    db = tmp_path / "g.db"
    request, token = make_request(db)
    client = _client(db)
    url = f"/runs/{request.run_id}/pick/hook"
    tunnel = {"host": "abc123.tunnel.example"}
    assert client.post(url, json={"answer": "red"}, headers=tunnel).status_code == 401
    done = client.post(f"{url}?token={token}", json={"answer": "red"}, headers=tunnel)
    assert done.status_code == 200, done.text
    # Every other route of that name stays refused, a look-alike path included.
    assert client.get(url, headers=tunnel).status_code == 403
    assert client.post(f"/runs/{request.run_id}/control", headers=tunnel).status_code == 403
