"""Redirects: the statuses that redirect, origins (a redirect to another one drops credentials),
the target URL (checked) and the method a redirect is followed with."""

from __future__ import annotations

import httpx

from genarun.net.http_errors import HttpError
from genarun.redaction import redact

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def url_origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """Scheme, host and port (the default one filled in): equal for URLs of one origin."""
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host.lower(), url.port or default


def origin_text(url: httpx.URL) -> str:
    """The origin as a message shows it: scheme://host[:port]."""
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.host}{port}"


def redirect_target(base: httpx.URL, location: str, where: str, method: str) -> httpx.URL:
    """Where a redirect's `location` leads from `base`; one that cannot be followed (no URL,
    another scheme) is an HttpError."""
    try:
        target = base.join(location.strip())
    except httpx.InvalidURL:
        raise HttpError(
            f"{method} {where}: redirected to an invalid URL {redact(location[:200])!r}",
            reason="redirect",
        ) from None
    if target.scheme not in ("http", "https"):
        raise HttpError(
            f"{method} {where}: redirected to a {target.scheme or 'relative'} URL, which is"
            " refused (only http and https)",
            reason="redirect",
        )
    # A server-supplied user:password@ is never turned into credentials.
    return target.copy_with(userinfo=b"") if target.userinfo else target


def redirected_method(status: int, method: str, body: bytes | None) -> tuple[str, bytes | None]:
    """The method and body a redirect with `status` is followed with."""
    # As browsers and RFC 9110 do: 303 turns anything but HEAD into GET; 301/302 turn POST
    # into GET; 307/308 repeat the request as it was.
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        return "GET", None
    return method, body
