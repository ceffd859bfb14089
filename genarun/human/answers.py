"""What a human step accepts: the answer's JSON Schema, derived from `ask` and `options`.

The schema is computed once, when the request is made, and stored with it (pinned): the CLI,
the webhook and the page all validate against the same stored schema, and a resume reads the
answer back without rendering anything again.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

ASKS = ("choice", "multi", "text", "number", "best", "approve")
ON_TIMEOUT = ("default", "fail", "skip")


class AnswerInvalid(ValueError):
    """An answer the request's schema refuses; the message lists what is accepted."""


@dataclass(frozen=True)
class Question:
    """A rendered, pinned question: everything a person needs to answer it."""

    ask: str
    question: str
    options: list[Any] | None
    images: list[Any] | None
    schema: dict[str, Any]


def answer_schema(ask: str, options: Sequence[Any] | None, custom: dict[str, Any] | None) -> dict:
    """The JSON Schema an answer to `ask` over `options` must satisfy; raises ValueError saying
    what is wrong with the question itself (no options for a choice, say)."""
    if custom is not None:
        if ask != "text":
            raise ValueError(f"schema: a free-form JSON answer goes with ask: text, not ask: {ask}")
        _check_schema(custom)
        return custom
    if ask == "text":
        return {"type": "string"}
    if ask == "number":
        return {"type": "number"}
    if ask == "approve":
        return {"type": "boolean"}
    if ask in ("choice", "multi"):
        if not options:
            raise ValueError(
                f"ask: {ask} needs options: a list of choices, or an upstream output that is one"
            )
        choices = _json_values(options)
        if ask == "choice":
            return {"enum": choices}
        return {"type": "array", "items": {"enum": choices}, "uniqueItems": True}
    if ask == "best":
        if not options:
            raise ValueError(
                "ask: best needs options: the list to pick from (an upstream foreach's outputs, "
                "such as options: '{{ cover }}')"
            )
        return {"type": "integer", "minimum": 0, "maximum": len(options) - 1}
    raise ValueError(f"unknown ask '{ask}' (one of {', '.join(ASKS)})")


def _json_values(options: Sequence[Any]) -> list[Any]:
    """The options as JSON values (images become their paths), each once."""
    values: list[Any] = []
    for option in options:
        value = json.loads(json.dumps(option, default=str))
        if value in values:
            raise ValueError(f"options: {value!r} is given twice; each choice must be distinct")
        values.append(value)
    return values


def _check_schema(schema: dict[str, Any]) -> None:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"schema: not a valid JSON Schema: {exc.message}") from None


def validate_answer(value: Any, schema: dict[str, Any]) -> None:
    """Raise AnswerInvalid, naming the reason and what is accepted, unless `value` fits."""
    from jsonschema import Draft202012Validator

    if isinstance(value, float) and not math.isfinite(value):
        raise AnswerInvalid(f"{value} is not a number a person can answer; {accepted(schema)}")
    errors = sorted(Draft202012Validator(schema).iter_errors(value), key=lambda e: e.path)
    if errors:
        error = errors[0]
        where = "".join(f"[{p!r}]" for p in error.absolute_path)
        shown = json.dumps(value, default=str)[:80]
        reason = error.message if len(error.message) < 200 else error.message[:200] + "..."
        raise AnswerInvalid(
            f"{shown}{' at ' + where if where else ''}: {reason}; {accepted(schema)}"
        )


def accepted(schema: dict[str, Any]) -> str:
    """What an answer may be, in words."""
    if "enum" in schema:
        return "accepted: " + ", ".join(json.dumps(v) for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array" and "enum" in schema.get("items", {}):
        values = ", ".join(json.dumps(v) for v in schema["items"]["enum"])
        return f"accepted: a list of distinct values among {values}"
    if kind == "integer" and "maximum" in schema:
        return f"accepted: the number of the best item, {schema['minimum']} to {schema['maximum']}"
    if kind == "boolean":
        return "accepted: true (approve) or false (reject)"
    if kind == "number":
        return "accepted: a number"
    if kind == "string":
        return "accepted: any text"
    return "accepted: JSON matching the schema " + json.dumps(schema)[:300]


def typed_forms(schema: dict[str, Any]) -> str:
    """How a value may be typed (read_cli_value reads these), for a typed answer's error; ""
    where nothing more than `accepted` needs saying."""
    if isinstance(schema.get("enum"), list):
        return (
            f"; or type the number genarun inbox shows beside one, 0 to {len(schema['enum']) - 1}"
        )
    if schema.get("type") == "array" and isinstance(schema.get("items", {}).get("enum"), list):
        return "; type several as `a, b` or `[a, b]`, or by the numbers genarun inbox shows: `0, 2`"
    return ""


def read_cli_value(text: str, schema: dict[str, Any]) -> Any:
    """A value typed on the command line: the text itself when the schema takes it as written
    (a choice named "1"), else the text read as YAML/JSON (numbers, true/false, lists)."""
    from jsonschema import Draft202012Validator

    if Draft202012Validator(schema).is_valid(text):
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if schema.get("type") == "boolean" and not isinstance(value, bool):
        # YAML reads `yes`/`no`/`on`/`off` as booleans already; the words are listed here so
        # that the error names every one the command line takes, not only true/false.
        word = text.strip().lower()
        if word not in YES_NO_WORDS:
            raise AnswerInvalid(
                f"{json.dumps(text)[:80]} is not a yes/no answer; accepted: "
                + " or ".join(
                    ", ".join(w for w, v in YES_NO_WORDS.items() if v is flag)
                    + f" (to {'approve' if flag else 'reject'})"
                    for flag in (True, False)
                )
            )
        return YES_NO_WORDS[word]
    return _by_shown_number(text, value, schema)


def _by_shown_number(text: str, value: Any, schema: dict[str, Any]) -> Any:
    """A choice given by the number `genarun inbox` shows beside it (`1` for its second
    option), and several given as `a, b`, `[0, 2]` or one value: what people type first.
    An option that is itself the value typed wins (options 1, 2, 3: `1` is the option 1)."""

    def option(item: Any, options: list[Any]) -> Any:
        numbered = isinstance(item, int) and not isinstance(item, bool)
        if numbered and item not in options and 0 <= item < len(options):
            return options[item]
        return item

    if isinstance(schema.get("enum"), list):
        return option(value, schema["enum"])
    items = schema.get("items", {})
    if schema.get("type") == "array" and isinstance(items.get("enum"), list):
        options = items["enum"]
        if isinstance(value, str) and "," in value and value not in options:
            value = [part.strip() for part in text.split(",") if part.strip()]
            value = [option(read_cli_value(part, items), options) for part in value]
        elif not isinstance(value, list):
            value = [value]  # one of several
        return [option(item, options) for item in value]
    return value


# What `genarun answer` (and the pages' text fields) take for an approve step, any case.
YES_NO_WORDS = {
    "true": True,
    "yes": True,
    "y": True,
    "on": True,
    "approve": True,
    "approved": True,
    "false": False,
    "no": False,
    "n": False,
    "off": False,
    "reject": False,
    "rejected": False,
}


def output_of(ask: str, options: list[Any] | None, answer: Any) -> Any:
    """The node's output for a validated answer (best: the chosen item itself)."""
    if ask == "best" and options is not None:
        return options[answer]
    return answer


def tally(ask: str, options: list[Any] | None, answers: Sequence[Any]) -> dict[str, Any]:
    """A poll's result: votes per option (in the options' order), the winner (most votes; a tie
    goes to the option listed first, or voted first) and how many answered."""
    counts: dict[str, int] = {}
    first_value: dict[str, Any] = {}
    if ask in ("choice", "multi") and options:
        for option in options:
            counts[_key(option)] = 0
            first_value[_key(option)] = option
    if ask == "best" and options:
        for index in range(len(options)):
            counts[str(index)] = 0
            first_value[str(index)] = index
    if ask == "approve":
        counts, first_value = {"true": 0, "false": 0}, {"true": True, "false": False}
    for answer in answers:
        for value in answer if ask == "multi" else [answer]:
            key = _key(value)
            first_value.setdefault(key, value)
            counts[key] = counts.get(key, 0) + 1
    winner = None
    if answers:
        best = max(counts.values())
        key = next(k for k, n in counts.items() if n == best)
        winner = output_of(ask, options, first_value[key])
    return {"winner": winner, "tally": counts, "answers": len(answers)}


def _key(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)?\s*")
_UNIT = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> float:
    """Seconds of a duration: a number of seconds, or text such as 90s, 30m, 2h, 3d, 1w."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0 or not math.isfinite(value):
            raise ValueError(f"a duration must be positive, not {value}")
        return float(value)
    if isinstance(value, str):
        found = _DURATION.fullmatch(value)
        if found and float(found.group(1)) > 0:
            return float(found.group(1)) * _UNIT[found.group(2)]
    raise ValueError(f"'{value}' is not a duration: write seconds (90) or 90s, 30m, 2h, 3d, 1w")
