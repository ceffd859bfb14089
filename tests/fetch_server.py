"""A real HTTP server on 127.0.0.1 for the `fetch` tests: each path answers as its test needs
(JSON, 429 then 200, 500 then 200, slow, garbage, a redirect loop, a huge body), and every
request is recorded (method, path, headers, body)."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

Reply = tuple[int, dict[str, str], bytes]


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up (the huge body refused mid-stream) is normal here: socketserver
    would print its traceback to stderr, which the CLI's captured output then contains."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LoopbackServer:
    """A quiet threaded HTTP server of `handler` on a free port of 127.0.0.1, serving from a
    daemon thread while the `with` block runs (the test servers' common part)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._httpd = _QuietServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _json(value: Any, status: int = 200) -> Reply:
    return status, {"Content-Type": "application/json"}, json.dumps(value).encode()


class OnLoopback:
    """A test server whose __init__ makes its LoopbackServer (`self._server`): its url and
    its `with` block are that server's."""

    _server: LoopbackServer

    @property
    def url(self) -> str:
        return self._server.url

    def __enter__(self) -> Self:
        self._server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.__exit__(*exc)


class FetchServer(OnLoopback):
    """Routes by path prefix; `count[prefix]` counts the requests each prefix got."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.count: Counter[str] = Counter()
        self.fail: set[str] = set()  # paths that answer 404 while listed
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path
                prefix = "/" + path.lstrip("/").split("/")[0].split("?")[0]
                with server.lock:
                    server.requests.append(
                        {
                            "method": self.command,
                            "path": path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                        }
                    )
                    server.count[prefix] += 1
                    nth = server.count[prefix]
                status, headers, data = server.answer(self.command, path, prefix, nth, body)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    if "Content-Length" not in headers:
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = LoopbackServer(Handler)

    def answer(self, method: str, path: str, prefix: str, nth: int, body: bytes) -> Reply:
        if path in self.fail:
            return _json({"error": "no such item"}, 404)
        if prefix == "/items":
            return _json({"items": [{"title": t} for t in ("alpha", "beta", "gamma")], "n": 3})
        if prefix == "/echo":
            with self.lock:
                last = self.requests[-1]
            return _json(
                {
                    "method": method,
                    "path": path,
                    "headers": last["headers"],
                    "body": body.decode("utf-8", "replace"),
                }
            )
        if prefix == "/text":
            return 200, {"Content-Type": "text/plain; charset=utf-8"}, b"plain words"
        if prefix == "/ratelimited":  # 429 with Retry-After, then fine
            if nth == 1:
                return 429, {"Retry-After": "1", "Content-Type": "application/json"}, b"{}"
            return _json({"ok": nth})
        if prefix == "/flaky":  # 500, then fine
            if nth == 1:
                return _json({"error": "try again"}, 500)
            return _json({"ok": nth})
        if prefix == "/down":  # always 503
            return _json({"error": "down for maintenance"}, 503)
        if prefix == "/slow":
            time.sleep(2.0)
            return _json({"late": True})
        if prefix == "/garbage":
            return 200, {"Content-Type": "text/html"}, b"<html><body>Oops \x00\xff</body></html>"
        if prefix == "/lying":  # says JSON, is not
            return 200, {"Content-Type": "application/json"}, b"{not json"
        if prefix == "/image":
            return 200, {"Content-Type": "image/png"}, b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
        if prefix == "/loop":
            return 302, {"Location": "/loop"}, b""
        if prefix == "/away":  # to another origin (same server, other name)
            port = self._server.port
            return 307, {"Location": f"http://localhost:{port}/echo"}, b""
        if prefix == "/huge":
            return _json({"blob": "x" * (3 * 2**20)})
        if prefix == "/big":  # over the inline limit, under the size limit
            return _json({"rows": [{"i": i, "text": "y" * 100} for i in range(1000)]})
        if prefix == "/empty":
            return 204, {"Content-Type": "application/json"}, b""
        if prefix == "/missing":
            return _json({"error": "no such thing"}, 404)
        return _json({"error": f"unknown path {path}"}, 404)
