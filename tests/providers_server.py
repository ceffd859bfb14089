"""A small OpenAI-compatible HTTP server for tests: deterministic answers, injectable failures.

    with FakeOpenAIServer() as server:
        server.fail_next(2, status=500)   # the next two requests fail, then it answers again
        server.require_key("sk-test")     # 401 unless `Authorization: Bearer sk-test`
        server.hang_next(1)               # the next request gets no answer (timeouts)
        server.redirect_next(1, other.base_url + "/chat/completions")   # a 302 elsewhere
        server.trickle_next(1, phase="headers")   # an answer one byte at a time
        server.huge_next(1, 200 * 2**20)  # a 200 MB answer, streamed
        server.echo_key("altered")        # how a wrong key is quoted back in the 401
        server.embeddings_mode("per_token")   # one vector per word, as llama.cpp without pooling
        server.reply_text("a: &a [*a]")   # every chat answer says this
        ... base_url=server.base_url ...

Replies are pure functions of the request, so tests can compare batched and unbatched calls.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import re
import struct
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG_LIMIT_S = 10.0  # a hung request is released after this, or when the server stops
EMBEDDING_DIM = 8


@dataclass
class RecordedRequest:
    """One request the server received (the Authorization header is kept only as a flag)."""

    path: str
    body: dict[str, Any]
    had_authorization: bool


@dataclass
class _Faults:
    fail_count: int = 0
    fail_status: int = 500
    fail_message: str | None = None
    retry_after: str | None = None
    hang_count: int = 0
    redirect_count: int = 0
    redirect_to: str = ""
    redirect_status: int = 302
    trickle_count: int = 0
    trickle_phase: str = "body"
    trickle_interval_s: float = 1.0
    huge_count: int = 0
    huge_size: int = 0
    huge_declared: bool = True
    echo: str = "exact"
    embeddings: str = "pooled"
    reply: str | None = None
    required_key: str | None = None
    delay_s: float = 0.0
    in_flight: int = 0
    max_in_flight: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)


class FakeOpenAIServer:
    """An OpenAI-compatible server on 127.0.0.1 (or `host`) with a free port, run in a
    background thread."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._faults = _Faults()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._httpd = ThreadingHTTPServer((host, 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self  # type: ignore[attr-defined]
        # A short poll interval makes stop() quick: shutdown() waits for the next poll.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._faults.requests)

    def fail_next(
        self,
        count: int,
        status: int = 500,
        retry_after: str | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next `count` requests with `status` (e.g. 500 or 429), saying `message`."""
        with self._lock:
            self._faults.fail_count = count
            self._faults.fail_status = status
            self._faults.retry_after = retry_after
            self._faults.fail_message = message

    def redirect_next(self, count: int, location: str, status: int = 302) -> None:
        """Answer the next `count` requests with a redirect to `location`."""
        with self._lock:
            self._faults.redirect_count = count
            self._faults.redirect_to = location
            self._faults.redirect_status = status

    def trickle_next(self, count: int, phase: str = "body", interval_s: float = 1.0) -> None:
        """Send the next `count` answers one byte per `interval_s`: the status line and headers
        (phase "headers") or only the body after prompt headers (phase "body")."""
        with self._lock:
            self._faults.trickle_count = count
            self._faults.trickle_phase = phase
            self._faults.trickle_interval_s = interval_s

    def huge_next(self, count: int, size: int, declare_length: bool = True) -> None:
        """Answer the next `count` requests with a `size`-byte body, streamed as fast as the
        client reads it; without `declare_length`, no Content-Length (read until close)."""
        with self._lock:
            self._faults.huge_count = count
            self._faults.huge_size = size
            self._faults.huge_declared = declare_length

    def echo_key(self, mode: str) -> None:
        """How a wrong key is quoted in the 401: exact, altered (`sk-abcd****wxyz`, as the
        hosted API does), truncated (last character dropped) or upper (upper-cased)."""
        with self._lock:
            self._faults.echo = mode

    def embeddings_mode(self, mode: str) -> None:
        """pooled (one vector per input), per_token (a list of vectors per input, one per word,
        as llama.cpp without pooling) or varying (flat vectors whose length varies by input)."""
        with self._lock:
            self._faults.embeddings = mode

    def reply_text(self, text: str | None) -> None:
        """Every chat answer's content (None: the usual deterministic reply)."""
        with self._lock:
            self._faults.reply = text

    def hang_next(self, count: int) -> None:
        """Give the next `count` requests no answer until the server stops (or HANG_LIMIT_S)."""
        with self._lock:
            self._faults.hang_count = count

    def delay_answers(self, seconds: float) -> None:
        """Wait `seconds` before each answer, so that parallel requests overlap."""
        with self._lock:
            self._faults.delay_s = seconds

    @property
    def max_in_flight(self) -> int:
        """The most requests that were being handled at once."""
        with self._lock:
            return self._faults.max_in_flight

    def require_key(self, key: str | None) -> None:
        """Answer 401 unless a request carries `Authorization: Bearer <key>`; None: no check."""
        with self._lock:
            self._faults.required_key = key

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextlib.contextmanager
    def _tracked(self) -> Iterator[float]:
        with self._lock:
            self._faults.in_flight += 1
            self._faults.max_in_flight = max(self._faults.max_in_flight, self._faults.in_flight)
            delay_s = self._faults.delay_s
        try:
            yield delay_s
        finally:
            with self._lock:
                self._faults.in_flight -= 1

    def _admit(self, request: RecordedRequest, authorization: str | None) -> tuple[str, Any]:
        """Decide a request's fate: ("ok", None), ("fail", (status, headers, body)), ("hang",
        None), ("redirect", (status, location)), ("trickle", (phase, interval)) or ("huge",
        (size, declared))."""
        with self._lock:
            faults = self._faults
            faults.requests.append(request)
            if faults.hang_count > 0:
                faults.hang_count -= 1
                return "hang", None
            if faults.redirect_count > 0:
                faults.redirect_count -= 1
                return "redirect", (faults.redirect_status, faults.redirect_to)
            if faults.trickle_count > 0:
                faults.trickle_count -= 1
                return "trickle", (faults.trickle_phase, faults.trickle_interval_s)
            if faults.huge_count > 0:
                faults.huge_count -= 1
                return "huge", (faults.huge_size, faults.huge_declared)
            if faults.fail_count > 0:
                faults.fail_count -= 1
                headers = {"Retry-After": faults.retry_after} if faults.retry_after else {}
                message = (
                    faults.fail_message or f"injected failure with status {faults.fail_status}"
                )
                return "fail", (faults.fail_status, headers, _error_body(message, "server_error"))
            if faults.required_key is not None:
                expected = f"Bearer {faults.required_key}"
                if authorization != expected:
                    # Like the hosted API, echo what was provided: clients must scrub it.
                    provided = (authorization or "").removeprefix("Bearer ") or "none"
                    body = _error_body(
                        f"Incorrect API key provided: {_echo(provided, faults.echo)}.",
                        "invalid_request_error",
                    )
                    return "fail", (401, {}, body)
            return "ok", {"embeddings": faults.embeddings, "reply": faults.reply}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        fake: FakeOpenAIServer = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send(400, _error_body("body is not JSON", "invalid_request_error"))
            return
        authorization = self.headers.get("Authorization")
        recorded = RecordedRequest(self.path, body, authorization is not None)
        with fake._tracked() as delay_s:
            fate, detail = fake._admit(recorded, authorization)
            if fate != "hang":
                time.sleep(delay_s)
        self._answer(fake, fate, detail, body)

    def _answer(self, fake: FakeOpenAIServer, fate: str, detail: Any, body: dict[str, Any]) -> None:
        if fate == "hang":
            fake._release.wait(HANG_LIMIT_S)
            self.close_connection = True
            return
        if fate == "redirect":
            status, location = detail
            self._send(status, {"moved": location}, {"Location": location})
            return
        if fate == "trickle":
            self._trickle(fake, *detail)
            return
        if fate == "huge":
            self._huge(fake, *detail)
            return
        if fate == "fail":
            status, headers, error = detail
            self._send(status, error, headers)
            return
        # A request sent through it as an HTTP proxy names the whole URL: route on its path.
        route = _ROUTES.get(urllib.parse.urlsplit(self.path).path)
        if route is None:
            self._send(404, _error_body(f"no route {self.path}", "invalid_request_error"))
            return
        try:
            answer = route(body, detail)
        except (KeyError, TypeError, ValueError) as exc:
            self._send(400, _error_body(f"bad request: {exc!r}", "invalid_request_error"))
            return
        self._send(200, answer)

    def _trickle(self, fake: FakeOpenAIServer, phase: str, interval_s: float) -> None:
        """A valid answer, written one byte per interval, until done, the client leaves, or
        the server stops."""
        data = json.dumps(
            _chat({"model": "slow", "messages": [{"role": "user", "content": "slow"}]})
        ).encode()
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nX-Padding: {'p' * 200}\r\n\r\n"
        ).encode()
        self.close_connection = True
        try:
            if phase == "body":
                self.wfile.write(head)
                self.wfile.flush()
                slow = data
            else:
                slow = head + data
            for byte in slow:
                if fake._release.wait(interval_s):
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _huge(self, fake: FakeOpenAIServer, size: int, declared: bool) -> None:
        """A `size`-byte body (a JSON string of x's), written in 64 KiB blocks."""
        self.close_connection = True
        block = b"x" * 65536
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if declared:
                self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.write(b'"')
            sent = 1
            while sent < size - 1 and not fake._release.is_set():
                chunk = block[: min(len(block), size - 1 - sent)]
                self.wfile.write(chunk)
                sent += len(chunk)
            self.wfile.write(b'"')
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test); nothing to answer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet


def _echo(key: str, mode: str) -> str:
    if mode == "altered" and len(key) > 12:
        return f"{key[:8]}{'*' * (len(key) - 12)}{key[-4:]}"
    if mode == "truncated":
        return key[:-1]
    if mode == "upper":
        return key.upper()
    return key


def _error_body(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": None}}


def _digest(*parts: Any) -> bytes:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).digest()


def chat_reply(
    messages: list[dict[str, str]], seed: int | None, max_tokens: int | None = None
) -> str:
    """The reply the server gives: the last user message, the system message and the seed."""
    system = next((m["content"] for m in messages if m["role"] == "system"), None)
    user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    words = [f"reply#{_digest(messages, seed).hex()[:8]}"]
    if system is not None:
        words.append(f"[system: {system}]")
    words += [f"seed={seed}", "to:", *user.split()]
    if max_tokens is not None:
        words = words[:max_tokens]  # one word stands in for one token
    return " ".join(words)


def embedding_vector(text: str, dimensions: int = EMBEDDING_DIM) -> list[float]:
    """A deterministic unit vector for a text."""
    raw = b"".join(_digest(text, block) for block in range(dimensions // 8 + 1))
    values = [v / 2**31 - 1.0 for v in struct.unpack(f"<{dimensions}I", raw[: dimensions * 4])]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [v / norm for v in values]


def image_png(prompt: str, width: int, height: int) -> bytes:
    """A small PNG filled with a color derived from the prompt."""
    from PIL import Image

    color = tuple(_digest(prompt)[:3])
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def structured_reply(response_format: Any, messages: Any, seed: int | None) -> str:
    """A JSON answer valid under a `response_format: {type: json_schema}`, checked the way the
    hosted API checks it (a ValueError is a 400): the type, the name's characters, the schema
    an object, and under `strict` every object closed with all its properties required."""
    from genarun.models.dummy_json import schema_instance

    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        raise ValueError(f"response_format.type must be json_schema, got {response_format!r}")
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or set(spec) - {"name", "schema", "strict", "description"}:
        raise ValueError(f"response_format.json_schema has unknown fields: {spec!r}")
    name = spec.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise ValueError(f"response_format.json_schema.name is invalid: {name!r}")
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise ValueError("response_format.json_schema.schema must be an object")
    if spec.get("strict") is True:
        _check_strict(schema)
    return json.dumps(schema_instance(schema, _digest(messages, seed), ["fake", "json", "answer"]))


def _check_strict(schema: Any) -> None:
    if isinstance(schema, list):
        for item in schema:
            _check_strict(item)
        return
    if not isinstance(schema, dict):
        return
    if "properties" in schema:
        if schema.get("additionalProperties") is not False:
            raise ValueError("strict schemas need additionalProperties: false on every object")
        if set(schema.get("required") or []) != set(schema["properties"]):
            raise ValueError("strict schemas must require every property")
    for key, value in schema.items():
        if key not in ("enum", "const", "required"):
            _check_strict(value)


def _chat(body: dict[str, Any], modes: dict[str, Any] | None = None) -> dict[str, Any]:
    messages = body["messages"]
    structured = (
        structured_reply(body["response_format"], messages, body.get("seed"))
        if "response_format" in body
        else None
    )
    reply = (
        (modes or {}).get("reply")
        or structured
        or chat_reply(messages, body.get("seed"), body.get("max_tokens"))
    )
    # As real servers do: "length" when max_tokens cut the reply, "stop" when it ended.
    cut = structured is None and len(reply) < len(chat_reply(messages, body.get("seed")))
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply},
                "finish_reason": "length" if cut and not (modes or {}).get("reply") else "stop",
            }
        ],
        # Words stand in for tokens, as the API counts them: the messages read, the reply made.
        "usage": {
            "prompt_tokens": sum(len(str(m.get("content", "")).split()) for m in messages),
            "completion_tokens": len(reply.split()),
            "total_tokens": 0,
        },
    }


def _embeddings(body: dict[str, Any], modes: dict[str, Any]) -> dict[str, Any]:
    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
    dimensions = int(body.get("dimensions") or EMBEDDING_DIM)
    mode = modes["embeddings"]
    vectors: list[Any]
    if mode == "per_token":  # llama.cpp without pooling: one vector per token (word, here)
        vectors = [[embedding_vector(word, dimensions) for word in t.split()] for t in texts]
    elif mode == "varying":  # the same, flattened by the server: lengths vary with the text
        vectors = [
            [x for word in t.split() for x in embedding_vector(word, dimensions)] for t in texts
        ]
    else:
        vectors = [embedding_vector(text, dimensions) for text in texts]
    data = [
        {"object": "embedding", "index": i, "embedding": vector} for i, vector in enumerate(vectors)
    ]
    # Answer in reverse order: clients must sort by `index`, as the API allows.
    words = sum(len(str(t).split()) for t in texts)
    return {
        "object": "list",
        "model": body["model"],
        "data": data[::-1],
        "usage": {"prompt_tokens": words, "total_tokens": words},
    }


def _images(body: dict[str, Any], modes: dict[str, Any]) -> dict[str, Any]:
    width, height = (int(v) for v in str(body.get("size") or "32x32").split("x"))
    if body.get("response_format") != "b64_json":
        raise ValueError("this fake server only answers response_format=b64_json")
    png = image_png(body["prompt"], width, height)
    return {"created": 0, "data": [{"b64_json": base64.b64encode(png).decode()}]}


_ROUTES = {
    "/v1/chat/completions": _chat,
    "/v1/embeddings": _embeddings,
    "/v1/images/generations": _images,
}
