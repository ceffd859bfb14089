"""Read a YAML tree file into plain data, with the line of every value.

PyYAML composes the file into nodes (no construction), which are converted to JSON types
following the YAML 1.2 core schema; aliases and merge keys (`<<: *base`) are expanded, and lines
point at where an alias is used. Syntax errors are put in plain words by `yaml_errors`.

libyaml's C composer (CSafeLoader, about 10x faster) reads a file first when it can give the
same values and lines: it has no hook to mark where an alias is used, so files with an anchor
(`&`) go to the Python composer, and so does any file the C path finds a problem in, so that
every message comes from the Python reader (the reference).
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from genarun.errors import TreeError
from genarun.tree.reader_common import EMPTY, MAX_DEPTH, PathKey, TreeFileReader
from genarun.tree.yaml_errors import syntax_problem

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
        return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call, no-any-return]

    def compose_node(self, parent: Node | None, index: Any) -> Any:
        # PyYAML composes recursively: stop at the depth trees may have, with its line.
        self.depth = getattr(self, "depth", 0) + 1
        try:
            if self.depth > MAX_DEPTH + 1:
                raise _TooDeep(self._next_line())
            if self.check_event(AliasEvent):
                line = self._next_line()
                anchored = super().compose_node(parent, index)
                assert anchored is not None  # an alias names a composed node
                return _AliasUse(anchored, line)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def _next_line(self) -> int:
        return int(self.peek_event().start_mark.line) + 1  # type: ignore[no-untyped-call]


_CLoaderBase: Any = getattr(yaml, "CSafeLoader", None)  # None: PyYAML built without libyaml

if _CLoaderBase is not None:

    class _CLoader(_CLoaderBase):  # type: ignore[misc]
        """libyaml's composer, with the same scalar resolution as `_Loader`."""

        def resolve(self, kind: type[Node], value: str | None, implicit: tuple[bool, bool]) -> str:
            if kind is ScalarNode and implicit[0]:
                return _PLAIN
            return super().resolve(kind, value, implicit)  # type: ignore[no-any-return]


# Characters the two composers treat differently: a tab (libyaml reads `a\tb: 1` as the key
# 'a\tb', PyYAML refuses it), a byte-order mark past the start, and the line breaks of YAML 1.1
# beyond \n and \r (NEL, LS, PS).
_C_DIFFERS = re.compile("[\t\ufeff\x85\u2028\u2029]")


class _Retry(Exception):
    """The C path met something only the Python reader words: read again with it."""


class _TooDeep(Exception):
    """Composing stopped at a value nested deeper than MAX_DEPTH, on `line`."""

    def __init__(self, line: int):
        super().__init__(line)
        self.line = line


class YamlReader(TreeFileReader):
    """Compose YAML into nodes with PyYAML, then convert them to JSON types with their lines."""

    def __init__(self, text: str, name: str):
        super().__init__(text, name)
        self._active: set[int] = set()  # nodes being converted, to catch recursive aliases
        self._count = 0

    def read(self) -> tuple[Any, dict[PathKey, int]]:
        if _CLoaderBase is not None and "&" not in self.text:
            try:
                return self._read_fast()
            except _Retry:
                self._reset()
        return self._read_python()

    def _reset(self) -> None:
        self.lines, self.problems, self.duplicates = {}, [], []
        self._active, self._count = set(), 0

    def _read_fast(self) -> tuple[Any, dict[PathKey, int]]:
        """Compose with libyaml; any error or problem found means _Retry (see the docstring)."""
        if yaml.reader.Reader.NON_PRINTABLE.search(self.text) or _C_DIFFERS.search(self.text):
            raise _Retry
        loader = _CLoader(self.text)
        try:
            root = loader.get_single_node()
        except (yaml.YAMLError, RecursionError):
            raise _Retry from None
        finally:
            loader.dispose()
        if root is None or (isinstance(root, ScalarNode) and root.tag == _PLAIN and not root.value):
            return EMPTY, self.lines
        try:
            value = self.convert(root, (), root.start_mark.line + 1)
        except (TreeError, RecursionError):
            raise _Retry from None
        if self.problems:
            raise _Retry
        return self.result(value)

    def _read_python(self) -> tuple[Any, dict[PathKey, int]]:
        loader: _Loader | None = None
        try:
            loader = _Loader(self.text)  # the reader checks every character up front
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            raise TreeError(syntax_problem(exc, self.text, self.name)) from None
        except yaml.YAMLError as exc:  # a ReaderError: a character YAML does not allow
            position = getattr(exc, "position", None)
            line = self.text.count("\n", 0, position) + 1 if position is not None else None
            raise TreeError(self.problem(f"YAML cannot read this file: {exc}", line)) from None
        except _TooDeep as exc:
            raise self.too_deep(exc.line) from None
        except RecursionError:
            raise self.too_deep(None) from None
        finally:
            if loader is not None:
                loader.dispose()
        if root is None or (isinstance(root, ScalarNode) and root.tag == _PLAIN and not root.value):
            return EMPTY, self.lines  # no document, or a bare '---'

        try:
            value = self.convert(root, (), root.start_mark.line + 1)
        except RecursionError:
            raise self.too_deep(None) from None
        return self.result(value)

    def convert(self, item: Node | _AliasUse, path: PathKey, line: int) -> Any:
        """Convert one node (or alias use) at `path`, whose key or item starts at `line`."""
        if len(path) > MAX_DEPTH:
            raise self.too_deep(line)
        self.lines[path] = line
        node = item.node if isinstance(item, _AliasUse) else item
        self._count += 1
        if self._count > _MAX_VALUES:
            raise TreeError(
                self.problem(
                    f"aliases expand to more than {_MAX_VALUES:,} values",
                    line,
                    hint="use fewer nested aliases",
                )
            )
        if id(node) in self._active:
            self.report(
                "an alias refers to a value that contains it",
                line,
                hint="a value cannot include itself",
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
        self.report(
            f"unsupported YAML tag '{shown}'",
            line,
            hint="trees hold plain text, numbers, booleans, lists and mappings; remove the tag",
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
        self.report(
            f"{value!r} is not a valid {tag[len(_TAG) :]}",
            line,
            hint="remove the tag, or fix the value",
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
                self.report_too_long(value, line)
                return 0
        if _OCT.fullmatch(value):
            return int(value[2:], 8)
        if _HEX.fullmatch(value):
            return int(value[2:], 16)
        if _INF.fullmatch(value) or _NAN.fullmatch(value):
            self.report_non_finite(value, line)
            return math.nan
        if _FLOAT.fullmatch(value):
            number = float(value)
            if not math.isfinite(number):  # overflow, like 1e400
                self.report_non_finite(value, line)
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
            self.report(
                f"{source} without quotes is a YAML list, not a random pick",
                node.start_mark.line + 1,
                hint=f"quote the whole value: '{source}'",
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
                self.report(
                    "a mapping key must be text, not a list or mapping",
                    key_line,
                    hint="quote a value that starts with '{{' or '[' (a template or a pick)",
                )
                continue
            key: str = key_node.value
            if key == "<<" and key_node.tag == _PLAIN and not isinstance(key_item, _AliasUse):
                merges.append((value_item, key_line))
                continue
            if key in explicit:
                self.report_duplicate(key, key_line, explicit[key], path)
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
                self.report(
                    "'<<' merges a mapping or a list of mappings",
                    _line_of(source),
                    hint="write '<<: *anchor' where the anchor names a mapping",
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
    return item.start_mark.line + 1
