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
from yaml.tokens import ScalarToken

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
                    line=1,
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
        hint="a key may appear once per mapping; remove or rename one, or if it belongs to "
        "another item, fix its indentation",
    )


def _name_nodes(data: Any, duplicates: list[tuple[Problem, PathKey]]) -> None:
    """Name the tree node each duplicate key is in, once the whole file is read."""
    for problem, path in duplicates:
        current, node_id, i, expected = data, None, 0, "nodes"
        # Only the tree's own structure (nodes: [..., children: [...]]) holds nodes.
        while i + 1 < len(path) and path[i] == expected and isinstance(path[i + 1], int):
            try:
                current = current[path[i]][path[i + 1]]
            except (KeyError, IndexError, TypeError):
                break
            if not isinstance(current, dict):
                break
            node_id = current["id"] if isinstance(current.get("id"), str) else f"#{path[i + 1] + 1}"
            expected, i = "children", i + 2
        problem.node = node_id


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
        self.duplicates: list[tuple[Problem, PathKey]] = []
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
            _name_nodes(value, self.duplicates)
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
                problem = _duplicate(key, self.name, key_line, key_lines[key])
                self.problems.append(problem)
                self.duplicates.append((problem, path))
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


_QUOTE_INSIDE = (
    "inside \"...\" write \\\" for a quote, inside '...' write '' for an apostrophe, "
    "or use the other kind of quotes around the value"
)
_FOUND_WORDS = {
    "'<scalar>'": "text",
    "'<block sequence start>'": "a list item",
    "'<block mapping start>'": "a mapping",
    "'<block end>'": "the end of a block",
    "'<stream end>'": "the end of the file",
    "'<flow mapping start>'": "'{'",
    "'<flow sequence start>'": "'['",
    "'?'": "a key",
    "'-'": "a list item",
}


def _found_words(problem: str) -> str:
    """`found '<scalar>'` in plain words: what PyYAML found where it expected something else."""
    match = re.search(r"but (?:found|got) (.+)$", problem)
    found = match.group(1) if match else "something else"
    return _FOUND_WORDS.get(found, found)


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
        self.duplicates: list[tuple[Problem, PathKey]] = []
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
            _name_nodes(value, self.duplicates)
            raise TreeError(self.problems)
        return value, self.lines

    def syntax_problem(self, exc: yaml.MarkedYAMLError) -> Problem:
        """A located, plain-words problem for a YAML syntax error: the common mistakes are
        reported where they were made (often before where PyYAML notices them), with a fix."""
        known = self.known_mistake(exc)
        if known is not None:
            line, column, message, hint = known
            return Problem(
                f"YAML syntax error at line {line}, column {column}: {message}",
                file=self.name,
                line=line,
                hint=hint,
            )
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

    def known_mistake(self, exc: yaml.MarkedYAMLError) -> tuple[int, int, str, str] | None:
        """(line, column, message, fix) for an unclosed quote or bracket, text after a closing
        quote, a key without ':' or a line indented out of step; None for anything else."""
        problem, context = exc.problem or "", exc.context or ""
        opened, found = exc.context_mark, exc.problem_mark
        if opened is None or found is None:
            return None
        at = (opened.line + 1, opened.column + 1)
        if "quoted scalar" in context and "end of stream" in problem:
            quote = self.text[opened.index] if opened.index < len(self.text) else '"'
            return (
                *at,
                f"the quote {quote} opened here is never closed",
                f"end the value with {quote} on this line; {_QUOTE_INSIDE}",
            )
        if "quoted scalar" in context and "escape character" in problem:
            return (
                found.line + 1,
                found.column + 1,
                f"{problem} in double quotes",
                'in double quotes a backslash starts an escape (\\n, \\"): write \\\\ for '
                "a backslash, or use single quotes, where '\\[' stays as written",
            )
        if context.startswith("while parsing a flow") and problem.startswith("expected ','"):
            bracket = self.text[opened.index] if opened.index < len(self.text) else "["
            closer = "]" if bracket == "[" else "}"
            if found.line != opened.line:
                what = _found_words(problem)
                where = (
                    "the file ends"
                    if "<stream end>" in problem
                    else f"line {found.line + 1} has {what}"
                )
                return (
                    *at,
                    f"the '{bracket}' opened here is not closed ({where} where YAML expected "
                    f"',' or '{closer}')",
                    f"close it with '{closer}'; to start text with '{bracket}' (a random pick "
                    "or a template), quote the whole value",
                )
        if "simple key" in context and "expected ':'" in problem:
            return (
                *at,
                "this line is neither 'key: value' nor a list item '- ...'",
                "add ':' after the key (a space must follow it), or indent a continuation "
                "of the line above",
            )
        if not problem.startswith("expected <block end>"):
            return None
        before = self.token_before(found.index)
        if isinstance(before, ScalarToken) and before.style in ('"', "'"):
            quote = before.style
            start = before.start_mark
            if start.line != before.end_mark.line:  # the quote swallowed the lines below it
                return (
                    start.line + 1,
                    start.column + 1,
                    f"the quote {quote} opened here is not closed on this line (the quoted "
                    f"text runs on to line {before.end_mark.line + 1})",
                    f"end the value with {quote} on this line; {_QUOTE_INSIDE}",
                )
            return (
                found.line + 1,
                found.column + 1,
                f"text follows the closing {quote} of a quoted value",
                f"quote the whole value; {_QUOTE_INSIDE}",
            )
        return (
            found.line + 1,
            found.column + 1,
            f"{_found_words(problem)} is indented differently from the block that starts "
            f"at line {opened.line + 1}",
            "items of one list and keys of one mapping start in the same column, and a "
            "child block is indented further than its parent; indent with spaces",
        )

    def token_before(self, index: int) -> Any:
        """The last YAML token that starts before character `index`, or None."""
        last = None
        try:
            for token in yaml.scan(self.text, Loader=yaml.SafeLoader):
                if token.start_mark.index >= index:
                    break
                last = token
        except yaml.YAMLError:
            pass
        return last

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
        if node.flow_style and any(
            isinstance(item, ScalarNode) and item.tag == _PLAIN and "|" in item.value
            for item in node.value
        ):
            # `text: [a | b]` reads as the list ['a | b']: never what a tree means.
            source = self.text[node.start_mark.index : node.end_mark.index]
            self.problems.append(
                Problem(
                    f"{source} without quotes is a YAML list, not a random pick",
                    file=self.name,
                    line=node.start_mark.line + 1,
                    hint=f"quote the whole value: '{source}'",
                )
            )
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
                problem = _duplicate(key, self.name, key_line, explicit[key])
                self.problems.append(problem)
                self.duplicates.append((problem, path))
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
