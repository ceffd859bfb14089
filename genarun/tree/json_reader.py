"""Read a JSON tree file into plain data, with the line of every value.

Strict JSON: the `json` module's own errors, in plain words, and besides them duplicate keys
and non-finite numbers (`NaN`, `Infinity`), which `json` accepts silently.
"""

from __future__ import annotations

import json
import math
import re
from bisect import bisect_right
from json.decoder import scanstring  # type: ignore[attr-defined]
from json.scanner import NUMBER_RE
from typing import Any, cast

from genarun.errors import TreeError
from genarun.tree.reader_common import EMPTY, MAX_DEPTH, PathKey, TreeFileReader

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_JSON_HINTS = {
    "Expecting property name enclosed in double quotes": (
        "JSON keys need double quotes, and a trailing comma before '}' is not allowed"
    ),
    "Expecting ',' delimiter": "a comma is missing between two items or keys",
    "Expecting ':' delimiter": "a key must be followed by ':' and its value",
    "Expecting value": "a value is missing here; trailing commas are not allowed in JSON",
    "Extra data": "a JSON file holds one top-level value; remove what follows it",
    "Unterminated string starting at": "close the string with '\"'",
    "Invalid control character at": "write line breaks and tabs inside strings as \\n and \\t",
    "Invalid \\escape": "a backslash in a JSON string must be doubled (\\\\)",
}


class JsonReader(TreeFileReader):
    """Strict JSON via the `json` module, then one walk that records the line of every value.

    `json.loads` gives exact syntax errors; the walk (which may assume valid input) finds
    positions, duplicate keys and non-finite numbers, which `json` itself does not report.
    """

    def __init__(self, text: str, name: str):
        super().__init__(text, name)
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line_at(self, offset: int) -> int:
        return bisect_right(self._line_starts, offset)

    def read(self) -> tuple[Any, dict[PathKey, int]]:
        if not self.text.strip():
            return EMPTY, self.lines
        try:
            # Numbers are read in the second pass, which reports one too long with its line.
            json.loads(self.text, parse_int=len)
        except json.JSONDecodeError as exc:
            hint = next((h for m, h in _JSON_HINTS.items() if exc.msg.startswith(m)), None)
            raise TreeError(
                self.problem(
                    f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                    exc.lineno,
                    hint=hint,
                )
            ) from None
        except RecursionError:
            raise self.too_deep(None) from None
        value, _ = self.value(self.skip(0), ())
        return self.result(value)

    def skip(self, offset: int) -> int:
        """The offset of the next non-whitespace character at or after `offset`."""
        match = _WHITESPACE.match(self.text, offset)
        return match.end() if match is not None else offset

    def value(self, offset: int, path: PathKey) -> tuple[Any, int]:
        """Parse the (already validated) value at `offset`; return it and the offset after it."""
        text = self.text
        if len(path) > MAX_DEPTH:
            raise self.too_deep(self.line_at(offset))
        self.lines.setdefault(path, self.line_at(offset))
        char = text[offset]
        if char == "{":
            return self.object(offset + 1, path)
        if char == "[":
            return self.array(offset + 1, path)
        if char == '"':
            return cast(tuple[Any, int], scanstring(text, offset + 1, True))
        for literal, constant in (("true", True), ("false", False), ("null", None)):
            if text.startswith(literal, offset):
                return constant, offset + len(literal)
        for literal in ("NaN", "Infinity", "-Infinity"):
            if text.startswith(literal, offset):
                self.report_non_finite(literal, self.line_at(offset))
                return None, offset + len(literal)
        match = NUMBER_RE.match(text, offset)
        assert match is not None, "json.loads accepted the text, so a number is here"
        integer, fraction, exponent = match.groups()
        if fraction or exponent:
            number = float(integer + (fraction or "") + (exponent or ""))
            if not math.isfinite(number):
                self.report_non_finite(match.group(), self.line_at(offset))
            return number, match.end()
        try:
            return int(integer), match.end()
        except ValueError:  # longer than Python's integer digit limit
            self.report_too_long(integer, self.line_at(offset))
            return 0, match.end()

    def object(self, offset: int, path: PathKey) -> tuple[dict[str, Any], int]:
        result: dict[str, Any] = {}
        key_lines: dict[str, int] = {}
        offset = self.skip(offset)
        if self.text[offset] == "}":
            return result, offset + 1
        while True:
            key_line = self.line_at(offset)
            key, offset = scanstring(self.text, offset + 1, True)
            if key in key_lines:
                self.report_duplicate(key, key_line, key_lines[key], path)
            key_lines[key] = key_line
            self.lines[(*path, key)] = key_line
            offset = self.skip(self.skip(offset) + 1)  # past ':'
            result[key], offset = self.value(offset, (*path, key))
            offset = self.skip(offset)
            if self.text[offset] == "}":
                return result, offset + 1
            offset = self.skip(offset + 1)  # past ','

    def array(self, offset: int, path: PathKey) -> tuple[list[Any], int]:
        result: list[Any] = []
        offset = self.skip(offset)
        if self.text[offset] == "]":
            return result, offset + 1
        while True:
            item, offset = self.value(offset, (*path, len(result)))
            result.append(item)
            offset = self.skip(offset)
            if self.text[offset] == "]":
                return result, offset + 1
            offset = self.skip(offset + 1)  # past ','
