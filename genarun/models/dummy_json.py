"""Values that satisfy a JSON Schema, drawn deterministically from a seed: how the `dummy`
provider answers a `generate` with `schema:`, so trees that plan structured lists run end to end
with no model.

Strings are words from the dummy's vocabulary (titles read like titles), numbers respect their
bounds, arrays their item counts (as many as the first number in the prompt when the bounds
allow, else 3), objects give every required property and half of the others; enums, consts,
anyOf/oneOf, allOf, local $refs and string patterns (through Python's regex parser) are honoured.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Any

from genarun.errors import ModelError

_MAX_DEPTH = 12
_FORMATS = {
    "date": "2026-01-{day:02d}",
    "date-time": "2026-01-{day:02d}T12:00:00Z",
    "time": "12:{day:02d}:00Z",
    "email": "{word}@example.com",
    "uri": "https://example.com/{word}",
    "url": "https://example.com/{word}",
    "uuid": "00000000-0000-4000-8000-0000000000{day:02d}",
    "hostname": "{word}.example.com",
}


def schema_instance(
    schema: dict[str, Any], digest: bytes, words: list[str], count: int | None = None
) -> Any:
    """A value valid under `schema`, the same for the same digest; `count` is the preferred
    length of arrays."""
    rng = random.Random(int.from_bytes(hashlib.sha256(digest).digest()[:8], "little"))
    return _Maker(schema, rng, words, count).make(schema, 0)


class _Maker:
    def __init__(
        self, root: dict[str, Any], rng: random.Random, words: list[str], count: int | None
    ):
        self.root = root
        self.rng = rng
        self.words = words
        self.count = count

    def make(self, schema: Any, depth: int) -> Any:
        if schema is True or schema == {}:
            return self._words(2)
        if not isinstance(schema, dict) or depth > _MAX_DEPTH:
            raise ModelError("the dummy model cannot make a value for this schema (too deep)")
        if "$ref" in schema:
            return self.make(self._resolve(schema["$ref"]), depth + 1)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self.rng.choice(schema["enum"])
        if isinstance(schema.get("allOf"), list):
            merged = _merge([s for s in schema["allOf"] if isinstance(s, dict)])
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            return self.make(_merge([rest, merged]), depth + 1)
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                return self.make(self.rng.choice(options), depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = _implied_type(schema)
        maker = getattr(self, f"_{kind}", None)
        if maker is None:
            raise ModelError(f"the dummy model cannot make a value of type {kind!r}")
        return maker(schema, depth)

    def _resolve(self, ref: Any) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise ModelError(f"the dummy model follows only local $refs (#/...), not {ref!r}")
        target: Any = self.root
        for part in filter(None, ref[1:].split("/")):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise ModelError(f"$ref {ref!r} names nothing in the schema")
            target = target[part]
        return target

    def _words(self, count: int) -> str:
        return " ".join(self.rng.choice(self.words) for _ in range(count))

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        out: dict[str, Any] = {}
        for name, sub in properties.items():
            if name in required or self.rng.random() < 0.5:
                out[name] = self.make(sub, depth + 1)
        for name in required - out.keys():  # required but not described
            extra = schema.get("additionalProperties")
            out[name] = self.make(extra if isinstance(extra, dict) else {}, depth + 1)
        return out

    def _array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        low = int(schema.get("minItems", 0))
        high = int(schema.get("maxItems", max(low, 20)))
        prefix = schema.get("prefixItems") or []
        wanted = self.count if self.count is not None else 3
        count = min(max(wanted, low, len(prefix) if low else 0), high)
        items = schema.get("items", {})
        unique = bool(schema.get("uniqueItems"))
        out: list[Any] = []
        seen: set[str] = set()
        for i in range(count):
            sub = prefix[i] if i < len(prefix) else items
            for _ in range(20 if unique else 1):  # draw again for a value not yet in the list
                value = self.make(sub, depth + 1)
                if repr(value) not in seen:
                    break
            else:
                if len(out) >= low:
                    break  # fewer, distinct items: the schema allows it
                raise ModelError("the dummy model found too few distinct items for uniqueItems")
            seen.add(repr(value))
            out.append(value)
        return out

    def _string(self, schema: dict[str, Any], depth: int) -> str:
        low = int(schema.get("minLength", 0))
        high = int(schema.get("maxLength", max(low, 200)))
        fmt = schema.get("format")
        if isinstance(schema.get("pattern"), str):
            text = _from_pattern(schema["pattern"], self.rng)
        elif fmt in _FORMATS:
            text = _FORMATS[fmt].format(
                day=self.rng.randint(1, 28), word=self.rng.choice(self.words)
            )
        else:
            text = self._words(3).title()
        while len(text) < low:
            text += " " + self.rng.choice(self.words)
        return text[:high].rstrip() if len(text[:high].rstrip()) >= low else text[:high]

    def _integer(self, schema: dict[str, Any], depth: int) -> int:
        low, high = _bounds(schema, 0, 100, step=1)
        step = schema.get("multipleOf")
        if isinstance(step, int) and step > 0:
            first = -(-int(low) // step) * step
            choices = range(first, int(high) + 1, step)
            if not choices:
                raise ModelError("the dummy model found no integer within the schema's bounds")
            return self.rng.choice(choices)
        return self.rng.randint(int(-(-low // 1)), int(high // 1))

    def _number(self, schema: dict[str, Any], depth: int) -> float:
        low, high = _bounds(schema, 0.0, 100.0, step=1e-6)
        return round(self.rng.uniform(low, high), 3) if high - low > 0.002 else low

    def _boolean(self, schema: dict[str, Any], depth: int) -> bool:
        return self.rng.random() < 0.5

    def _null(self, schema: dict[str, Any], depth: int) -> None:
        return None


def _bounds(schema: dict[str, Any], low: float, high: float, *, step: float) -> tuple[float, float]:
    if "minimum" in schema:
        low = schema["minimum"]
    if "exclusiveMinimum" in schema and isinstance(schema["exclusiveMinimum"], int | float):
        low = schema["exclusiveMinimum"] + step
    if "maximum" in schema:
        high = schema["maximum"]
    if "exclusiveMaximum" in schema and isinstance(schema["exclusiveMaximum"], int | float):
        high = schema["exclusiveMaximum"] - step
    if "minimum" in schema and "maximum" not in schema and "exclusiveMaximum" not in schema:
        high = low + 100
    if ("maximum" in schema or "exclusiveMaximum" in schema) and not (
        "minimum" in schema or "exclusiveMinimum" in schema
    ):
        low = min(low, high - 100)
    if low > high:
        raise ModelError("the dummy model found no number within the schema's bounds")
    return low, high


def _implied_type(schema: dict[str, Any]) -> str:
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if {"minimum", "maximum", "multipleOf"} & schema.keys():
        return "number"
    return "string"


def _merge(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for schema in schemas:
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                out["properties"] = {**out.get("properties", {}), **value}
            elif key == "required" and isinstance(value, list):
                out["required"] = [*out.get("required", []), *value]
            else:
                out[key] = value
    return out


def _from_pattern(pattern: str, rng: random.Random) -> str:
    """A string that `re.search(pattern, ...)` matches, built from the regex's parse tree."""
    import re._parser as parser  # Python's own regex parser: the same grammar `re` reads

    try:
        tree = parser.parse(pattern)
    except re.error as exc:
        raise ModelError(f"schema pattern {pattern!r} is not a regular expression: {exc}") from None
    text = _emit(tree, rng)
    if not re.search(pattern, text):
        raise ModelError(f"the dummy model cannot make a string matching {pattern!r}")
    return text


def _emit(items: Any, rng: random.Random) -> str:
    import re._constants as c

    out: list[str] = []
    for op, arg in items:
        if op is c.LITERAL:
            out.append(chr(arg))
        elif op is c.NOT_LITERAL:
            out.append("a" if arg != ord("a") else "b")
        elif op is c.ANY:
            out.append("x")
        elif op is c.IN:
            out.append(_from_class(arg, rng))
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)):
            low, high, sub = arg
            high = low + 3 if high is c.MAXREPEAT else high
            out.extend(
                _emit(sub, rng) for _ in range(rng.randint(low, max(low, min(high, low + 3))))
            )
        elif op is c.SUBPATTERN:
            out.append(_emit(arg[-1], rng))
        elif op is c.BRANCH:
            out.append(_emit(rng.choice(arg[1]), rng))
        elif op is c.CATEGORY:
            out.append(_from_category(arg))
        elif op in (c.AT, c.ASSERT, c.ASSERT_NOT):
            continue  # anchors and lookarounds add no characters
        else:
            raise ModelError(f"the dummy model cannot make strings for regex element {op}")
    return "".join(out)


def _from_class(items: Any, rng: random.Random) -> str:
    import re._constants as c

    if items and items[0][0] is c.NEGATE:
        return "x" if not _in_class("x", items[1:]) else "_"
    op, arg = rng.choice(items)
    if op is c.LITERAL:
        return chr(arg)
    if op is c.RANGE:
        return chr(rng.randint(arg[0], arg[1]))
    if op is c.CATEGORY:
        return _from_category(arg)
    return "x"


def _in_class(char: str, items: Any) -> bool:
    import re._constants as c

    for op, arg in items:
        if (op is c.LITERAL and chr(arg) == char) or (
            op is c.RANGE and arg[0] <= ord(char) <= arg[1]
        ):
            return True
    return False


def _from_category(category: Any) -> str:
    name = str(category)
    if "NOT_DIGIT" in name:
        return "a"
    if "DIGIT" in name:
        return "7"
    if "NOT_SPACE" in name or "NOT_WORD" in name:
        return "-" if "WORD" in name else "a"
    if "SPACE" in name:
        return " "
    return "a"  # WORD
