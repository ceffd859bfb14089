"""A rendered field whose value is of the wrong type for the field, in the user's words.

`validate` catches what the tree alone shows (`prompt: "{{ cover }}"` naming an image node);
values known only when the node runs (parsed JSON, an API's answer, a var) are checked here,
after rendering. The message names the field, what it takes, the template and what it gave,
and the fix: a single-expression template keeps its value's type, so `prompt: "{{ plan }}"`
passes a list where text is wanted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from genarun.values import ImageRef

# pydantic error types -> what the field takes, in words (a template branch is left out: the
# value was rendered already).
_EXPECTED = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
}
_BOUNDS = {
    "greater_than": "more than",
    "greater_than_equal": "at least",
    "less_than": "less than",
    "less_than_equal": "at most",
}
_SINGLE = re.compile(r"\s*\{\{-?\s*(.+?)\s*-?\}\}\s*", re.DOTALL)
_NUMBER = re.compile(r"\s*[-+]?[0-9]+(\.[0-9]*)?\s*")
_SIMPLE = re.compile(r"[A-Za-z_][\w.]*(\[[^\]]*\])*")


def rendered_type_message(
    field: str, template: Any, value: Any, errors: Sequence[Mapping[str, Any]]
) -> str:
    """`field 'prompt' is text, but '{{ plan }}' gave a list of 2 items (...) (join it, ...)`."""
    given = f"'{template}'" if isinstance(template, str) else "its value"
    got = describe(value)
    branches = [e for e in errors if not _template_branch(e)] or errors
    bound = next((e for e in branches if e["type"] in _BOUNDS), None)
    if bound is not None:
        limit = next(iter(bound.get("ctx", {}).values()), "")
        return f"field '{field}' must be {_BOUNDS[bound['type']]} {limit}, but {given} gave {got}"
    wanted = [_EXPECTED[e["type"]] for e in branches if e["type"] in _EXPECTED]
    if not wanted:
        reason = str(branches[0].get("msg", "invalid value")).removeprefix("Value error, ")
        return f"field '{field}': {reason}, but {given} gave {got}"
    takes = " or ".join(dict.fromkeys(wanted))
    verb = "is" if takes == "text" else "takes"
    message = f"field '{field}' {verb} {takes}, but {given} gave {got}"
    fix = _fix(takes, template, value)
    return f"{message} ({fix})" if fix else message


def describe(value: Any) -> str:
    """A value's type and a glimpse of it: `a list of 2 items (["a", "b"])`."""
    if isinstance(value, ImageRef):
        return f"an image ({value.path})"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()}, a boolean"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {_cut(json.dumps(value, ensure_ascii=False))}"
    if isinstance(value, list | tuple):
        count = f"{len(value)} item{'' if len(value) == 1 else 's'}"
        return f"a list of {count} ({_glimpse(value)})"
    if isinstance(value, dict):
        keys = ", ".join(map(str, list(value)[:8])) + (", ..." if len(value) > 8 else "")
        return f"an object with keys {keys}" if value else "an empty object"
    return f"a {type(value).__name__}"


def _glimpse(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except ValueError:  # a circular value: Python's own text of it
        text = repr(value)
    return _cut(text)


def _cut(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _template_branch(error: Mapping[str, Any]) -> bool:
    """The `Tpl[...]` branch's error ('or a template'): not what a rendered value should be."""
    return any("_template_only" in str(part) for part in error.get("loc", ()))


def _fix(takes: str, template: Any, value: Any) -> str | None:
    match = _SINGLE.fullmatch(template) if isinstance(template, str) else None
    if match is None:
        return None
    expr = match.group(1)
    name = expr if _SIMPLE.fullmatch(expr) else f"({expr})"
    if takes == "text":
        if isinstance(value, ImageRef):
            return (
                f"to describe it, add a caption node with image: '{{{{ {expr} }}}}'; to mention "
                f"its path, write text around it: 'a picture at {{{{ {expr} }}}}'"
            )
        if isinstance(value, list | tuple):
            return (
                f"join it, '{{{{ {name} | join(\", \") }}}}', or take one item, "
                f"'{{{{ {name}[0] }}}}'"
            )
        if isinstance(value, dict):
            field = next(iter(value), "field")
            return (
                f"name the field you want, '{{{{ {name}.{field} }}}}', or write it as JSON, "
                f"'{{{{ {name} | json }}}}'"
            )
        if value is None:
            return None
        return f"convert it, '{{{{ {name} | string }}}}'"
    if isinstance(value, str) and "number" in takes and _NUMBER.fullmatch(value):
        return f"the template must render a number: convert it, '{{{{ {name} | int }}}}'"
    return None
