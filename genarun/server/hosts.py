"""Which `Host` a server without a token answers to: this machine's loopback names only.

Without `--token`, `genarun serve` listens on 127.0.0.1 and trusts whoever reaches it, which
a browser makes dangerous: a page of another site can have its own name resolve to 127.0.0.1
(DNS rebinding) and then read and post to this server as if it were that site's own, same
origin and all, so neither the Origin check nor the pages' CSRF token (read from the page it
can now fetch) stops it. What the browser cannot hide is the name it asked for: the `Host`
header holds the attacker's name. So a server without a token answers only requests whose
Host is a loopback name or address (`localhost`, `127.0.0.1`, `[::1]`, with any port); a
server reached under another name needs `--token`, whose session cookie and bearer token a
rebound page does not have. Answer webhooks (`POST /runs/RUN/NODE/hook`) carry their own
credential (the request's token or a signature), which a rebound page cannot know, so they are
answered under any name: a webhook may come through a tunnel or proxy with its own Host.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


# A Host header as a browser sends it: a name or an IPv4 address, or an IPv6 one in brackets,
# then an optional port. Anything else (user@, a path, two ports) is not a loopback name.
_HOST = re.compile(r"(?P<name>[a-z0-9_.-]+|\[(?P<v6>[0-9a-f:.]+)\])(?::[0-9]{1,5})?")
# An answer webhook's path (the app's hook route; genarun/server/hooks.py parses the rest).
_WEBHOOK = re.compile(r"/runs/[^/]+/[^/]+(?:/[0-9]+)*/hook/?")


def is_loopback_host(header: str) -> bool:
    """Whether a Host header names this machine by a loopback name or address."""
    match = _HOST.fullmatch(header.strip().lower())
    if match is None:
        return False
    name = (match.group("v6") or match.group("name")).rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):  # RFC 6761: never resolved outside
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class LoopbackHostOnly:
    """ASGI middleware: a request (or websocket) whose Host is not a loopback name is refused
    with 403 before any route sees it; one with no Host header at all (HTTP/1.0 tools, never
    a browser) is let through."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not _is_webhook(scope):
            hosts = [v for k, v in scope.get("headers") or [] if k == b"host"]
            given = hosts[0].decode("latin-1") if hosts else None
            if len(hosts) > 1 or (given is not None and not is_loopback_host(given)):
                await _refuse(scope, send, given or "")
                return
        await self.app(scope, receive, send)


def _is_webhook(scope: Scope) -> bool:
    return scope.get("method") == "POST" and _WEBHOOK.fullmatch(scope.get("path", "")) is not None


async def _refuse(scope: Scope, send: Send, given: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = json.dumps(
        {
            "error": f"refused: this server answers only to localhost and 127.0.0.1, not to "
            f"Host {given[:100]!r} (a page of another site whose name points here); to serve "
            "under another name, start it with --token"
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
