"""Read YAML and JSON tree files into plain Python data, remembering each value's line.

Both formats produce only JSON types (dict, list, str, int, float, bool, None), so a tree means
the same whichever format it is written in. YAML plain scalars follow the YAML 1.2 core schema
rather than PyYAML's YAML 1.1 rules: `no`, `on` and `2024-01-01` stay text, `010` is ten, and
`1:30` is not sixty-base arithmetic. Mapping keys are always text, as written. Duplicate keys,
non-finite numbers and exotic tags are errors, reported with their line, never silently dropped.
"""

from __future__ import annotations

import json
import math
import re
from bisect import bisect_right
from dataclasses import dataclass, field
from json.decoder import scanstring
from json.scanner import NUMBER_RE
from pathlib import Path
from typing import Any, Literal

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from genarun.errors import Problem, TreeError

__all__ = ["Document", "PathKey", "load_document", "load_text"]

PathKey = tuple[str | int, ...]


@dataclass
class Document:
    """A loaded tree file: its plain data, its source text, and the line of every value."""

    path: Path
    data: Any
    text: str
    lines: dict[PathKey, int] = field(default_factory=dict, repr=False)

    def line(self, path: PathKey) -> int | None:
        """The 1-based line of the key or item at `path`, else of its nearest existing ancestor."""
        key = tuple(path)
        while True:
            found = self.lines.get(key)
            if found is not None or not key:
                return found
            key = key[:-1]


def load_document(path: Path) -> Document:
    """Load a tree file (.json as JSON, anything else as YAML); its top level must be a mapping."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TreeError(
            Problem(f"tree file not found: {path}", file=str(path), hint="check the path")
        ) from None
    except IsADirectoryError:
        raise TreeError(
            Problem(f"{path} is a directory, not a tree file", file=str(path))
        ) from None
    except OSError as exc:
        raise TreeError(Problem(f"cannot read {path}: {exc.strerror}", file=str(path))) from None
    try:
        # utf-8-sig drops a byte-order mark, which JSON would otherwise reject.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise TreeError(
            Problem(
                f"invalid UTF-8 at byte {exc.start}",
                file=str(path),
                line=line,
                hint="save the file as UTF-8",
            )
        ) from None
    fmt: Literal["yaml", "json"] = "json" if path.suffix.lower() == ".json" else "yaml"
    return _load(text, path, fmt, require_mapping=True)


def load_text(
    text: str, name: str, fmt: Literal["yaml", "json"], *, require_mapping: bool = True
) -> Document:
    """Load tree text named `name` (for messages); with require_mapping=False any value loads."""
    if fmt not in ("yaml", "json"):
        raise ValueError(f"fmt must be 'yaml' or 'json', not {fmt!r}")
    return _load(text, Path(name), fmt, require_mapping=require_mapping)


def _load(
    text: str, path: Path, fmt: Literal["yaml", "json"], *, require_mapping: bool
) -> Document:
    name = str(path)
    if fmt == "json":
        data, lines = _JsonReader(text, name).read()
    else:
        data, lines = _YamlReader(text, name).read()
    if require_mapping:
        if data is _EMPTY:
            raise TreeError(
                Problem(
                    "the file is empty",
                    file=name,
                    hint="a tree starts with 'genarun: 1', 'name:' and 'nodes:'",
                )
            )
        if not isinstance(data, dict):
            raise TreeError(
                Problem(
                    f"the top level must be a mapping of keys to values, not {_kind(data)}",
                    file=name,
                    line=lines.get(()),
                    hint="a tree starts with 'genarun: 1', 'name:' and 'nodes:'",
                )
            )
    elif data is _EMPTY:
        data = None
    return Document(path=path, data=data, text=text, lines=lines)


class _Empty:
    """Marks a document with no value at all, which differs from an explicit null."""


_EMPTY: Any = _Empty()


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        dict: "a mapping",
        list: "a list",
        str: "text",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


def _non_finite(token: str, name: str, line: int) -> Problem:
    return Problem(
        f"{token!r} is not a finite number",
        file=name,
        line=line,
        hint="quote it if you mean text",
    )


def _duplicate(key: str, name: str, line: int, first: int) -> Problem:
    return Problem(
        f"duplicate key '{key}' (first at line {first}, again at line {line})",
        file=name,
        line=line,
        hint="a key may appear once per mapping; remove or rename one",
    )


# ---------------------------------------------------------------------------------------- JSON


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


class _JsonReader:
    """Strict JSON via the `json` module, then one walk that records the line of every value.

    `json.loads` gives exact syntax errors; the walk (which may assume valid input) finds
    positions, duplicate keys and non-finite numbers, which `json` itself does not report.
    """

    def __init__(self, text: str, name: str):
        self.text = text
        self.name = name
        self.lines: dict[PathKey, int] = {}
        self.problems: list[Problem] = []
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line_at(self, offset: int) -> int:
        return bisect_right(self._line_starts, offset)

    def read(self) -> tuple[Any, dict[PathKey, int]]:
        if not self.text.strip():
            return _EMPTY, self.lines
        try:
            json.loads(self.text)
        except json.JSONDecodeError as exc:
            hint = next((h for m, h in _JSON_HINTS.items() if exc.msg.startswith(m)), None)
            raise TreeError(
                Problem(
                    f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                    file=self.name,
                    line=exc.lineno,
                    hint=hint,
                )
            ) from None
        except RecursionError:
            raise TreeError(Problem("the JSON is nested too deeply", file=self.name)) from None
        except ValueError as exc:  # e.g. an integer longer than Python's digit limit
            raise TreeError(Problem(f"invalid JSON: {exc}", file=self.name)) from None
        try:
            value, _ = self.value(self.skip(0), ())
        except RecursionError:
            raise TreeError(Problem("the JSON is nested too deeply", file=self.name)) from None
        if self.problems:
            raise TreeError(self.problems)
        return value, self.lines

    def skip(self, offset: int) -> int:
        """The offset of the next non-whitespace character at or after `offset`."""
        match = _WHITESPACE.match(self.text, offset)
        return match.end() if match is not None else offset

    def value(self, offset: int, path: PathKey) -> tuple[Any, int]:
        """Parse the (already validated) value at `offset`; return it and the offset after it."""
        text = self.text
        self.lines.setdefault(path, self.line_at(offset))
        char = text[offset]
        if char == "{":
            return self.object(offset + 1, path)
        if char == "[":
            return self.array(offset + 1, path)
        if char == '"':
            return scanstring(text, offset + 1, True)
        for literal, constant in (("true", True), ("false", False), ("null", None)):
            if text.startswith(literal, offset):
                return constant, offset + len(literal)
        for literal in ("NaN", "Infinity", "-Infinity"):
            if text.startswith(literal, offset):
                self.problems.append(_non_finite(literal, self.name, self.line_at(offset)))
                return None, offset + len(literal)
        match = NUMBER_RE.match(text, offset)
        assert match is not None, "json.loads accepted the text, so a number is here"
        integer, fraction, exponent = match.groups()
        if fraction or exponent:
            number = float(integer + (fraction or "") + (exponent or ""))
            if not math.isfinite(number):
                self.problems.append(_non_finite(match.group(), self.name, self.line_at(offset)))
            return number, match.end()
        return int(integer), match.end()

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
                self.problems.append(_duplicate(key, self.name, key_line, key_lines[key]))
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


# ---------------------------------------------------------------------------------------- YAML


# YAML 1.2 core schema, for plain (unquoted, untagged) scalars.
_NULL = re.compile(r"~|null|Null|NULL|")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?[0-9]+")
_OCT = re.compile(r"0o[0-7]+")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)")
_NAN = re.compile(r"\.(nan|NaN|NAN)")

_PLAIN = "genarun:plain"  # marks a scalar whose type the core schema decides
_TAG = "tag:yaml.org,2002:"
_MAX_VALUES = 1_000_000  # aliases can expand exponentially ("billion laughs"); stop early

_YAML_HINTS = {
    "found character '\\t' that cannot start any token": "indent with spaces, not tabs",
    "mapping values are not allowed here": (
        "quote a value that contains ': ', or check the indentation of this line"
    ),
    "could not find expected ':'": "a key needs ':' after it; check this line's indentation",
    "found undefined alias": "define the anchor (&name) before using it (*name)",
    "expected a single document in the stream": "a tree file holds one document; remove '---'",
    "found unexpected end of stream": "close the quote or bracket that starts here",
    "did not find expected node content": (
        "a value is missing; to start text with '[' or '{' (a random pick), quote it"
    ),
}


class _AliasUse:
    """An alias (`*name`) as used, so lines point at the use rather than the anchor."""

    __slots__ = ("line", "node")

    def __init__(self, node: Node, line: int):
        self.node = node
        self.line = line


class _Loader(yaml.SafeLoader):
    """Composes a node graph (no construction) and keeps alias uses and plain scalars apart."""

    def resolve(self, kind: type[Node], value: str | None, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode and implicit[0]:
            return _PLAIN
        return super().resolve(kind, value, implicit)  # type: ignore[no-any-return]

    def compose_node(self, parent: Node | None, index: Any) -> Any:
        if self.check_event(AliasEvent):
            line = self.peek_event().start_mark.line + 1
            return _AliasUse(super().compose_node(parent, index), line)
        return super().compose_node(parent, index)


class _YamlReader:
    """Compose YAML into nodes with PyYAML, then convert them to JSON types with their lines."""

    def __init__(self, text: str, name: str):
        self.text = text
        self.name = name
        self.lines: dict[PathKey, int] = {}
        self.problems: list[Problem] = []
        self._active: set[int] = set()  # nodes being converted, to catch recursive aliases
        self._count = 0

    def read(self) -> tuple[Any, dict[PathKey, int]]:
        loader: _Loader | None = None
        try:
            loader = _Loader(self.text)  # the reader checks every character up front
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            raise TreeError(self.syntax_problem(exc)) from None
        except yaml.YAMLError as exc:  # a ReaderError: a character YAML does not allow
            position = getattr(exc, "position", None)
            line = self.text.count("\n", 0, position) + 1 if position is not None else None
            raise TreeError(
                Problem(f"YAML cannot read this file: {exc}", file=self.name, line=line)
            ) from None
        except RecursionError:
            raise TreeError(Problem("the YAML is nested too deeply", file=self.name)) from None
        finally:
            if loader is not None:
                loader.dispose()
        if root is None or (isinstance(root, ScalarNode) and root.tag == _PLAIN and not root.value):
            return _EMPTY, self.lines  # no document, or a bare '---'

        try:
            value = self.convert(root, (), root.start_mark.line + 1)
        except RecursionError:
            raise TreeError(Problem("the YAML is nested too deeply", file=self.name)) from None
        if self.problems:
            raise TreeError(self.problems)
        return value, self.lines

    def syntax_problem(self, exc: yaml.MarkedYAMLError) -> Problem:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        where = f" at line {line}, column {mark.column + 1}" if mark is not None else ""
        message = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            context = exc.context
            if exc.context_mark is not None and exc.context_mark is not mark:
                context += f" at line {exc.context_mark.line + 1}"
            # Scanner and parser contexts say what was being read ("while scanning a quoted
            # scalar"); composer contexts state the problem itself ("found duplicate anchor").
            if context.startswith("while "):
                message = f"{exc.problem} ({context})"
            else:
                message = f"{context}, {exc.problem}"
        text = f"{exc.problem or ''} {exc.context or ''}"
        hint = next((h for m, h in _YAML_HINTS.items() if m in text), None)
        return Problem(f"YAML syntax error{where}: {message}", file=self.name, line=line, hint=hint)

    def convert(self, item: Node | _AliasUse, path: PathKey, line: int) -> Any:
        """Convert one node (or alias use) at `path`, whose key or item starts at `line`."""
        self.lines[path] = line
        node = item.node if isinstance(item, _AliasUse) else item
        self._count += 1
        if self._count > _MAX_VALUES:
            raise TreeError(
                Problem(
                    f"aliases expand to more than {_MAX_VALUES:,} values",
                    file=self.name,
                    line=line,
                    hint="use fewer nested aliases",
                )
            )
        if id(node) in self._active:
            self.problems.append(
                Problem(
                    "an alias refers to a value that contains it",
                    file=self.name,
                    line=line,
                    hint="a value cannot include itself",
                )
            )
            return None
        if isinstance(node, ScalarNode):
            return self.scalar(node, line)
        self._active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return self.sequence(node, path)
            assert isinstance(node, MappingNode)
            return self.mapping(node, path)
        finally:
            self._active.discard(id(node))

    def unsupported_tag(self, tag: str, line: int) -> None:
        shown = "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag
        self.problems.append(
            Problem(
                f"unsupported YAML tag '{shown}'",
                file=self.name,
                line=line,
                hint="trees hold plain text, numbers, booleans, lists and mappings; remove the tag",
            )
        )

    def scalar(self, node: ScalarNode, line: int) -> Any:
        value: str = node.value
        tag: str = node.tag
        if tag == _PLAIN:
            return self.plain(value, line)
        if tag in (_TAG + "str", _TAG + "timestamp"):
            return value  # a date stays text: JSON has no date type
        if tag == _TAG + "null":
            return None
        if tag == _TAG + "bool":
            if value.lower() in ("true", "false"):
                return value.lower() == "true"
        elif tag == _TAG + "float":
            number = self.number(value, line)
            if number is not None:
                return float(number)
        elif tag == _TAG + "int":
            number = self.number(value, line)
            if isinstance(number, int):
                return number
        else:
            self.unsupported_tag(tag, line)
            return None
        self.problems.append(
            Problem(
                f"{value!r} is not a valid {tag[len(_TAG) :]}",
                file=self.name,
                line=line,
                hint="remove the tag, or fix the value",
            )
        )
        return None

    def plain(self, value: str, line: int) -> Any:
        if _NULL.fullmatch(value):
            return None
        if value in _BOOL:
            return _BOOL[value]
        number = self.number(value, line)
        return value if number is None else number

    def number(self, value: str, line: int) -> int | float | None:
        """The number a core-schema numeric scalar denotes, or None if it is not one."""
        if _INT.fullmatch(value):
            try:
                return int(value)
            except ValueError:  # longer than Python's integer digit limit
                self.problems.append(
                    Problem("number too long", file=self.name, line=line, hint="quote it")
                )
                return 0
        if _OCT.fullmatch(value):
            return int(value[2:], 8)
        if _HEX.fullmatch(value):
            return int(value[2:], 16)
        if _INF.fullmatch(value) or _NAN.fullmatch(value):
            self.problems.append(_non_finite(value, self.name, line))
            return math.nan
        if _FLOAT.fullmatch(value):
            number = float(value)
            if not math.isfinite(number):  # overflow, like 1e400
                self.problems.append(_non_finite(value, self.name, line))
            return number
        return None

    def sequence(self, node: SequenceNode, path: PathKey) -> list[Any]:
        if node.tag != _TAG + "seq":
            self.unsupported_tag(node.tag, node.start_mark.line + 1)
        return [
            self.convert(item, (*path, index), _line_of(item))
            for index, item in enumerate(node.value)
        ]

    def mapping(self, node: MappingNode, path: PathKey) -> dict[str, Any]:
        if node.tag != _TAG + "map":
            self.unsupported_tag(node.tag, node.start_mark.line + 1)
        result: dict[str, Any] = {}
        explicit: dict[str, int] = {}
        merges: list[tuple[Node | _AliasUse, int]] = []
        entries: list[tuple[str, Node | _AliasUse, int]] = []
        for key_item, value_item in node.value:
            key_node = key_item.node if isinstance(key_item, _AliasUse) else key_item
            key_line = _line_of(key_item)
            if not isinstance(key_node, ScalarNode):
                self.problems.append(
                    Problem(
                        "a mapping key must be text, not a list or mapping",
                        file=self.name,
                        line=key_line,
                        hint="quote a value that starts with '{{' or '[' (a template or a pick)",
                    )
                )
                continue
            key: str = key_node.value
            if key == "<<" and key_node.tag == _PLAIN and not isinstance(key_item, _AliasUse):
                merges.append((value_item, key_line))
                continue
            if key in explicit:
                self.problems.append(_duplicate(key, self.name, key_line, explicit[key]))
            explicit[key] = key_line
            entries.append((key, value_item, key_line))
        for value_item, merge_line in merges:
            self.merge(value_item, merge_line, path, explicit, result)
        for key, value_item, key_line in entries:
            result[key] = self.convert(value_item, (*path, key), key_line)
        return result

    def merge(
        self,
        item: Node | _AliasUse,
        line: int,
        path: PathKey,
        explicit: dict[str, int],
        result: dict[str, Any],
    ) -> None:
        """Apply a YAML merge key (`<<: *base`): keys not written explicitly come from base."""
        node = item.node if isinstance(item, _AliasUse) else item
        sources = node.value if isinstance(node, SequenceNode) else [item]
        for source in sources:
            source_node = source.node if isinstance(source, _AliasUse) else source
            if not isinstance(source_node, MappingNode):
                self.problems.append(
                    Problem(
                        "'<<' merges a mapping or a list of mappings",
                        file=self.name,
                        line=_line_of(source),
                        hint="write '<<: *anchor' where the anchor names a mapping",
                    )
                )
                continue
            # Convert into a scratch index so overridden keys leave no stale lines behind.
            outer = self.lines
            self.lines = {}
            try:
                merged = self.convert(source, path, line)
            finally:
                scratch, self.lines = self.lines, outer
            if not isinstance(merged, dict):
                continue  # a recursive alias, already reported
            depth = len(path)
            for key, value in merged.items():
                if key in explicit or key in result:
                    continue  # explicit keys win, then earlier merge sources
                result[key] = value
                for sub_path, sub_line in scratch.items():
                    if len(sub_path) > depth and sub_path[depth] == key:
                        self.lines[sub_path] = sub_line


def _line_of(item: Node | _AliasUse) -> int:
    if isinstance(item, _AliasUse):
        return item.line
    return item.start_mark.line + 1  # type: ignore[no-any-return]
