"""Messages for failed lookups in templates (`plan.titel`, `tags[5]`, `title.uper()`): what
was looked into, and what exists instead (keys with a did-you-mean, a list's length, methods)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import nodes

from genarun.errors import did_you_mean
from genarun.tree.sandbox import allowed_attributes


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def _listing(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def missing_message(obj: Any, name: Any, subject: str | None) -> str:
    """Why looking up `name` in `obj` failed and what to write instead; `subject` is the
    expression that gave `obj` (`plan`, `plan.tags`), when known."""
    what = subject or "the " + _kind_of(obj).removeprefix("an ").removeprefix("a ")
    shown = f"'{name}'" if isinstance(name, str) else f"[{name}]"
    if obj is None:
        return f"{what} is null, so it has no {shown} (a skipped or failed node's output is null)"
    if isinstance(obj, Mapping):
        keys = [str(k) for k in obj]
        if not keys:
            return f"{what} is an empty object, so it has no {shown}"
        if not isinstance(name, str):
            return f"{what} is an object, not a list, so it has no item {shown} (its keys: {_listing(keys)})"
        close = did_you_mean(name, keys)
        return (
            f"{what} has no key {shown} ({close + ' ' if close else ''}its keys: {_listing(keys)})"
        )
    if isinstance(obj, (list, tuple, str)) and isinstance(name, int):
        unit = "character" if isinstance(obj, str) else "item"
        if not obj:
            return f"{what} is {'empty text' if isinstance(obj, str) else 'an empty list'}, so it has no {unit} [{name}]"
        n = len(obj)
        return f"{what} has {n} {unit}{'s' if n != 1 else ''}, so [{name}] is out of range (0 to {n - 1} from the start, -1 to -{n} from the end)"
    if isinstance(obj, (list, tuple)) and isinstance(name, str):
        message = f"{what} is a list of {len(obj)} item{'s' if len(obj) != 1 else ''}, not an object, so it has no {shown}"
        if any(isinstance(item, Mapping) and name in item for item in obj):
            base = subject or "the list"
            message += f" (its items have it: one is {base}[0].{name}, all are {base} | map(attribute='{name}') | list)"
        return message
    allowed = allowed_attributes(obj)
    methods = [a for a in dir(obj) if not a.startswith("_") and (allowed is None or a in allowed)]
    message = (
        f"{what} is {_kind_of(obj)}, which has no attribute {shown}"
        if subject
        else f"{what} has no attribute {shown}"
    )
    hints = []
    close = did_you_mean(str(name), methods)
    if close:
        hints.append(close)
    if isinstance(obj, str) and obj.lstrip()[:1] in ("{", "["):
        hints.append(
            "it looks like JSON: give the node that makes it 'parse: json' to read its fields"
        )
    return message + (f" ({'; '.join(hints)})" if hints else "")


def source_of(node: nodes.Node) -> str | None:
    """A lookup chain (`plan.tags[0]`) written back as source; None for anything else (calls
    and filters are left out, so evaluating the result again has no side effect)."""
    if isinstance(node, nodes.Name):
        return node.name
    if (
        isinstance(node, nodes.Const)
        and isinstance(node.value, (str, int))
        and not isinstance(node.value, bool)
    ):
        return repr(node.value)
    if isinstance(node, nodes.Neg):
        inner = source_of(node.node)
        return f"-{inner}" if inner else None
    if isinstance(node, nodes.Getattr):
        base = source_of(node.node)
        return f"{base}.{node.attr}" if base else None
    if isinstance(node, nodes.Getitem):
        base, arg = source_of(node.node), source_of(node.arg)
        return f"{base}[{arg}]" if base and arg else None
    return None
