"""The request of a `fetch` execution: built from its rendered fields, checked against the
secrets policy, filled with secret values at send time, sent through the one bounded HTTP
client (genarun.net.http), and its answer turned into the node's output.

Two forms of each request exist. `FetchRequest` holds the rendered fields with `secret()`
placeholders still in them: it is what is stored, logged, shown and hashed for the response
cache. `send` fills the placeholders in a copy just before the request leaves, on the I/O
thread, after checking that every secret in it may go to the request's host.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from genarun.redaction import redact, remember_secret
from genarun.tree import secrets as secret_refs

if TYPE_CHECKING:
    # Imported where a request is sent: httpx and its TLS setup cost a run that fetches
    # nothing a large part of its start (the kind registers with every run).
    from genarun.net.http import HttpClient, HttpPolicy, HttpResponse
    from genarun.net.http_errors import HttpError


class FetchError(ValueError):
    """A fetch that cannot be sent or whose answer cannot be used: the message names the
    request (without secrets) and the fix."""


@dataclass(frozen=True)
class FetchRequest:
    """One request as rendered, placeholders and all."""

    method: str
    url: str
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    body: str | None = None

    @property
    def shown(self) -> str:
        """`METHOD url` fit for messages: placeholders in display form, credentials masked."""
        return redact(f"{self.method} {self.url}")

    @functools.cached_property
    def has_placeholders(self) -> bool:
        """Whether any string of the request holds something shaped like a placeholder (most
        requests hold none: the other walks over the request are then skipped)."""
        start = secret_refs.MARKER_START
        return any(start in text.lower() for text in secret_refs.strings_in(self._parts()))

    def secret_names(self) -> list[str]:
        """The secrets this request carries (by their placeholders), each once, in order."""
        if not self.has_placeholders:
            return []
        names: list[str] = []
        for text in secret_refs.strings_in(self._parts()):
            for name in secret_refs.live_names(text):
                if name not in names:
                    names.append(name)
        return names

    def broken_placeholder(self) -> bool:
        if not self.has_placeholders:
            return False
        return any(secret_refs.has_broken_marker(t) for t in secret_refs.strings_in(self._parts()))

    def _parts(self) -> list[Any]:
        return [self.url, self.params, self.headers, self.json, self.body]

    def cache_key(self, extract: str | None) -> str:
        """A hash of the request as rendered (secrets by name only) and its extract."""
        parts = self._parts()
        if self.has_placeholders:
            parts = secret_refs.map_strings(parts, secret_refs.hide_markers)  # type: ignore[assignment]
        canon = json.dumps([self.method, parts, extract], sort_keys=True, default=str)
        return hashlib.sha256(canon.encode()).hexdigest()

    def host(self) -> tuple[str, int | None]:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError(
                f"{self.shown}: url must be an absolute http(s) URL such as"
                " https://api.example.com/v1/items"
            )
        try:
            port = parts.port
        except ValueError:
            raise FetchError(f"{self.shown}: the URL's port is not a number") from None
        return parts.hostname, port or {"http": 80, "https": 443}[parts.scheme]

    def to_json(self) -> dict[str, Any]:
        """The request as stored and shown: placeholders in display form."""
        out: dict[str, Any] = {"method": self.method, "url": self.url}
        for name in ("params", "headers", "json", "body"):
            value = getattr(self, name)
            if value not in (None, {}):
                out[name] = value
        if not self.has_placeholders:
            return out
        hidden = secret_refs.map_strings(out, secret_refs.hide_markers)
        assert isinstance(hidden, dict)
        return hidden


def check_secrets(
    request: FetchRequest, allowed: Mapping[str, list[str]], node_hosts: list[str]
) -> list[str]:
    """The secrets of `request`, after checking each may go to its host (`allowed`: the
    tree's `secrets:` name -> hosts; `node_hosts`: the node's own `hosts:`)."""
    if request.broken_placeholder():
        raise FetchError(
            f"{request.shown}: a secret() placeholder was changed by a template (a filter,"
            " slicing or case change): a secret is inserted whole at send time, so write it"
            " as it is, e.g. \"Bearer {{ secret('API_KEY') }}\""
        )
    names = request.secret_names()
    if not names:
        return names
    host, port = request.host()
    for name in names:
        hosts = [*allowed.get(name, []), *node_hosts]
        if not secret_refs.host_allowed(hosts, host, port):
            listed = ", ".join(hosts) or "none"
            raise FetchError(
                f"{request.shown}: secret '{name}' may not be sent to {host} (its hosts:"
                f" {listed}); add {host} to secrets.{name}.hosts at the top of the tree, or to"
                " the node's hosts:, if this host is meant to receive it"
            )
    return names


@dataclass(frozen=True)
class Limits:
    """The HTTP limits of one fetch node."""

    connect: float = 10.0
    read: float = 30.0
    total: float = 30.0
    max_bytes: int = 10 * 2**20
    retries: int = 3
    backoff: float = 1.0
    concurrency: int = 8


_clients: dict[HttpPolicy, HttpClient] = {}
_clients_lock = threading.Lock()


def client_for(policy: HttpPolicy) -> HttpClient:
    """One shared client (and connection pool) per policy, for the life of the process."""
    from genarun.net.http import HttpClient

    with _clients_lock:
        client = _clients.get(policy)
        if client is None:
            client = _clients[policy] = HttpClient(policy, user_agent="genarun-fetch")
        return client


def policy_for(limits: Limits, *, carries_secrets: bool) -> HttpPolicy:
    from genarun.net.http import HttpPolicy

    return HttpPolicy(
        connect_timeout=min(limits.connect, limits.total),
        read_timeout=min(limits.read, limits.total),
        total_timeout=limits.total,
        max_response_bytes=limits.max_bytes,
        max_retries=limits.retries,
        backoff=limits.backoff,
        max_backoff=max(limits.backoff, 30.0),
        # A secret in a query or a body would follow a redirect to any origin.
        cross_origin_redirects="refuse" if carries_secrets else "drop-credentials",
        concurrency=max(limits.concurrency, 16),
    )


def send(
    request: FetchRequest,
    limits: Limits,
    secret_names: list[str],
    idempotency_key: str | None,
) -> HttpResponse:
    """Fill the placeholders and send (blocking: on an I/O thread). Retries follow the limits;
    a POST or PATCH is retried only with an idempotency key."""
    from genarun.net.http_errors import HttpError

    values: dict[str, str] = {}
    for name in secret_names:
        try:
            values[name] = secret_refs.read_secret(name)
        except secret_refs.SecretNotSet as exc:
            raise FetchError(f"{request.shown}: {exc}") from None
        remember_secret(values[name])  # masked in every message from here on

    def filled(value: Any) -> Any:
        if not values:
            return value
        return secret_refs.map_strings(value, lambda text: secret_refs.fill(text, values))

    headers = dict(filled(request.headers))
    idempotent: bool | None = None
    if request.method in ("POST", "PATCH"):
        if idempotency_key is not None:
            headers.setdefault("Idempotency-Key", idempotency_key)
        idempotent = any(name.lower() == "idempotency-key" for name in headers)
    client = client_for(policy_for(limits, carries_secrets=bool(values)))
    try:
        return client.request(
            request.method,
            filled(request.url),
            headers=headers,
            params=filled(request.params) or None,
            json=filled(request.json),
            content=filled(request.body),
            idempotent=idempotent,
        )
    except HttpError as exc:
        raise FetchError(_http_hint(exc)) from None


def _http_hint(exc: HttpError) -> str:
    message = str(exc)
    if exc.reason == "status" and exc.status is not None and 400 <= exc.status < 500:
        fixes = {
            401: "the API wants credentials: send a key with secret('NAME') in headers",
            403: "the API refused the credentials or the request: check the key and its rights",
            404: "check the URL and its path parameters",
            429: "the API limits the rate: lower the node's concurrency, or raise retries",
        }
        fix = fixes.get(exc.status, "check the request's parameters against the API's docs")
        return f"{message} ({fix})"
    if exc.reason == "timeout":
        return f"{message} (raise timeout, or check that the server answers)"
    if exc.reason == "connection":
        return f"{message} (check the URL's host and port, and that the server is up)"
    return message


# --- the answer -------------------------------------------------------------------------
_JSON_TYPES = ("application/json", "+json", "text/json")


def content_type(response: HttpResponse) -> str:
    return response.headers.get("Content-Type", "").split(";")[0].strip().lower()


def is_text(kind: str) -> bool:
    return (
        not kind
        or kind.startswith("text/")
        or any(t in kind for t in _JSON_TYPES)
        or kind in ("application/xml", "application/javascript", "application/x-ndjson")
        or kind.endswith("+xml")
    )


def answer_value(
    status: int, kind: str, body: bytes, text: str, shown: str, extract: str | None
) -> Any:
    """The node's output from a response: JSON (through `extract` when given) or text."""
    if not is_text(kind):
        raise FetchError(
            f"{shown} answered with {kind} ({len(body):,} bytes), which is neither JSON nor"
            " text: fetch outputs JSON or text; call an endpoint that returns one of them"
        )
    if not text.strip() and extract is None:
        return ""  # 204 No Content, or an empty answer: nothing to parse
    wants_json = extract is not None or any(t in kind for t in _JSON_TYPES)
    if not wants_json:
        return text
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        # A body that says it is JSON and is not is the API's fault, with or without extract.
        if any(t in kind for t in _JSON_TYPES):
            where = (
                f" ({exc.msg} at line {exc.lineno} column {exc.colno})"
                if isinstance(exc, json.JSONDecodeError)
                else ""
            )
            raise FetchError(
                f"{shown} answered with content-type {kind} but its body is not JSON{where}:"
                f" {redact(text[:200])!r}; the API sent something else than it said (a"
                " truncated or broken answer: try again later, or check the endpoint)"
            ) from None
        raise FetchError(
            f"{shown}: extract needs a JSON response, but it answered with"
            f" {kind or 'no content-type'}: {redact(text[:200])!r}; remove extract to get the"
            " text, or call the API's JSON endpoint"
        ) from None
    if extract is None:
        return data
    return run_extract(extract, data, shown)


def run_extract(expression: str, data: Any, shown: str) -> Any:
    import jmespath

    try:
        found = jmespath.search(expression, data)
    except jmespath.exceptions.JMESPathError as exc:
        raise FetchError(f"{shown}: extract '{expression}' failed on the response: {exc}") from None
    if found is None:
        raise FetchError(
            f"{shown}: extract '{expression}' matched nothing in the response"
            f" ({_outline(data)}); fix the expression (JMESPath: https://jmespath.org)"
        )
    return found


def _outline(data: Any) -> str:
    if isinstance(data, dict):
        keys = ", ".join(list(map(str, data))[:12])
        return f"an object with keys {keys}" if keys else "an empty object"
    if isinstance(data, list):
        return f"a list of {len(data)} items"
    return f"a {type(data).__name__}"
