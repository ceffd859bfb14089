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

import functools
import re
import threading
import urllib.parse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from genarun.tree.secrets import MARKER_START, hide_markers

if TYPE_CHECKING:
    import logging

MASK = "***"
# Secrets shorter than this are masked only where they appear whole: a 4-character value would
# otherwise mask unrelated words that share its letters.
_MIN_FUZZY_SECRET = 12
# Shorter values are not remembered at all: they are placeholders ("EMPTY", "none", "dummy"
# for local servers that want some key), and masking them would mask those words everywhere.
MIN_SECRET = 8
# Runs of this many characters shared with a remembered secret mark a token as its echo.
_SHARED_RUN = 8

# A token: the characters keys, tokens and their masked echoes are written with. Quotes,
# backslashes and whitespace end a token, so masking never breaks the JSON it sits in.
_TOKEN = re.compile(r"[A-Za-z0-9_\-.~+/=*:@%!$&]+")


class _LazyPattern:
    """A regular expression compiled when first used: most processes write no text that
    triggers one, and compiling them all cost 10 ms of every start."""

    def __init__(self, source: str, flags: int = 0) -> None:
        self.source, self.flags = source, flags

    @functools.cached_property
    def compiled(self) -> re.Pattern[str]:
        return re.compile(self.source, self.flags)

    def sub(self, replacement: str, text: str) -> str:
        return self.compiled.sub(replacement, text)


# Each pattern with the lowercase words that must be in a text for it to match: a text without
# them (most outputs and parameters) is never scanned by the pattern (Python's re is slow on
# these alternations: a scan of every row cost a millisecond).
_PATTERNS: tuple[tuple[tuple[str, ...], _LazyPattern, str], ...] = (
    # Authorization header values: Bearer/Basic/Token followed by a credential-like string.
    (
        ("bearer", "basic", "token ", "token\t"),
        _LazyPattern(
            r"\b(Bearer|Basic|Token)(\s+)(?=[A-Za-z\-._~+/]*[0-9])[A-Za-z0-9\-._~+/]{12,}=*",
            re.IGNORECASE,
        ),
        rf"\1\2{MASK}",
    ),
    # Well-known key shapes: OpenAI-style sk-..., GitHub, Hugging Face, Slack, AWS, Google.
    (
        # (`ghp_`..`ghr_` and `github_pat_`, not `gh`: "weights", "high" are in most texts)
        (
            "sk-",
            "ghp_",
            "gho_",
            "ghu_",
            "ghs_",
            "ghr_",
            "github_pat_",
            "hf_",
            "xox",
            "akia",
            "aiza",
        ),
        _LazyPattern(
            r"\b(?:sk-(?=[A-Za-z_\-*.]*[0-9])[A-Za-z0-9_\-*.]{8,}|gh[pousr]_[A-Za-z0-9]{16,}"
            r"|github_pat_[A-Za-z0-9_]{16,}|hf_[A-Za-z0-9]{16,}|xox[abprs]-[A-Za-z0-9\-]{10,}"
            r"|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_\-]{30,})"
        ),
        MASK,
    ),
    # user:password@ in a URL (and a bare user@ is harmless, so only with a colon).
    (
        ("@",),
        _LazyPattern(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s:@\"']*:[^/\s@\"']*@"),
        rf"\1{MASK}@",
    ),
    # key=value pairs whose name says secret (query strings, form bodies, JSON-ish text).
    (
        (
            "key",
            'token"',
            "token'",
            "token:",
            "token=",
            "token ",
            "secret",
            "passw",
        ),
        _LazyPattern(
            r"(?i)(\b(?:api[_-]?key|apikey|access[_-]?token|auth[_-]?token|token|secret"
            r"|password|passwd|client[_-]?secret|x-api-key)\b[\"']?\s*[:=]\s*[\"']?)"
            r"(?!\*\*\*)[^\s\"'&,;}\\]{8,}"
        ),
        rf"\1{MASK}",
    ),
    # Query parameters that carry credentials under short names (Google's key=, signed URLs).
    (
        ("key=", "sig=", "signature=", "code=", "auth="),
        _LazyPattern(
            r"(?i)([?&;](?:key|sig|signature|code|access_key|auth)=)(?!\*\*\*)[^&#\s\"'\\]{6,}"
        ),
        rf"\1{MASK}",
    ),
)


def _alternation(words: set[str]) -> str:
    """A regex matching any of `words`, factored by first character (a trie): the regex
    engine tries every branch of a flat alternation at each position of a text, but rejects
    a branch by its first character at once, so this scans several times fewer branches."""
    by_first: dict[str, set[str]] = {}
    for word in words:
        by_first.setdefault(word[0], set()).add(word[1:])
    branches = []
    for first, rests in sorted(by_first.items()):
        if "" in rests:  # the one character alone matches: longer words add nothing
            branches.append(re.escape(first))
        elif len(rests) == 1:
            branches.append(re.escape(first + next(iter(rests))))
        else:
            branches.append(f"{re.escape(first)}(?:{_alternation(rests)})")
    return "|".join(branches)


# Any word that lets one of the patterns match: a text with none of them needs no pattern pass.
_TRIGGER_WORDS = frozenset(w for words, _p, _r in _PATTERNS for w in words)
_TRIGGERS = re.compile(_alternation(set(_TRIGGER_WORDS)))
# Characters of hexadecimal digests (ids, hashes): every trigger word and the secret marker
# have a character outside them, so a text of only these needs no scan.
_HEX = "0123456789abcdef\0"


class _Secrets:
    """The secret values seen by this process, and the lookups that find their echoes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._runs: set[str] = set()  # lowercase runs of _SHARED_RUN characters of long secrets
        self._exact: re.Pattern[str] | None = None
        # Lowercase strings of which one is in any text that holds a secret or its echo: a
        # text with none of them is returned as it is, without a regex pass.
        self._needles: tuple[str, ...] = ()

    def remember(self, value: str) -> None:
        stripped = value.strip()
        if len(stripped) < MIN_SECRET:
            return
        forms = {value, stripped, stripped.lower()}
        with self._lock:
            if forms <= self._values:
                return
            # New objects, not updates in place: other threads read them without the lock.
            self._values = self._values | forms
            runs = set(self._runs)
            if len(stripped) >= _MIN_FUZZY_SECRET:
                # Only runs that look like key material: a key such as 'sk-no-key-required'
                # must not mask every 'required' in the outputs.
                runs |= {
                    stripped[i : i + _SHARED_RUN].lower()
                    for i in range(len(stripped) - _SHARED_RUN + 1)
                    if _mixed(stripped[i : i + _SHARED_RUN])
                }
            self._runs = runs
            ordered = sorted(self._values, key=len, reverse=True)  # longest first
            self._exact = re.compile("|".join(re.escape(v) for v in ordered), re.IGNORECASE)
            short = {v.lower() for v in self._values if len(v) < _MIN_FUZZY_SECRET}
            self._needles = tuple(sorted(runs | short))

    def empty(self) -> bool:
        """No secret remembered: `mask` changes nothing."""
        return self._exact is None

    def forget_all(self) -> None:
        with self._lock:
            self._values, self._runs, self._exact, self._needles = set(), set(), None, ()

    def mask(self, text: str, low: str) -> str:
        exact, runs, needles = self._exact, self._runs, self._needles
        if exact is None or not any(needle in low for needle in needles):
            return text
        text = exact.sub(lambda m: _keep_escape(m, m.string) + MASK, text)
        if not runs:
            return text
        return _TOKEN.sub(lambda m: _mask_token(m, runs), text)


def _keep_escape(match: re.Match[str], text: str) -> str:
    """The start of a match that completes a JSON escape (the `n` of `\\n`, the `u0041` of
    `\\u0041`), which masking must keep or the JSON text around it breaks."""
    start = match.start()
    backslashes = 0
    while start - backslashes > 0 and text[start - backslashes - 1] == "\\":
        backslashes += 1
    if backslashes % 2 == 0:
        return ""
    group = match.group()
    return group[:5] if group[:1] == "u" else group[:1]


def _mixed(run: str) -> bool:
    """Whether a run mixes at least two of lower case, upper case, digits and other signs."""
    kinds = {
        "lower" if c.islower() else "upper" if c.isupper() else "digit" if c.isdigit() else "sign"
        for c in run
    }
    return len(kinds) >= 2


def _mask_token(match: re.Match[str], runs: set[str]) -> str:
    token = match.group()
    if not _shares_a_run(token, runs):
        return token
    kept = _keep_escape(match, match.string)
    # Sentence punctuation after a key ("provided: sk-...abcd.") stays outside the mask.
    core = token.rstrip(".:!,")
    if len(core) <= len(kept):
        return token
    return kept + MASK + token[len(core) :]


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


def redact(text: str, *, patterns: bool = True) -> str:
    """`text` with every remembered secret and its echoes masked, and (`patterns`) strings
    shaped like credentials. Outputs are masked by value only: the shapes would mangle ordinary
    model text and cost a scan of every large output."""
    if not text:
        return text
    low = text.lower()
    if MARKER_START in low:  # `secret()` placeholders: their display form, without the nonce
        text = hide_markers(text)
        low = text.lower()
    masked = _secrets.mask(text, low)
    if not patterns:
        return masked
    if masked is not text:
        low = masked.lower()
    if not _TRIGGERS.search(low):  # most texts: one scan in C instead of 25 `in` checks
        return masked
    for words, pattern, replacement in _PATTERNS:
        if any(word in low for word in words):
            masked = pattern.sub(replacement, masked)
    return masked


def redact_value(value: Any) -> Any:
    """A copy of a JSON-like value with every string in it redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(v) for v in value)
    return value


VALUE_ONLY_COLUMNS = frozenset({"output"})


def redact_row(row: dict[str, Any]) -> dict[str, Any]:
    """A store row with its text columns redacted (other columns untouched); outputs by value
    only (see `redact`)."""
    if _secrets.empty():
        # One look at all its texts at once (the hot path: a row per execution): a row with no
        # placeholder and no word a pattern needs is returned as it is. Texts are joined with
        # NUL, which no pattern or placeholder matches across.
        texts = [v for k, v in row.items() if isinstance(v, str) and k not in VALUE_ONLY_COLUMNS]
        low = "\0".join(texts).lower()
        if MARKER_START not in low and not _TRIGGERS.search(low):
            values = [v for k, v in row.items() if isinstance(v, str) and k in VALUE_ONLY_COLUMNS]
            if not any(MARKER_START in v.lower() for v in values):
                return dict(row)
    return {
        k: redact(v, patterns=k not in VALUE_ONLY_COLUMNS) if isinstance(v, str) else v
        for k, v in row.items()
    }


def rows_left_as_they_are(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> bool:
    """Whether `redact_row` would return every one of `rows` (positional values in `columns`'
    order) unchanged: the batch form of its fast path, one scan of all their texts instead of
    one per row (a row per execution, thousands a second). Texts are joined with NUL, as
    redact_row joins a row's, which no pattern, trigger or placeholder matches across."""
    if not rows:
        return True
    if not _secrets.empty():
        return False
    texts: list[str] = []
    values: list[str] = []
    for name, column in zip(columns, zip(*rows, strict=True), strict=True):
        # Each distinct text once: a node's rows repeat its id, kind, status and pick texts.
        joined = "\0".join({v for v in column if isinstance(v, str)}).lower()
        if name in VALUE_ONLY_COLUMNS:
            values.append(joined)
        elif joined.strip(_HEX):  # ids and digests (a third of a row's text) are skipped
            texts.append(joined)
    low = "\0".join(texts)
    if MARKER_START in low or _TRIGGERS.search(low):
        return False
    return not any(MARKER_START in text for text in values)


def safe_url(url: str) -> str:
    """A URL fit to print or store: no `user:password@`, secret-named query values masked."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return redact(url)
    netloc = parts.netloc.rpartition("@")[2]
    return redact(urllib.parse.urlunsplit(parts._replace(netloc=netloc)))


class RedactingFilter:
    """A logging filter that masks secrets in a record's final message.

    Not a `logging.Filter` subclass: a logger calls the `filter` method of any object it is
    given, and the logging module (about 1 % of a start) loads only with the HTTP client."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def redacting_logger(name: str) -> logging.Logger:
    """`logging.getLogger(name)` with secret masking on every record it emits."""
    import logging

    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger
