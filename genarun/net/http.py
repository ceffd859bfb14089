"""One bounded HTTP client for everything genarun sends: model APIs and `fetch` calls.

    client = HttpClient(HttpPolicy(total_timeout=30, max_response_bytes=2**20))
    reply = client.request("POST", url, json=body, headers={"Authorization": f"Bearer {key}"})
    reply.json()

What it guarantees, whatever the server does:
- every attempt ends within `total_timeout` (connect, headers and body included: a server that
  trickles one byte a second is cut off), and each read waits at most `read_timeout`;
- a reply is never larger than `max_response_bytes` in memory (checked while it streams);
- redirects are limited and loops refused; a redirect to another origin drops the credential
  headers (Authorization, Cookie, API-key headers), or is refused outright (model APIs);
- connection errors, 408/425/429 and 5xx are retried with exponential backoff and jitter,
  honouring `Retry-After` (seconds or an HTTP date; anything else is ignored), except a 5xx whose
  text says the request can never succeed ('must be created with embedding=True');
  a request that is not idempotent is retried only when it was certainly not processed
  (the connection never opened, or 429);
- header values are stripped and checked before sending; credential values, a URL's
  `user:password@` and anything shaped like a key are masked in every message and log line.
"""

from __future__ import annotations

import base64
import json as jsonlib
import random
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, Literal

import httpx

from genarun.net.addresses import AddressRefused
from genarun.net.deadline import DeadlineTransport, deadline
from genarun.net.headers import clean_headers, is_credential_header, split_userinfo
from genarun.net.http_errors import (
    DETERMINISTIC_SERVER_ERROR,
    HttpError,
    Retryable,
    body_snippet,
    parse_retry_after,
    server_error_text,
)
from genarun.net.redirects import (
    REDIRECT_STATUSES,
    origin_text,
    redirect_target,
    redirected_method,
    url_origin,
)
from genarun.redaction import redact, redacting_logger, remember_secret, safe_url

log = redacting_logger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_ERROR_BODY_LIMIT = 64 * 1024  # an error page is read this far for its message, no further

RedirectRule = Literal["drop-credentials", "refuse"]


@dataclass(frozen=True, kw_only=True)
class HttpPolicy:
    """Limits and retry rules of a client; every field has a safe default."""

    connect_timeout: float = 10.0  # seconds to open a connection
    read_timeout: float = 60.0  # seconds any single read may wait
    total_timeout: float = 120.0  # seconds for a whole attempt: connect, headers, body
    max_response_bytes: int = 32 * 2**20
    max_redirects: int = 5
    cross_origin_redirects: RedirectRule = "drop-credentials"
    max_retries: int = 3
    backoff: float = 1.0  # first retry delay in seconds; doubles each retry, with jitter
    max_backoff: float = 30.0
    max_retry_after: float = 60.0  # a server's Retry-After is honoured up to this
    retry_statuses: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})
    concurrency: int = 16  # most open connections

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "read_timeout", "total_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be greater than 0")
        if self.max_response_bytes < 1 or self.max_redirects < 0 or self.max_retries < 0:
            raise ValueError("max_response_bytes >= 1, max_redirects and max_retries >= 0")


@dataclass(frozen=True)
class HttpResponse:
    """A complete reply (its body read within the limits)."""

    status: int
    headers: httpx.Headers
    body: bytes
    url: str  # the final URL after redirects, without userinfo
    attempts: int = 1
    elapsed: float = 0.0
    method: str = "GET"

    def text(self) -> str:
        charset = httpx.Response(self.status, headers=self.headers).charset_encoding or "utf-8"
        try:
            return self.body.decode(charset, "replace")
        except LookupError:
            return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON; HttpError(reason='body') quoting its start when it is not."""
        try:
            return jsonlib.loads(self.body)
        except (ValueError, RecursionError):
            raise HttpError(
                f"{self.method} {self.url} answered with invalid JSON: {body_snippet(self.body)}",
                reason="body",
                status=self.status,
            ) from None


@dataclass
class _Prepared:
    method: str
    url: str
    safe: str
    headers: dict[str, str]
    body: bytes | None
    params: Any
    idempotent: bool
    credentials: set[str] = field(default_factory=set)  # lowercase names of credential headers


class HttpClient:
    """A thread-safe client with the guarantees in the module docstring."""

    def __init__(self, policy: HttpPolicy | None = None, *, user_agent: str = "genarun") -> None:
        self.policy = policy or HttpPolicy()
        self._jitter = random.Random()
        self._jitter_lock = threading.Lock()
        self._transport = DeadlineTransport(max_connections=self.policy.concurrency)
        self._client = httpx.Client(
            transport=self._transport,
            timeout=httpx.Timeout(
                connect=min(self.policy.connect_timeout, self.policy.total_timeout),
                read=self.policy.read_timeout,
                write=self.policy.read_timeout,
                pool=self.policy.total_timeout,
            ),
            follow_redirects=False,  # followed by hand, to drop credentials across origins
            trust_env=False,  # proxies come from the transport; no .netrc credentials
            # No cookie jar state: a reply's cookies never ride along on another request.
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            headers={"User-Agent": user_agent},
        )

    def __repr__(self) -> str:
        return f"HttpClient({self.policy!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | str | None = None,
        idempotent: bool | None = None,
    ) -> HttpResponse:
        """Send a request with retries; return the reply of status < 400, else raise HttpError."""
        prepared = self._prepare(method, url, headers, params, json, content, idempotent)
        policy = self.policy
        started = time.monotonic()
        attempts = policy.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                response = self._attempt(prepared)
            except Retryable as exc:
                may_retry = prepared.idempotent or exc.unsent or exc.status == 429
                if attempt == attempts or not may_retry:
                    raise HttpError(
                        f"{prepared.method} {prepared.safe} failed after {attempt} attempt(s):"
                        f" {exc}",
                        reason=exc.reason,
                        status=exc.status,
                        attempts=attempt,
                        server_text=exc.server_text,
                    ) from None
                delay = self._delay(attempt, exc.retry_after)
                if _run_stopping(0):
                    raise _not_retried(prepared, attempt, exc) from None
                log.warning(
                    "%s %s: %s; retry %d/%d in %.2fs",
                    prepared.method,
                    prepared.safe,
                    exc,
                    attempt,
                    policy.max_retries,
                    delay,
                )
                if _run_stopping(delay):  # Ctrl-C during the wait: no retry either
                    raise _not_retried(prepared, attempt, exc) from None
                continue
            return HttpResponse(
                status=response[0],
                headers=response[1],
                body=response[2],
                url=response[3],
                attempts=attempt,
                elapsed=time.monotonic() - started,
                method=prepared.method,
            )
        raise AssertionError("unreachable: the loop returns or raises")

    # --- preparing ----------------------------------------------------------------------
    def _prepare(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        params: Mapping[str, Any] | None,
        json: Any,
        content: bytes | str | None,
        idempotent: bool | None,
    ) -> _Prepared:
        method = method.strip().upper()
        clean_url, userinfo = split_userinfo(url)
        safe = safe_url(clean_url)
        parts = urllib.parse.urlsplit(clean_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HttpError(f"{method} {safe}: not an http(s) URL", reason="url")
        sent = clean_headers(headers or {}, where=f"{method} {safe}")
        if userinfo is not None and not any(k.lower() == "authorization" for k in sent):
            user, password = userinfo
            remember_secret(password)
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            remember_secret(token)
            sent["Authorization"] = f"Basic {token}"
        body: bytes | None
        if json is not None:
            body = jsonlib.dumps(json).encode()
            sent.setdefault("Content-Type", "application/json")
        elif isinstance(content, str):
            body = content.encode()
        else:
            body = content
        return _Prepared(
            method=method,
            url=clean_url,
            safe=safe,
            headers=sent,
            body=body,
            params=params,
            idempotent=method in IDEMPOTENT_METHODS if idempotent is None else idempotent,
            credentials={k.lower() for k in sent if is_credential_header(k)},
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        policy = self.policy
        if retry_after is not None:
            return min(retry_after, policy.max_retry_after)
        base = min(policy.backoff * 2 ** (attempt - 1), policy.max_backoff)
        # Jitter spreads out the retries of parallel requests that failed together.
        with self._jitter_lock:
            return base * (1 + 0.25 * self._jitter.random())

    # --- one attempt --------------------------------------------------------------------
    def _attempt(self, prepared: _Prepared) -> tuple[int, httpx.Headers, bytes, str]:
        policy = self.policy
        with deadline(policy.total_timeout) as at:
            try:
                return self._follow(prepared)
            except httpx.TimeoutException as exc:
                text = self._timeout_text(exc, at)
                raise Retryable("timeout", text, unsent=_unsent(exc)) from None
            except httpx.InvalidURL as exc:  # the first URL or a redirect's Location
                raise HttpError(
                    f"{prepared.method} {prepared.safe}: not a valid URL ({exc})", reason="url"
                ) from None
            except AddressRefused as exc:  # raised beside httpx, for a proxied request
                raise self._refused(prepared, exc) from None
            except httpx.TransportError as exc:
                if isinstance(exc.__cause__, AddressRefused):  # would be refused again
                    raise self._refused(prepared, exc.__cause__) from None
                detail = redact(str(exc)) or type(exc).__name__
                raise Retryable(
                    "connection", f"connection failed: {detail}", unsent=_unsent(exc)
                ) from None

    @staticmethod
    def _refused(prepared: _Prepared, exc: AddressRefused) -> HttpError:
        return HttpError(f"{prepared.method} {prepared.safe}: {exc}", reason="address")

    def _timeout_text(self, exc: httpx.TimeoutException, at: float) -> str:
        policy = self.policy
        if time.monotonic() >= at - 0.01:
            return f"no complete answer within the total deadline of {policy.total_timeout:g}s (timeout)"
        if isinstance(exc, httpx.ConnectTimeout):
            return f"could not connect within {policy.connect_timeout:g}s (timeout)"
        return f"no answer within {policy.read_timeout:g}s (timeout)"

    def _follow(self, prepared: _Prepared) -> tuple[int, httpx.Headers, bytes, str]:
        policy = self.policy
        method, url, body = prepared.method, prepared.url, prepared.body
        headers = dict(prepared.headers)
        params = prepared.params
        seen: set[str] = set()
        looped = False
        for _hop in range(policy.max_redirects + 1):
            request = self._client.build_request(
                method, url, headers=headers, params=params, content=body
            )
            looped = looped or str(request.url) in seen
            seen.add(str(request.url))
            response = self._client.send(request, stream=True)
            try:
                location = response.headers.get("Location")
                if response.status_code in REDIRECT_STATUSES and location:
                    target = redirect_target(request.url, location, prepared.safe, method)
                    if url_origin(target) != url_origin(request.url):
                        headers = self._leave_origin(prepared, headers, request.url, target)
                    method, body = redirected_method(response.status_code, method, body)
                    if body is None:
                        headers = {
                            k: v
                            for k, v in headers.items()
                            if k.lower() not in ("content-type", "content-length")
                        }
                    url, params = str(target), None
                    continue
                status = response.status_code
                if status >= 400:
                    raw = _read_body(response, min(policy.max_response_bytes, _ERROR_BODY_LIMIT))
                    self._raise_for_status(prepared, status, response.headers, raw)
                raw = _read_body(response, policy.max_response_bytes, prepared.safe)
                return status, response.headers, raw, safe_url(str(request.url))
            finally:
                response.close()
        loop = " (a redirect loop: it came back to a URL it had visited)" if looped else ""
        raise HttpError(
            f"{prepared.method} {prepared.safe}: more than {policy.max_redirects} redirects{loop}",
            reason="redirect",
        )

    def _leave_origin(
        self, prepared: _Prepared, headers: dict[str, str], source: httpx.URL, target: httpx.URL
    ) -> dict[str, str]:
        if self.policy.cross_origin_redirects == "refuse":
            raise HttpError(
                f"{prepared.method} {prepared.safe} was redirected to another origin"
                f" ({safe_url(str(target))}), which is refused: credentials and requests stay"
                f" with {origin_text(source)}; if the service really moved, use its new URL",
                reason="redirect",
            )
        kept = {k: v for k, v in headers.items() if not is_credential_header(k)}
        dropped = sorted(k for k in headers if k not in kept)
        if dropped:
            log.info(
                "%s %s: redirected to %s; not sending %s there",
                prepared.method,
                prepared.safe,
                origin_text(target),
                ", ".join(dropped),
            )
        return kept

    def _raise_for_status(
        self, prepared: _Prepared, status: int, headers: httpx.Headers, raw: bytes
    ) -> None:
        text = redact(server_error_text(raw))
        if status in self.policy.retry_statuses and not (
            status >= 500 and DETERMINISTIC_SERVER_ERROR.search(text)
        ):
            raise Retryable(
                "status",
                f"status {status}: {text}",
                status=status,
                retry_after=parse_retry_after(headers.get("Retry-After")),
                server_text=text,
            )
        raise HttpError(
            f"{prepared.method} {prepared.safe} failed with status {status}: {text}",
            reason="status",
            status=status,
            server_text=text,
        )


def _read_body(response: httpx.Response, limit: int, too_large_for: str | None = None) -> bytes:
    """Read a streamed body up to `limit` bytes: past it, raise (when `too_large_for` names the
    request) or stop reading (error pages, read only for their message)."""
    declared = response.headers.get("Content-Length", "")
    if too_large_for and declared.isdigit() and int(declared) > limit:
        raise _too_large(too_large_for, limit, f"it declares {int(declared):,} bytes")
    buffer = bytearray()
    for chunk in response.iter_bytes():
        buffer += chunk
        if len(buffer) > limit:
            if too_large_for:
                raise _too_large(too_large_for, limit, "it sent more")
            return bytes(buffer[:limit])
    return bytes(buffer)


def _too_large(where: str, limit: int, detail: str) -> HttpError:
    return HttpError(
        f"{where}: the response is larger than the limit of {limit:,} bytes ({detail}); raise"
        " the limit (max_response_bytes) if this size is expected",
        reason="too_large",
    )


def _unsent(exc: httpx.HTTPError) -> bool:
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def _run_stopping(wait: float) -> bool:
    """Wait `wait` seconds before a retry, cut short when the run this request works for is
    stopping (Ctrl-C once: what is running finishes, nothing new starts, and a retry would be
    new); whether it is. Outside a run, just the wait."""
    import sys

    interrupts = sys.modules.get("genarun.run.interrupts")  # imported by every run
    if interrupts is None:
        time.sleep(wait)
        return False
    return bool(interrupts.stop_within(wait))


def _not_retried(prepared: _Prepared, attempt: int, exc: Retryable) -> HttpError:
    return HttpError(
        f"{prepared.method} {prepared.safe} failed after {attempt} attempt(s): {exc}; not"
        " retried: the run is stopping (Ctrl-C)",
        reason=exc.reason,
        status=exc.status,
        attempts=attempt,
        server_text=exc.server_text,
    )
