"""Pydantic's validation errors of a tree or node, as located Problems in the user's words:
the field, the value given, what was expected and the fix."""

from __future__ import annotations

import re
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from genarun.errors import Problem, did_you_mean
from genarun.tree.load import Document

Loc = tuple[str | int, ...]


def pydantic_problems(
    exc: ValidationError,
    model: type[BaseModel],
    data: Any,
    loc: Loc,
    doc: Document,
    node: str | None,
) -> list[Problem]:
    """Pydantic's errors of validating `data` (found at `loc`) as `model`, as Problems."""
    file = str(doc.path)
    fields = {f.alias or name for name, f in model.model_fields.items()}
    problems = []
    # Union branches repeat the location with a type tag (e.g. 'int', 'function-after[...]'):
    # one mistake gives an error per branch, reported here as one message.
    by_loc: dict[Loc, list[Any]] = {}
    for err in exc.errors():
        clean = _place(err["loc"], data)
        by_loc.setdefault(clean, []).append(err)
    _drop_wrong_branches(by_loc)
    _drop_missing_misspelt(by_loc, model)
    for clean, errs in by_loc.items():
        if loc == () and len(clean) > 1 and clean[0] == "nodes":
            continue  # nodes are validated one by one with their kinds
        if loc and len(clean) > 1 and clean[0] == "children":
            continue  # children are validated with their own kinds
        line = doc.line((*loc, *clean))
        name = ".".join(str(p) for p in clean)
        err = next((e for e in errs if e["type"] in _BOUNDS), errs[0])
        hint = None
        expected = _expected(errs)
        if err["type"] == "extra_forbidden":
            msg = f"unknown field '{name}'"
            # A key inside a nested mapping (cache: {tll}) is judged against that mapping's
            # fields, not the node's.
            here = _fields_at(model, clean[:-1]) if len(clean) > 1 else fields
            if here is None:
                hint = None
            else:
                hint = did_you_mean(str(clean[-1]), here) or (
                    f"allowed fields: {', '.join(sorted(here))}"
                )
        elif err["type"] == "missing":
            msg = f"missing required field '{name}'"
        else:
            field_name = str(clean[-1]) if clean else ""
            bound = _BOUNDS.get(err["type"])
            if expected and name:
                expected = _FIELD_EXPECTED.get(field_name, expected)
                msg = f"field '{name}': expected {expected}, got {shown(err['input'])}"
            elif bound and name:
                words, key = bound
                msg = (
                    f"field '{name}': must be {words} {err['ctx'][key]}, got {shown(err['input'])}"
                )
            else:
                msg = (
                    f"field '{name}': {_clean_message(err['msg'])}"
                    if name
                    else _clean_message(err["msg"])
                )
            hint = _TYPE_HINTS.get((field_name, err["type"])) or _TYPE_HINTS.get(("", err["type"]))
            hint = hint or _quoted_value_hint(errs)
            literals = [e for e in errs if e["type"] == "literal_error"]
            if literals and isinstance(err["input"], str):
                options = re.findall(r"'([^']*)'", literals[0].get("ctx", {}).get("expected", ""))
                hint = hint or did_you_mean(err["input"], options)
        problems.append(Problem(msg, file, line, node, hint))
    return sorted(problems, key=lambda p: p.line or 0)


_BOUNDS = {
    "greater_than": ("more than", "gt"),
    "greater_than_equal": ("at least", "ge"),
    "less_than": ("less than", "lt"),
    "less_than_equal": ("at most", "le"),
}
# A field whose expected value reads better in words than by its types.
_FIELD_EXPECTED = {"when": "an expression such as 'index < 3', or true or false"}


# What a value of the wrong type should have been, by pydantic error type.
_EXPECTED = {
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "text",
    "dict_type": "a mapping",
    "list_type": "a list",
}


def _expected(errs: list[Any]) -> str | None:
    """'a whole number or a template such as {{ n }}' for the errors of one value's type
    (one per union branch); None when one of them is about something else."""
    wanted: list[str] = []
    for err in errs:
        tag = str(err["loc"][-1]) if err["loc"] else ""
        if "_template_only" in tag:  # Tpl[...]: the value may be a template instead
            what = "a template such as '{{ n }}'"
        elif err["type"] == "literal_error":
            what = err.get("ctx", {}).get("expected", "")  # "'text', 'json' or 'yaml'"
        elif err["type"] in _EXPECTED:
            what = _EXPECTED[err["type"]]
        else:
            return None
        if what and what not in wanted:
            wanted.append(what)
    return " or ".join(wanted) or None


def shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return (
        "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    )


# Fixes for values of the wrong shape, by (field, pydantic error type); "" is any field.
_TYPE_HINTS = {
    (
        "nodes",
        "list_type",
    ): "write each node as a list item under 'nodes:', starting with '- id: ...'",
    (
        "children",
        "list_type",
    ): "write each child as a list item under 'children:', starting with '- id: ...'",
    ("seed", "less_than_equal"): "seeds are stored as 64-bit integers",
    ("seed", "greater_than_equal"): "seeds are stored as 64-bit integers",
    ("", "dict_type"): "write it as 'name: value' lines indented under it",
    ("", "list_type"): "write a list: [a, b] or one '- item' line each",
}


def _place(loc: tuple[Any, ...], data: Any) -> Loc:
    """Where in `data` a pydantic error is: its location without the union branches' type
    tags ('int', 'function-after[...]'). A part that is a key or index of the data is a place
    even when it looks like a tag (an unknown key 'a[0]'); only the rest are judged by name."""
    out: list[str | int] = []
    current = data
    for part in loc:
        if (isinstance(current, dict) and part in current) or (
            isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        ):
            current = current[part]
        elif isinstance(part, str) and _is_type_tag(part):
            continue
        else:
            current = None  # a missing field: nothing below it is in the data
        out.append(part)
    return tuple(out)


def _quoted_value_hint(errs: list[Any]) -> str | None:
    """The fix for a number or boolean written as text ('3', "yes"), which is not converted."""
    types = {e["type"] for e in errs}
    value = errs[0]["input"]
    if not isinstance(value, str):
        return None
    if types & {"int_type", "float_type"} and re.fullmatch(
        r"\s*[-+]?[0-9.]+([eE][-+]?\d+)?\s*", value
    ):
        return f"write {value.strip()}, without quotes"
    if "bool_type" in types:
        word = value.strip().lower()
        if word in {"yes", "on", "y", "true", "1"}:
            return "write true, unquoted: yes and on are text in YAML 1.2"
        if word in {"no", "off", "n", "false", "0"}:
            return "write false, unquoted: no and off are text in YAML 1.2"
    return None


def _is_type_tag(part: str) -> bool:
    return (
        part in {"int", "float", "str", "bool", "dict[str,any]", "list[any]", "none"}
        or "[" in part
        or part.startswith(("function-", "literal", "constrained-"))
        # A union branch that is a model is tagged with its class name (DocumentsSpec); field
        # names are snake_case, and a key the data has is never judged a tag.
        or re.fullmatch(r"[A-Z][A-Za-z0-9]*", part) is not None
    )


def _drop_wrong_branches(by_loc: dict[Loc, list[Any]]) -> None:
    """A union field (`documents: [..] | {paths, ...}`) given a mapping with a mistake inside
    fails both branches: the list branch says 'expected a list' at the field, the mapping
    branch names the mistake below it. The branch that got inside is the one meant, so the
    type errors of the others at the field itself are dropped."""
    for loc in list(by_loc):
        deeper = any(len(o) > len(loc) and o[: len(loc)] == loc for o in by_loc)
        if deeper and all(e["type"].endswith("_type") for e in by_loc[loc]):
            del by_loc[loc]


def _drop_missing_misspelt(by_loc: dict[Loc, list[Any]], model: type[BaseModel]) -> None:
    """`promt:` for a required `prompt` is one mistake: the unknown field, whose did-you-mean
    names the missing one, says it all; a second 'missing required field' would send the
    reader looking for another mistake."""
    import difflib

    for loc, errs in list(by_loc.items()):
        if not loc or not any(e["type"] == "extra_forbidden" for e in errs):
            continue
        here = _fields_at(model, loc[:-1]) if len(loc) > 1 else None
        if here is None and len(loc) == 1:
            here = {f.alias or n for n, f in model.model_fields.items()}
        close = difflib.get_close_matches(str(loc[-1]), sorted(here or ()), n=1, cutoff=0.6)
        missing = (*loc[:-1], close[0]) if close else None
        if missing in by_loc and all(e["type"] == "missing" for e in by_loc[missing]):
            del by_loc[missing]


def _fields_at(model: type[BaseModel], path: Loc) -> set[str] | None:
    """The field names of the model found at `path` under `model` (None where the path does
    not lead to a model): what an unknown key there could have meant."""
    current: type[BaseModel] | None = model
    skip_key = False
    for part in path:
        if isinstance(part, int) or skip_key:
            skip_key = False
            continue
        if current is None:
            return None
        field = next(
            (f for n, f in current.model_fields.items() if part in (n, f.alias)),
            None,
        )
        if field is None:
            return None
        current, skip_key = _model_in(field.annotation)
    if current is None:
        return None
    return {f.alias or n for n, f in current.model_fields.items()}


def _model_in(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model an annotation holds (in an Optional, union, list or dict), and whether a
    mapping's key comes before it in a location."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin = typing.get_origin(annotation)
    for arg in typing.get_args(annotation):
        found, _ = _model_in(arg)
        if found is not None:
            return found, origin is dict
    return None, False


def _clean_message(msg: str) -> str:
    return msg.removeprefix("Value error, ")
