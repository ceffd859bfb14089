"""What a failed request means: HttpError, the retryable failures the client retries, a
server's Retry-After, and the message of an error reply."""

from __future__ import annotations

import email.utils
import json as jsonlib
import re
import time
from dataclasses import dataclass
from datetime import UTC
from typing import Literal

from genarun.errors import GenarunError
from genarun.redaction import redact

_ERROR_TEXT_LIMIT = 500
# A server error whose text says the request itself is the problem: retrying cannot help.
DETERMINISTIC_SERVER_ERROR = re.compile(
    r"embeddings?\s*=\s*true|--embeddings?\b|--pooling|pooling type|not supported|unsupported"
    r"|does not support|not implemented|must be (?:created|loaded|started|run) with"
    r"|context (?:length|size|window)|exceeds? the (?:maximum|context)|invalid (?:model|argument)",
    re.IGNORECASE,
)


Reason = Literal[
    "status", "timeout", "connection", "too_large", "redirect", "header", "url", "body", "address"
]


class HttpError(GenarunError):
    """A request that failed: the message names method, URL (without secrets) and why."""

    def __init__(
        self,
        message: str,
        *,
        reason: Reason,
        status: int | None = None,
        attempts: int = 1,
        server_text: str = "",
    ):
        super().__init__(redact(message))
        self.reason, self.status, self.attempts = reason, status, attempts
        self.server_text = redact(server_text)


@dataclass
class Retryable(Exception):
    """An attempt that failed in a way worth trying again (the client's retry loop catches it;
    after the last attempt it becomes an HttpError)."""

    reason: Reason
    text: str
    status: int | None = None
    retry_after: float | None = None
    unsent: bool = False  # the request certainly never reached the server
    server_text: str = ""

    def __str__(self) -> str:
        return self.text


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After value (seconds or an HTTP date); None for anything
    else: a malformed value means 'back off as usual', never a failure."""
    if not value:
        return None
    text = value.strip()
    if re.fullmatch(r"\d{1,10}(?:\.\d{1,6})?", text):
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())


def server_error_text(raw: bytes) -> str:
    """The message of an error reply: OpenAI-style {"error": {"message"}}, {"error": "..."},
    {"message"}/{"detail"}, else the start of the body."""
    try:
        body = jsonlib.loads(raw)
    except (ValueError, RecursionError):
        return body_snippet(raw)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:_ERROR_TEXT_LIMIT]
        for candidate in (error, body.get("message"), body.get("detail")):
            if isinstance(candidate, str) and candidate:
                return candidate[:_ERROR_TEXT_LIMIT]
    return body_snippet(raw)


def body_snippet(raw: bytes) -> str:
    """The start of a response body for an error message, secrets redacted."""
    return redact(
        raw[: _ERROR_TEXT_LIMIT * 4].decode("utf-8", "replace").strip()[:_ERROR_TEXT_LIMIT]
    )
