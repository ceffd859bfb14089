"""Secret masking for everything genarun writes or prints: SQLite rows, output folders, log lines
and error messages.

Two nets, because either alone leaks:
- by value: every secret genarun sends (an API key read from the environment, a URL's password)
  is remembered for the life of the process; its exact text, its stripped and case-folded forms,
  and any token that shares a long run of characters with it (a server's altered echo such as
  `sk-test-****6789` or the key missing its last character) are masked;
- by pattern: credentials genarun never saw still have recognisable shapes (`Bearer ...`,
  `sk-...`, `ghp_...`, `user:password@` in a URL, `api_key=...` in a query string).

The masked text keeps its surroundings (`Incorrect API key provided: ***`), so messages stay
useful. Nothing here imports anything heavy: the store, the CLI and the HTTP client all use it.
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse
from typing import Any

MASK = "***"
# Secrets shorter than this are masked only where they appear whole: a 4-character value would
# otherwise mask unrelated words that share its letters.
_MIN_FUZZY_SECRET = 12
# Runs of this many characters shared with a remembered secret mark a token as its echo.
_SHARED_RUN = 8

# A token: the characters keys, tokens and their masked echoes are written with. Quotes,
# backslashes and whitespace end a token, so masking never breaks the JSON it sits in.
_TOKEN = re.compile(r"[A-Za-z0-9_\-.~+/=*:@%!$&]+")

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization header values: Bearer/Basic/Token followed by a credential-like string.
    (
        re.compile(
            r"\b(Bearer|Basic|Token)(\s+)(?=[A-Za-z\-._~+/]*[0-9])[A-Za-z0-9\-._~+/]{12,}=*",
            re.IGNORECASE,
        ),
        rf"\1\2{MASK}",
    ),
    # Well-known key shapes: OpenAI-style sk-..., GitHub, Hugging Face, Slack, AWS, Google.
    (
        re.compile(
            r"\b(?:sk-(?=[A-Za-z_\-*.]*[0-9])[A-Za-z0-9_\-*.]{8,}|gh[pousr]_[A-Za-z0-9]{16,}|github_pat_[A-Za-z0-9_]{16,}"
            r"|hf_[A-Za-z0-9]{16,}|xox[abprs]-[A-Za-z0-9\-]{10,}|AKIA[0-9A-Z]{16}"
            r"|AIza[0-9A-Za-z_\-]{30,})"
        ),
        MASK,
    ),
    # user:password@ in a URL (and a bare user@ is harmless, so only with a colon).
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s:@\"']*:[^/\s@\"']*@"), rf"\1{MASK}@"),
    # key=value pairs whose name says secret (query strings, form bodies, JSON-ish text).
    (
        re.compile(
            r"(?i)(\b(?:api[_-]?key|apikey|access[_-]?token|auth[_-]?token|token|secret"
            r"|password|passwd|client[_-]?secret|x-api-key)\b[\"']?\s*[:=]\s*[\"']?)"
            r"(?!\*\*\*)[^\s\"'&,;}\\]{8,}"
        ),
        rf"\1{MASK}",
    ),
    # Query parameters that carry credentials under short names (Google's key=, signed URLs).
    (
        re.compile(
            r"(?i)([?&;](?:key|sig|signature|code|access_key|auth)=)(?!\*\*\*)[^&#\s\"'\\]{6,}"
        ),
        rf"\1{MASK}",
    ),
)
# One cheap search decides whether the pattern pass can change anything at all.
_ANY_PATTERN = re.compile(
    r"(?i)bearer|basic|token|sk-|gh[pousr]_|github_pat_|hf_|xox|AKIA|AIza|://[^/\s]*@|key|secret"
    r"|passw"
)


class _Secrets:
    """The secret values seen by this process, and the lookups that find their echoes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._runs: set[str] = set()  # lowercase runs of _SHARED_RUN characters of long secrets
        self._exact: re.Pattern[str] | None = None

    def remember(self, value: str) -> None:
        forms = {value, value.strip()}
        forms |= {f.lower() for f in forms}
        forms = {f for f in forms if len(f.strip()) >= 4}
        with self._lock:
            if forms <= self._values:
                return
            # New objects, not updates in place: other threads read them without the lock.
            self._values = self._values | forms
            runs = set(self._runs)
            for form in forms:
                if len(form) >= _MIN_FUZZY_SECRET:
                    low = form.lower()
                    runs |= {low[i : i + _SHARED_RUN] for i in range(len(low) - _SHARED_RUN + 1)}
            self._runs = runs
            ordered = sorted(self._values, key=len, reverse=True)  # longest first
            self._exact = re.compile("|".join(re.escape(v) for v in ordered), re.IGNORECASE)

    def forget_all(self) -> None:
        with self._lock:
            self._values, self._runs, self._exact = set(), set(), None

    def mask(self, text: str) -> str:
        exact, runs = self._exact, self._runs
        if exact is None:
            return text
        text = exact.sub(MASK, text)
        if not runs:
            return text
        return _TOKEN.sub(lambda m: _mask_token(m.group(), runs), text)


def _mask_token(token: str, runs: set[str]) -> str:
    if not _shares_a_run(token, runs):
        return token
    # Sentence punctuation after a key ("provided: sk-...abcd.") stays outside the mask.
    core = token.rstrip(".:!,")
    return MASK + token[len(core) :]


def _shares_a_run(token: str, runs: set[str]) -> bool:
    if len(token) < _SHARED_RUN:
        return False
    low = token.lower()
    return any(low[i : i + _SHARED_RUN] in runs for i in range(len(low) - _SHARED_RUN + 1))


_secrets = _Secrets()


def remember_secret(value: str | None) -> None:
    """Mask `value` (and its echoes) in everything written or printed from now on."""
    if value:
        _secrets.remember(value)


def forget_secrets() -> None:
    """Forget every remembered secret (tests use it to start clean)."""
    _secrets.forget_all()


def redact(text: str) -> str:
    """`text` with every remembered secret, its echoes and credential-shaped strings masked."""
    if not text:
        return text
    text = _secrets.mask(text)
    if _ANY_PATTERN.search(text) is None:
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value: Any) -> Any:
    """A copy of a JSON-like value with every string in it redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value


def redact_row(row: dict[str, Any]) -> dict[str, Any]:
    """A store row with its text columns redacted (other columns untouched)."""
    return {k: redact(v) if isinstance(v, str) else v for k, v in row.items()}


def safe_url(url: str) -> str:
    """A URL fit to print or store: no `user:password@`, secret-named query values masked."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return redact(url)
    netloc = parts.netloc.rpartition("@")[2]
    return redact(urllib.parse.urlunsplit(parts._replace(netloc=netloc)))


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in a record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def redacting_logger(name: str) -> logging.Logger:
    """`logging.getLogger(name)` with secret masking on every record it emits."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger
