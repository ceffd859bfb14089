"""What the JSON and YAML readers of tree files share: the path of a value, the mark of an
empty document, and the problems both report (duplicate keys, non-finite numbers).
"""

from __future__ import annotations

from typing import Any

from genarun.errors import Problem

# Where a value sits in a tree file: mapping keys and list indexes from the top level down.
PathKey = tuple[str | int, ...]


class _Empty:
    """Marks a document with no value at all, which differs from an explicit null."""


EMPTY: Any = _Empty()


def non_finite_number(token: str, name: str, line: int) -> Problem:
    """`NaN`, `Infinity` or a number too large for a float: JSON types hold none of them."""
    return Problem(
        f"{token!r} is not a finite number",
        file=name,
        line=line,
        hint="quote it if you mean text",
    )


def duplicate_key(key: str, name: str, line: int, first: int) -> Problem:
    """A key written twice in one mapping: both readers refuse rather than keep the last."""
    return Problem(
        f"duplicate key '{key}' (first at line {first}, again at line {line})",
        file=name,
        line=line,
        hint="a key may appear once per mapping; remove or rename one, or if it belongs to "
        "another item, fix its indentation",
    )


def name_duplicate_nodes(data: Any, duplicates: list[tuple[Problem, PathKey]]) -> None:
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
