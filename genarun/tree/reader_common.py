"""What the JSON and YAML readers of tree files share: the path of a value, the mark of an
empty document, and the collecting of lines and problems (duplicate keys, non-finite numbers
and the like are all reported together, each with its line).
"""

from __future__ import annotations

from typing import Any

from genarun.errors import Problem, TreeError

# Where a value sits in a tree file: mapping keys and list indexes from the top level down.
PathKey = tuple[str | int, ...]


# How deeply values may nest (mappings in lists in mappings...). Real trees stay under 20
# levels; the limit keeps every later step, which walks values recursively, far from
# Python's recursion limit.
MAX_DEPTH = 100


class _Empty:
    """Marks a document with no value at all, which differs from an explicit null."""


EMPTY: Any = _Empty()


class TreeFileReader:
    """Reads one tree file's text: records the line of every value and collects problems."""

    def __init__(self, text: str, name: str):
        self.text = text
        self.name = name
        self.lines: dict[PathKey, int] = {}
        self.problems: list[Problem] = []
        self.duplicates: list[tuple[Problem, PathKey]] = []

    def problem(self, message: str, line: int | None = None, *, hint: str | None = None) -> Problem:
        """A problem in this file."""
        return Problem(message, file=self.name, line=line, hint=hint)

    def report(self, message: str, line: int | None, *, hint: str | None = None) -> None:
        """Note a problem and read on, so that one run reports all of them."""
        self.problems.append(self.problem(message, line, hint=hint))

    def too_deep(self, line: int | None) -> TreeError:
        """The error for a value nested more than MAX_DEPTH levels deep."""
        return TreeError(
            self.problem(
                f"values nest more than {MAX_DEPTH} levels deep here",
                line,
                hint="a tree's lists and mappings nest a few levels; flatten this value",
            )
        )

    def report_non_finite(self, token: str, line: int) -> None:
        """`NaN`, `Infinity` or a number too large for a float: JSON types hold none of them."""
        self.report(f"{token!r} is not a finite number", line, hint="quote it if you mean text")

    def report_too_long(self, digits: str, line: int) -> None:
        """A whole number longer than Python reads (4300 digits)."""
        self.report(
            f"a number of {len(digits.lstrip('+-'))} digits is too long to read",
            line,
            hint="quote it if you mean text",
        )

    def report_duplicate(self, key: str, line: int, first: int, path: PathKey) -> None:
        """A key written twice in the mapping at `path`: refused rather than the last kept."""
        self.report(
            f"duplicate key '{key}' (first at line {first}, again at line {line})",
            line,
            hint="a key may appear once per mapping; remove or rename one, or if it belongs to "
            "another item, fix its indentation",
        )
        self.duplicates.append((self.problems[-1], path))

    def result(self, value: Any) -> tuple[Any, dict[PathKey, int]]:
        """The value read and its lines; TreeError with every problem, if any was found."""
        if self.problems:
            _name_duplicate_nodes(value, self.duplicates)
            raise TreeError(self.problems)
        return value, self.lines


def _name_duplicate_nodes(data: Any, duplicates: list[tuple[Problem, PathKey]]) -> None:
    """Name the tree node each duplicate key is in, once the whole file is read."""
    for problem, path in duplicates:
        current, i, expected = data, 0, "nodes"
        node_id: str | None = None
        # Only the tree's own structure (nodes: [..., children: [...]]) holds nodes.
        while i + 1 < len(path) and path[i] == expected and isinstance(path[i + 1], int):
            try:
                current = current[path[i]][path[i + 1]]
            except (KeyError, IndexError, TypeError):
                break
            if not isinstance(current, dict):
                break
            node_id = (
                current["id"] if isinstance(current.get("id"), str) else f"#{int(path[i + 1]) + 1}"
            )
            expected, i = "children", i + 2
        problem.node = node_id
