"""Request headers and URL credentials: which headers carry credentials, header values checked
before sending, and a URL's `user:password@` taken out of it."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping

from genarun.net.http_errors import HttpError
from genarun.redaction import remember_secret, safe_url

# Header names that carry credentials, and words that mark a custom one (X-Api-Key, X-Auth-Token).
_CREDENTIAL_NAMES = frozenset({"authorization", "proxy-authorization", "cookie"})
_CREDENTIAL_WORDS = ("key", "token", "secret", "auth", "cookie", "session", "password", "signature")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def is_credential_header(name: str) -> bool:
    """Whether a header carries credentials (never sent to another origin, masked everywhere)."""
    lower = name.lower()
    return lower in _CREDENTIAL_NAMES or any(word in lower for word in _CREDENTIAL_WORDS)


def clean_headers(headers: Mapping[str, str], where: str = "request") -> dict[str, str]:
    """Header values stripped of surrounding whitespace, checked for characters that would
    break the request (CR, LF, other controls, non-Latin-1). Credential values are remembered
    for masking, and never quoted in the error."""
    cleaned: dict[str, str] = {}
    for name, value in headers.items():
        name = str(name).strip()
        if not _HEADER_NAME.fullmatch(name):
            raise HttpError(f"{where}: {name[:60]!r} is not a valid header name", reason="header")
        text = str(value)
        secret = is_credential_header(name)
        if secret:
            remember_secret(text)
        stripped = text.strip()
        for position, char in enumerate(stripped):
            if (ord(char) < 32 and char != "\t") or ord(char) == 127 or ord(char) > 255:
                shown = f"U+{ord(char):04X}"
                raise HttpError(
                    f"{where}: the value of header {name} has a character that HTTP does not"
                    f" allow ({shown}) at position {position}; fix where the value comes from",
                    reason="header",
                )
        if secret:
            remember_secret(stripped)
        cleaned[name] = stripped
    return cleaned


def split_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """(the URL without `user:password@`, (user, password) or None)."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
    except ValueError:
        raise HttpError(f"{safe_url(url)!r} is not a valid URL", reason="url") from None
    if "@" not in parts.netloc:
        return url.strip(), None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    user, password = urllib.parse.unquote(user), urllib.parse.unquote(password)
    remember_secret(password)
    return urllib.parse.urlunsplit(parts._replace(netloc=host)), (user, password)
