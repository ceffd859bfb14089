"""genarun.net.http against real servers on 127.0.0.1: redirects and credentials, retries,
Retry-After, header checks, userinfo. The provider-level cases are in
tests/models/test_openai_hostile.py."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from genarun.net.headers import clean_headers, is_credential_header
from genarun.net.http import HttpClient, HttpPolicy
from genarun.net.http_errors import HttpError, parse_retry_after
from genarun.redaction import forget_secrets
from tests.fetch_server import LoopbackServer, OnLoopback

Reply = tuple[int, dict[str, str], bytes]


class Recorder(OnLoopback):
    """An HTTP server whose answers come from a function of (method, path); it records every
    request's method, path, headers and body."""

    def __init__(self, answer: Callable[[str, str, int], Reply]) -> None:
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with recorder._lock:
                    recorder.requests.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                            "port": self.client_address[1],  # one per connection
                        }
                    )
                    count = len(recorder.requests)
                status, headers, data = recorder.answer(self.command, self.path, count)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a deadline test)

            do_GET = do_POST = do_PUT = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = LoopbackServer(Handler)


def ok(body: bytes = b'{"ok": true}') -> Reply:
    return 200, {"Content-Type": "application/json"}, body


@pytest.fixture(autouse=True)
def _forget() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


@pytest.fixture
def client() -> Iterator[HttpClient]:
    with HttpClient(HttpPolicy(backoff=0.01, total_timeout=60.0, max_redirects=3)) as running:
        yield running


CREDENTIALS = {
    "Authorization": "Bearer sk-abc-0123456789abcdef",
    "X-Api-Key": "key-0123456789abcdef",
    "Cookie": "session=0123456789abcdef",
}


def test_cross_origin_redirect_drops_credentials(client: HttpClient) -> None:
    with Recorder(lambda *_: ok(b'{"from": "elsewhere"}')) as elsewhere:
        with Recorder(lambda *_: (302, {"Location": elsewhere.url + "/landing"}, b"")) as origin:
            reply = client.request(
                "GET", origin.url + "/start", headers={**CREDENTIALS, "Accept": "text/plain"}
            )
        assert reply.json() == {"from": "elsewhere"} and reply.url == elsewhere.url + "/landing"
        [sent] = elsewhere.requests
    assert not {"authorization", "x-api-key", "cookie"} & set(sent["headers"])
    assert sent["headers"]["accept"] == "text/plain"  # other headers still go
    assert origin.requests[0]["headers"]["x-api-key"] == CREDENTIALS["X-Api-Key"]


def test_a_busy_pool_keeps_its_connections_for_the_next_requests(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """32 threads, bursts of 96 requests: every request goes over one of at most 32 kept
    connections. httpcore's pool closed idle connections whenever it held more than its
    keep-alive limit, even one just handed to a waiting request, whose socket could then close
    under it ([Errno 9] Bad file descriptor, then a retry): 1,546 connections for 1,920
    requests before."""

    def slow(*_: Any) -> Reply:
        time.sleep(0.003)
        return ok()

    caplog.set_level(logging.WARNING, logger="genarun")
    policy = HttpPolicy(concurrency=32, backoff=0.01)
    with Recorder(slow) as server, HttpClient(policy) as busy, ThreadPoolExecutor(32) as pool:
        for _ in range(8):
            list(pool.map(lambda i: busy.request("GET", f"{server.url}/x/{i}"), range(96)))
            time.sleep(0.02)
    assert len(server.requests) == 8 * 96
    assert len({r["port"] for r in server.requests}) <= 32
    assert not [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]


def test_cross_origin_redirect_can_be_refused() -> None:
    policy = HttpPolicy(cross_origin_redirects="refuse", max_retries=0)
    with Recorder(lambda *_: ok()) as elsewhere, HttpClient(policy) as strict:
        redirect = Recorder(lambda *_: (307, {"Location": elsewhere.url + "/x"}, b""))
        with redirect as origin, pytest.raises(HttpError) as failure:
            strict.request("POST", origin.url, json={"a": 1}, headers=CREDENTIALS)
        assert elsewhere.requests == []
    assert failure.value.reason == "redirect" and "another origin" in str(failure.value)


def test_same_origin_redirect_keeps_credentials_and_307_keeps_the_body(
    client: HttpClient,
) -> None:
    def answer(method: str, path: str, count: int) -> Reply:
        return (307, {"Location": "/v2"}, b"") if path == "/v1" else ok()

    with Recorder(answer) as server:
        client.request("POST", server.url + "/v1", json={"n": 1}, headers=CREDENTIALS)
    first, second = server.requests
    assert second["path"] == "/v2" and second["method"] == "POST"
    assert second["body"] == b'{"n": 1}' == first["body"]
    assert second["headers"]["authorization"] == CREDENTIALS["Authorization"]


def test_303_turns_a_post_into_a_get_without_body(client: HttpClient) -> None:
    def answer(method: str, path: str, count: int) -> Reply:
        return (303, {"Location": "/done"}, b"") if path == "/submit" else ok()

    with Recorder(answer) as server:
        client.request("POST", server.url + "/submit", json={"n": 1})
    assert [(r["method"], r["body"]) for r in server.requests] == [
        ("POST", b'{"n": 1}'),
        ("GET", b""),
    ]
    assert "content-type" not in server.requests[1]["headers"]


def test_redirect_loops_and_chains_stop(client: HttpClient) -> None:
    with (
        Recorder(lambda *_: (302, {"Location": "/again"}, b"")) as server,
        pytest.raises(HttpError, match=r"more than 3 redirects \(a redirect loop"),
    ):
        client.request("GET", server.url + "/again")
    assert len(server.requests) == 4


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://example.com/x"])
def test_redirect_to_another_scheme_is_refused(client: HttpClient, location: str) -> None:
    with (
        Recorder(lambda *_: (302, {"Location": location}, b"")) as server,
        pytest.raises(HttpError, match="only http and https"),
    ):
        client.request("GET", server.url)


def test_a_post_is_not_retried_after_a_server_error_unless_idempotent(
    client: HttpClient,
) -> None:
    with Recorder(lambda *_: (503, {}, b"busy")) as server:
        with pytest.raises(HttpError, match="after 1 attempt"):
            client.request("POST", server.url, json={})
        assert len(server.requests) == 1
        with pytest.raises(HttpError, match="after 4 attempt"):
            client.request("POST", server.url, json={}, idempotent=True)
        assert len(server.requests) == 5


def test_a_post_is_retried_after_429(client: HttpClient) -> None:
    def answer(method: str, path: str, count: int) -> Reply:
        return (429, {"Retry-After": "0"}, b"slow down") if count == 1 else ok()

    with Recorder(answer) as server:
        assert client.request("POST", server.url, json={}).status == 200
    assert len(server.requests) == 2


def test_connection_refused_is_retried_and_reported(client: HttpClient) -> None:
    with Recorder(lambda *_: ok()) as gone:
        url = gone.url
    with pytest.raises(HttpError) as failure:
        client.request("POST", url, json={})
    assert failure.value.reason == "connection" and failure.value.attempts == 4


def test_parse_retry_after() -> None:
    assert parse_retry_after("5") == 5.0 and parse_retry_after(" 1.5 ") == 1.5
    future = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (parse_retry_after(future) or 0) <= 30
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    for junk in ("", None, "soon", "-1", "nan", "inf", "1e9999", "5 seconds", "Tuesday"):
        assert parse_retry_after(junk) is None


def test_header_values_are_stripped_and_checked_without_quoting_them() -> None:
    assert clean_headers({"Authorization": "Bearer sk-abc\r\n", "Accept": " a "}) == {
        "Authorization": "Bearer sk-abc",
        "Accept": "a",
    }
    for bad in ("Bearer sk-0123456789\r\nX-Injected: 1", "tok\x00en", "caf\u0101"):
        with pytest.raises(HttpError) as failure:
            clean_headers({"X-Api-Key": bad})
        assert bad not in str(failure.value) and "position" in str(failure.value)
    with pytest.raises(HttpError, match="not a valid header name"):
        clean_headers({"Bad Name": "x"})
    assert is_credential_header("X-Goog-Api-Key") and not is_credential_header("Accept")


def test_userinfo_becomes_basic_auth_and_is_never_shown(client: HttpClient) -> None:
    with Recorder(lambda *_: (404, {}, b"not here")) as server:
        url = server.url.replace("http://", "http://ann:s3cr3t-passw0rd@") + "/x"
        with pytest.raises(HttpError) as failure:
            client.request("GET", url)
        [sent] = server.requests
    assert sent["headers"]["authorization"].startswith("Basic ")
    assert "s3cr3t" not in str(failure.value) and "ann:" not in str(failure.value)
    assert f"{server.url}/x failed with status 404: not here" in str(failure.value)


def test_total_deadline_bounds_a_slow_handler() -> None:
    # The handler answers only when the test ends (at most 120 s): without the total deadline
    # the request would wait for it. 0.5 s to stop, and the rest is room for a busy machine.
    released = threading.Event()

    def answer(method: str, path: str, count: int) -> Reply:
        released.wait(120)
        return ok()

    policy = HttpPolicy(total_timeout=0.5, read_timeout=300, max_retries=0)
    try:
        with Recorder(answer) as server, HttpClient(policy) as quick:
            started = time.perf_counter()
            with pytest.raises(HttpError, match=r"total deadline of 0\.5s"):
                quick.request("GET", server.url)
            assert time.perf_counter() - started < 30
    finally:
        released.set()
