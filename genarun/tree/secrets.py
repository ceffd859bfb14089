"""`secret('NAME')` in templates: a placeholder for a secret, filled in only when it is sent.

A template never sees a secret's value. `secret('API_KEY')` renders to a *live marker*, an
opaque placeholder holding the variable's name and a nonce drawn once per process. Whatever a
template does with it (print it in a prompt, pass it through filters, join it to other text,
put it in an error) moves the placeholder around, never the value. Only the `fetch` node, at
send time, replaces the live markers of its request with the values of their environment
variables, and only for a host the secret is listed for (`secrets: {NAME: {hosts: [...]}}` at
the top of the tree, or the node's own `hosts:`).

Everything genarun writes or prints goes through `genarun.redaction`, which turns a live marker
into its display form `<secret NAME>`: that is what stored parameters, logs and messages show.
The nonce keeps text from outside (an API's answer, a document, a model's output) from forging
a marker that would be filled in: it cannot know the nonce, and the stored forms do not hold it.
"""

from __future__ import annotations

import os
import re
import secrets as _random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# An environment variable's name, as a secret is named.
SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

_NONCE = _random.token_hex(8)
_OPEN, _CLOSE = "\u27e6", "\u27e7"  # mathematical white square brackets: rare in real text
# The patterns below are compiled when first used (re caches them): only a text that holds
# MARKER_START needs them, and most runs have no secrets.
# A marker of this process: filled in at send time.
_LIVE = rf"{_OPEN}secret:({SECRET_NAME.pattern}):{_NONCE}{_CLOSE}"
# Anything shaped like a marker (this process's, another's, or one a filter changed).
_ANY = rf"(?i){_OPEN}secret:([A-Za-z0-9_]{{1,128}}):[0-9A-Fa-f]{{16}}{_CLOSE}"
MARKER_START = f"{_OPEN}secret:"


def display(name: str) -> str:
    """How a secret is shown wherever it would be written: `<secret NAME>`."""
    return f"<secret {name}>"


class SecretNameError(ValueError):
    """`secret()` called with something that is not a variable's name."""


def secret(name: object) -> str:
    """The template function: a live marker for environment variable `name` (never its value)."""
    if not isinstance(name, str) or not SECRET_NAME.fullmatch(name):
        raise SecretNameError(
            f"secret() takes the name of an environment variable, such as secret('API_KEY'),"
            f" not {str(name)[:40]!r}"
        )
    return f"{_OPEN}secret:{name}:{_NONCE}{_CLOSE}"


def hide_markers(text: str) -> str:
    """`text` with every marker in its display form (the nonce never reaches storage)."""
    if MARKER_START not in text and MARKER_START not in text.lower():
        return text
    return re.sub(_ANY, lambda m: display(m.group(1)), text)


def live_names(text: str) -> list[str]:
    """The secret names of the live markers in `text`, in order."""
    if MARKER_START not in text:
        return []
    return [m.group(1) for m in re.finditer(_LIVE, text)]


def has_broken_marker(text: str) -> bool:
    """Whether `text` holds a marker that is not live (a filter changed it: `| upper`)."""
    low = text.lower()
    if MARKER_START not in low:
        return False
    return low.count(MARKER_START) > len(re.findall(_LIVE, text))


def fill(text: str, values: dict[str, str]) -> str:
    """`text` with each live marker replaced by its secret's value (`values` by name)."""
    if MARKER_START not in text:
        return text
    return re.sub(_LIVE, lambda m: values[m.group(1)], text)


def strings_in(value: object) -> Iterator[str]:
    """Every string in a JSON-like value (keys and leaves)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_in(key)
            yield from strings_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from strings_in(item)


def map_strings(value: object, fn: object) -> object:
    """A copy of a JSON-like value with `fn` applied to every string (keys and leaves)."""
    assert callable(fn)
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {map_strings(k, fn): map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [map_strings(v, fn) for v in value]
    return value


# --- which hosts a secret may go to ---------------------------------------------------------
@dataclass(frozen=True)
class HostRule:
    """One entry of a `hosts:` list: `api.example.com`, `*.example.com`, `127.0.0.1:8080`."""

    host: str
    port: int | None = None

    @classmethod
    def parse(cls, entry: str) -> HostRule:
        text = entry.strip().lower()
        if "://" in text or "/" in text or not text:
            raise ValueError(
                f"'{entry}' is not a host name: write the host alone (api.example.com), "
                "optionally with a port (localhost:8080) or a leading '*.' for subdomains"
            )
        host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
        if port and not port.isdigit():
            raise ValueError(f"'{entry}': the port must be a number")
        return cls(host, int(port) if port else None)

    def matches(self, host: str, port: int | None) -> bool:
        host = host.lower().rstrip(".")
        if self.port is not None and self.port != port:
            return False
        if self.host.startswith("*."):
            return host.endswith(self.host[1:])
        return host == self.host


def host_allowed(rules: Iterable[str], host: str, port: int | None) -> bool:
    """Whether a request to `host`:`port` may carry a secret listed for `rules`."""
    return any(HostRule.parse(rule).matches(host, port) for rule in rules)


class SecretNotSet(LookupError):
    """A secret's environment variable is not set (or empty)."""


def read_secret(name: str) -> str:
    """The value of environment variable `name`, stripped; SecretNotSet when it is missing."""
    value = os.environ.get(name, "").strip()
    if not value:
        raise SecretNotSet(
            f"secret '{name}': the environment variable {name} is not set; export it"
            f" (export {name}=...) before running the tree"
        )
    return value
