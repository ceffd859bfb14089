"""Comments above a node move with the node (ruamel.yaml keeps them elsewhere).

ruamel.yaml's round trip stores the comment lines above a list item as the end-of-line comment
of the last scalar before it, deep inside the previous item (`text: A1   # a1\\n  # about b`),
and those above the first item on the list itself. Moving or removing an item as it stands
would leave its comment where it was, above whichever node comes there next. So a structural
edit takes every item's leading comment off first, reorders the list, and puts each back above
its own item (and what trailed the last item back at the end).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

_EOL = 2  # a mapping key's comment slots: the comment after its value is the third
_SEQ_EOL = 0  # a sequence item's: the first


def _slot(item: Any) -> tuple[Any, Any, int] | None:
    """Where the comment after `item`'s last scalar lives: (comment owner, key, slot)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    node = item
    for _ in range(64):
        if isinstance(node, CommentedMap) and len(node):
            key = list(node)[-1]
            value = node[key]
            if _block(value):
                node = value
                continue
            return node, key, _EOL
        if isinstance(node, CommentedSeq) and len(node):
            value = node[-1]
            if _block(value):
                node = value
                continue
            return node, len(node) - 1, _SEQ_EOL
        return None
    return None


def _block(value: Any) -> bool:
    """A non-empty block-style mapping or list (a flow one's comments are on its key)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    return (
        isinstance(value, (CommentedMap, CommentedSeq))
        and len(value) > 0
        and not value.fa.flow_style()
    )


def _take_after(item: Any) -> str:
    """The comment lines after `item` (its end-of-line comment stays), taken off it."""
    found = _slot(item)
    if found is None:
        return ""
    owner, key, index = found
    slots = owner.ca.items.get(key)
    token = slots[index] if slots and len(slots) > index else None
    if token is None or "\n" not in token.value:
        return ""
    eol, _, rest = token.value.partition("\n")
    token.value = eol + "\n"
    return rest


def _put_after(item: Any, text: str) -> None:
    if not text:
        return
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    found = _slot(item)
    if found is None:
        return
    owner, key, index = found
    slots = owner.ca.items.setdefault(key, [None, None, None, None])
    while len(slots) <= index:
        slots.append(None)
    token = slots[index]
    if token is None:
        slots[index] = CommentToken("\n" + text, CommentMark(0), None)
    else:
        token.value = token.value.partition("\n")[0] + "\n" + text


def _take_first(items: Any, parent: Any, key: str) -> str:
    """The comment lines above the list's first item (held on the list and on its key), as
    text indented as written."""
    tokens = None
    comment = items.ca.comment
    if comment and len(comment) > 1 and comment[1]:
        tokens = comment[1]
        comment[1] = None
    slots = parent.ca.items.get(key)
    if slots and len(slots) > 3 and slots[3]:
        tokens = tokens or slots[3]
        slots[3] = None
    if not tokens:
        return ""
    return "".join(" " * (t.column or 0) + t.value for t in tokens)


def _put_first(items: Any, parent: Any, key: str, text: str) -> None:
    if not text:
        return
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    # The first line's indent is the token's column; the rest keep theirs in the text.
    column = len(text) - len(text.lstrip(" "))
    token = CommentToken(text[column:], CommentMark(column), None)
    items.ca.comment = [None, [token]]
    slots = parent.ca.items.setdefault(key, [None, None, None, None])
    slots[3] = [token]


def with_comments(
    items: Any,
    parent: Any,
    key: str,
    change: Callable[[], None],
    carried: dict[int, str] | None = None,
) -> None:
    """Run `change` (a reorder, insert or removal of `items`, the node list `parent[key]`)
    with each item's leading comment kept above that item. `carried`: the comments of items
    that leave this list (filled) or come from another (read), for a move between lists."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if not isinstance(items, CommentedSeq) or not isinstance(parent, CommentedMap):
        change()
        return
    leading = carried if carried is not None else {}
    if items:
        leading[id(items[0])] = _take_first(items, parent, key)
    for before, item in itertools.pairwise(list(items)):
        leading[id(item)] = _take_after(before)
    tail = _take_after(items[-1]) if items else ""
    change()
    if items:
        _put_first(items, parent, key, leading.pop(id(items[0]), ""))
    for before, item in itertools.pairwise(list(items)):
        _put_after(before, leading.pop(id(item), ""))
    if items:
        _put_after(items[-1], tail)
