"""YAML from untrusted text (model outputs, API replies) with bounded work.

PyYAML's safe loader shares the object behind an alias, so a 250-byte "billion laughs" document
loads quickly, and then anything that walks the value (JSON for the store, templates, output.json)
walks 10^9 nodes and never ends; an alias to an enclosing node (`&a [*a]`) makes a value that
contains itself, which crashed the whole run when the store serialised it. Here the composer
counts every node as it would be once the aliases are expanded, refuses an alias to a node that
is still open (recursion), and limits nesting depth, so such text fails with a message instead.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

MAX_NODES = 200_000  # nodes after expanding aliases
MAX_DEPTH = 200


class YamlBoundsError(ValueError):
    """The text is YAML that would expand past the limits, or refers to itself."""


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, stream: str, max_nodes: int, max_depth: int) -> None:
        super().__init__(stream)
        self._max_nodes, self._max_depth = max_nodes, max_depth
        self._expanded = 0  # nodes so far, aliases counted as the nodes they stand for
        self._sizes: dict[str, int] = {}  # anchor -> expanded size of its node
        self._open: set[str] = set()  # anchors whose node is still being composed
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            anchor = self.peek_event().anchor
            if anchor in self._open:
                raise YamlBoundsError(f"the alias *{anchor} refers to a node that contains it")
            self._count(self._sizes.get(anchor, 1))
            return super().compose_node(parent, index)
        anchor = getattr(self.peek_event(), "anchor", None)
        self._depth += 1
        if self._depth > self._max_depth:
            raise YamlBoundsError(f"nested deeper than {self._max_depth} levels")
        before = self._expanded
        if anchor is not None:
            self._open.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open.discard(anchor)
        self._count(1)
        if anchor is not None:
            self._sizes[anchor] = self._expanded - before
        return node

    def _count(self, nodes: int) -> None:
        self._expanded += nodes
        if self._expanded > self._max_nodes:
            raise YamlBoundsError(
                f"it expands to more than {self._max_nodes:,} values (aliases counted as copies)"
            )


def load_bounded_yaml(text: str, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> Any:
    """`yaml.safe_load(text)`, refusing documents past the limits (YamlBoundsError) as well as
    invalid ones (yaml.YAMLError)."""
    _check_flow_depth(text, max_depth)
    loader = _BoundedLoader(text, max_nodes, max_depth)
    try:
        return loader.get_single_data()
    except RecursionError:
        raise YamlBoundsError("nested too deeply") from None
    finally:
        loader.dispose()


_FLOW = re.compile(r"[\[\]{}\"']")


def _check_flow_depth(text: str, max_depth: int) -> None:
    # PyYAML's scanner slows down quadratically inside deeply nested [ and { (seconds for a
    # few kilobytes) before the composer sees a node, so the depth is measured first, roughly
    # (quoted text skipped) and in linear time.
    depth, quote = 0, ""
    for char in _FLOW.findall(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                raise YamlBoundsError(f"nested deeper than {max_depth} levels")
        else:
            depth = max(depth - 1, 0)
