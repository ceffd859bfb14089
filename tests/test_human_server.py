"""The answer webhook of `genarun serve`, a real uvicorn process on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.helpers import PATIENCE, app_client, genarun_subprocess, query
from tests.human_helpers import free_port, make_request, serving

SECRET = "whsec_" + base64.b64encode(b"a secret of thirty-two bytes!!!!").decode()


def _signed(body: bytes, secret: str = SECRET, age: float = 0) -> dict[str, str]:
    from standardwebhooks.webhooks import Webhook

    message_id = "msg_" + uuid.uuid4().hex
    stamp = datetime.fromtimestamp(int(time.time() - age), UTC)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, stamp, body),
        "content-type": "application/json",
    }


def test_the_webhook_answers_and_says_why_it_refuses(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    request, token = make_request(db)
    other, other_token = make_request(db, node_id="other")
    item, item_token = make_request(db, node_id="cover", path=(2,), ask="approve", options=None)
    hook = request.hook_path
    with serving(db, "--no-auto-resume", env={"GENARUN_WEBHOOK_SECRET": SECRET}) as base:
        url = base + hook
        answer = {"answer": "green", "responder": "ana"}
        assert httpx.post(url, json=answer, timeout=PATIENCE).status_code == 401
        assert (
            httpx.post(
                url, json=answer, params={"token": other_token}, timeout=PATIENCE
            ).status_code
            == 403
        )
        wrong = httpx.post(
            url, json=answer, headers={"Authorization": "Bearer nope"}, timeout=PATIENCE
        )
        assert wrong.status_code == 403 and wrong.json()["error"] == "wrong token for this request"
        missing = httpx.post(
            f"{base}/runs/{'f' * 32}/pick/hook",
            json=answer,
            params={"token": token},
            timeout=PATIENCE,
        )
        assert missing.status_code == 404 and "no run" in missing.json()["error"]
        no_node = httpx.post(
            f"{base}/runs/{request.run_id}/pikc/hook",
            json=answer,
            params={"token": token},
            timeout=PATIENCE,
        )
        assert no_node.status_code == 404 and "has no request pikc" in no_node.json()["error"]
        malformed = httpx.post(url, content=b"{not json", params={"token": token}, timeout=PATIENCE)
        assert malformed.status_code == 422 and "not JSON" in malformed.json()["error"]
        assert (
            httpx.post(
                url, json={"answr": 1}, params={"token": token}, timeout=PATIENCE
            ).status_code
            == 422
        )
        invalid = httpx.post(
            url, json={"answer": "purple"}, params={"token": token}, timeout=PATIENCE
        )
        assert invalid.status_code == 422
        assert "'purple' is not one of" in invalid.json()["error"]
        assert 'accepted: "red", "green", "blue"' in invalid.json()["error"]

        ok = httpx.post(
            url,
            json=answer,
            params={"token": token},
            headers={"Idempotency-Key": "k"},
            timeout=PATIENCE,
        )
        assert ok.status_code == 200, ok.text
        assert (
            ok.json().items() >= {"accepted": True, "status": "answered", "result": "green"}.items()
        )
        replay = httpx.post(
            url,
            json=answer,
            params={"token": token},
            headers={"Idempotency-Key": "k"},
            timeout=PATIENCE,
        )
        assert replay.status_code == 200 and replay.json()["replayed"] is True
        late = httpx.post(url, json={"answer": "red"}, params={"token": token}, timeout=PATIENCE)
        assert (
            late.status_code == 409 and "answered already by ana via http" in late.json()["error"]
        )

        # A foreach item's hook, with a Standard Webhooks signature instead of the token.
        body = json.dumps({"answer": True}).encode()
        item_url = base + item.hook_path
        assert item.hook_path.endswith("/cover/2/hook")
        stale = httpx.post(item_url, content=body, headers=_signed(body, age=600), timeout=PATIENCE)
        assert stale.status_code == 403 and "too old" in stale.json()["error"]
        forged = _signed(body, secret="whsec_" + base64.b64encode(b"x" * 32).decode())
        assert (
            httpx.post(item_url, content=body, headers=forged, timeout=PATIENCE).status_code == 403
        )
        signed = httpx.post(item_url, content=body, headers=_signed(body), timeout=PATIENCE)
        assert signed.status_code == 200 and signed.json()["result"] is True
        del other, item_token
    rows = query(db, "SELECT responder, via, idempotency_key FROM human_answers ORDER BY id")
    assert [tuple(r) for r in rows] == [
        ("ana", "http", "k"),
        ("http:127.0.0.1", "http", rows[1][2]),
    ]


def test_signatures_are_refused_when_the_server_has_no_secret(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    request, _ = make_request(db)
    body = json.dumps({"answer": "red"}).encode()
    with serving(db, "--no-auto-resume") as base:
        reply = httpx.post(
            base + request.hook_path, content=body, headers=_signed(body), timeout=PATIENCE
        )
    assert reply.status_code == 403 and "no webhook secret" in reply.json()["error"]


def test_a_poll_of_five_answers_over_http(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    request, token = make_request(db, collect=5)
    votes = ["red", "blue", "blue", "green", "blue"]
    with serving(db, "--no-auto-resume") as base:
        url = base + request.hook_path
        replies = [
            httpx.post(
                url,
                json={"answer": v, "responder": f"voter{i}"},
                params={"token": token},
                timeout=PATIENCE,
            )
            for i, v in enumerate(votes)
        ]
        twice = httpx.post(
            url,
            json={"answer": "red", "responder": "voter0"},
            params={"token": token},
            timeout=PATIENCE,
        )
    assert [r.status_code for r in replies] == [200] * 5
    assert [r.json()["status"] for r in replies] == ["waiting"] * 4 + ["answered"]
    assert replies[-1].json()["result"] == {
        "winner": "blue",
        "tally": {"red": 1, "green": 1, "blue": 3},
        "answers": 5,
    }
    assert twice.status_code == 409
    assert query(db, "SELECT count(*) FROM human_answers")[0][0] == 5


@pytest.mark.slow
def test_a_request_survives_a_server_restart(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    request, token = make_request(db)
    port = free_port()
    with serving(db, "--no-auto-resume", port=port) as base:
        assert (
            httpx.post(
                base + request.hook_path,
                json={"answer": "x"},
                params={"token": token},
                timeout=PATIENCE,
            ).status_code
            == 422
        )
    with serving(db, "--no-auto-resume", port=port) as base:
        reply = httpx.post(
            base + request.hook_path,
            json={"answer": "red"},
            params={"token": token},
            timeout=PATIENCE,
        )
    assert reply.status_code == 200 and reply.json()["result"] == "red"


def test_serving_an_empty_folder_creates_no_database(tmp_path: Path) -> None:
    """Looking is not writing: pages, the API and the timeout sweep of a folder with no runs
    answer (empty) and leave no genarun.db behind; an answer to no run is refused."""
    db = tmp_path / "genarun.db"
    with serving(db, "--sweep", "0.2") as base:
        for page in ("/runs", "/inbox", "/api/v1/runs", "/api/v1/inbox"):
            reply = httpx.get(base + page, timeout=PATIENCE)
            assert reply.status_code == 200, (page, reply.text[:300])
        assert httpx.get(base + "/api/v1/runs", timeout=PATIENCE).json()["runs"] == []
        hook = httpx.post(
            base + "/runs/0123456789abcdef/pick/hook",
            json={"answer": "x"},
            params={"token": "t"},
            timeout=PATIENCE,
        )
        assert hook.status_code in (403, 404), hook.text
        time.sleep(0.5)  # the sweep has looked at least twice
    assert list(tmp_path.iterdir()) == []


def test_serve_refuses_to_listen_beyond_this_machine_without_a_token(tmp_path: Path) -> None:
    result = genarun_subprocess(
        "serve", "--db", tmp_path / "g.db", "--host", "0.0.0.0", cwd=tmp_path
    )
    assert result.returncode == 2
    assert "--host 0.0.0.0: listening beyond this machine needs --token" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "g.db").exists()


@pytest.mark.parametrize("secret", ["not base64 !!", ""])
def test_serve_says_when_the_webhook_secret_is_unusable(tmp_path: Path, secret: str) -> None:
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "genarun", "serve", "--db", str(tmp_path / "g.db"), "--port", "1"],
        env={**os.environ, "GENARUN_WEBHOOK_SECRET": secret or "whsec_"},
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert result.returncode == 2, result.stderr
    assert "$GENARUN_WEBHOOK_SECRET is not a Standard Webhooks secret" in result.stderr


def test_hook_url_gives_a_fresh_token_and_the_old_one_stops_working(workdir: Path, cli) -> None:
    db = workdir / "genarun.db"
    request, old = make_request(db)
    result = cli("hook-url", request.run_id[:8], "pick")
    assert result.exit_code == 0, result.output
    url = result.output.strip()
    assert url.startswith(f"http://127.0.0.1:8765/runs/{request.run_id}/pick/hook?token=")
    new = url.split("token=")[1]
    assert new != old

    client = app_client(db)
    hook = request.hook_path
    assert client.post(hook, json={"answer": "red"}, params={"token": old}).status_code == 403
    assert client.post(hook, json={"answer": "red"}, params={"token": new}).status_code == 200
    done = cli("hook-url", request.run_id[:8], "pick")
    assert done.exit_code == 2 and "is answered: it takes no more answers" in done.output
