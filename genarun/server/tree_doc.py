"""A tree file held for editing: parsed so that writing it back keeps what was not edited.

YAML goes through ruamel.yaml's round-trip mode, which keeps comments, key order, quoting and
flow/block style of every untouched value (PyYAML, which the loader uses, drops comments); its
indentation is guessed from the text so a file indented `nodes:\\n  - id:` is written the same
way. JSON trees are read with their key order and written back as JSON, indented as found.

A node is addressed by its position (`Loc`: indexes down `nodes:` and `children:`), not its id,
so nodes with a missing or duplicate id can still be edited. Every edit here is structural only;
what the edited tree means is checked by the same validation as `genarun validate`
(genarun/server/edit_check.py), on the text this module writes.
"""

from __future__ import annotations

import io
import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from genarun.server.yaml_comments import with_comments

Loc = tuple[int, ...]
MAX_DEPTH = 64  # a recursive YAML alias (`children: [*self]`) is refused, never walked forever
MAX_NODES = 5000

# Fields whose whole value (or each list item) is a node id, not a template.
ID_FIELDS = frozenset({"of", "from", "against"})
# Fields that are one Jinja expression without braces.
EXPRESSION_FIELDS = frozenset({"foreach", "when"})


class EditError(Exception):
    """An edit that cannot be made as asked (the message says why and what to do)."""


@dataclass
class OutlineNode:
    loc: Loc
    id: str
    kind: str
    enabled: bool
    foreach: bool
    depth: int
    children: list[OutlineNode] = field(default_factory=list)

    @property
    def key(self) -> str:
        return loc_text(self.loc)


def loc_text(loc: Loc) -> str:
    return ".".join(str(i) for i in loc)


def parse_loc(text: str) -> Loc:
    """`0.2` -> (0, 2); EditError for anything else."""
    if not re.fullmatch(r"[0-9]{1,5}(\.[0-9]{1,5}){0,63}", text or ""):
        raise EditError(f"no node at {text[:40]!r}: reload the page")
    return tuple(int(part) for part in text.split("."))


def _yaml(text: str) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.util import load_yaml_guess_indent

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # long prompts stay on their line instead of being folded
    try:
        _, sequence, offset = load_yaml_guess_indent(text)
    except Exception:  # the text does not parse: load() below says where
        sequence, offset = None, None
    yaml.indent(mapping=_mapping_indent(text), sequence=sequence or 2, offset=offset or 0)
    return yaml


def _mapping_indent(text: str) -> int:
    """The indent of a nested mapping: the first `key:` line followed by a deeper key line."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    for head, below in itertools.pairwise(lines):
        if re.fullmatch(r"\s*[^\s\-#][^:#]*:\s*(#.*)?", head) and not below.lstrip().startswith(
            "- "
        ):
            step = (len(below) - len(below.lstrip())) - (len(head) - len(head.lstrip()))
            if step > 0:
                return step
    return 2


class TreeDoc:
    """A tree file's data as written, editable in place, and its text."""

    def __init__(self, text: str, fmt: Literal["yaml", "json"]) -> None:
        self.fmt = fmt
        self._json_indent: int | None = 2
        if fmt == "json":
            try:
                self.data = json.loads(text)
            except ValueError as exc:
                raise EditError(f"the JSON does not parse: {exc}") from None
            indented = re.search(r"\n( +)\S", text)
            self._json_indent = len(indented.group(1)) if indented else None
            self._yaml = None
        else:
            self._yaml = _yaml(text)
            try:
                self.data = self._yaml.load(text)
            except Exception as exc:  # ruamel's many parser errors: all a text to fix
                raise EditError(f"the YAML does not parse: {_first_line(exc)}") from None
        if not isinstance(self.data, dict):
            raise EditError("the top level is not a mapping (genarun: 1, name:, nodes:)")
        self.trailing_newline = text.endswith("\n") or not text

    def text(self) -> str:
        """The tree written back: untouched parts as they were."""
        if self._yaml is None:
            out = json.dumps(self.data, indent=self._json_indent, ensure_ascii=False)
            return out + "\n" if self.trailing_newline else out
        stream = io.StringIO()
        self._yaml.dump(self.data, stream)
        return stream.getvalue()

    # --- reading -----------------------------------------------------------------------
    def siblings(self, parent: Loc | None) -> list[Any]:
        """The node list a node of `parent` goes in (None: the top level), created if absent."""
        owner = self.data if parent is None else self.node(parent)
        key = "nodes" if parent is None else "children"
        if owner.get(key) is None:
            owner[key] = []
        found = owner[key]
        if not isinstance(found, list):
            raise EditError(f"'{key}' is not a list here: fix it in the text")
        return found

    def node(self, loc: Loc) -> Any:
        """The node mapping at `loc`; EditError when there is none."""
        if not loc or len(loc) > MAX_DEPTH:
            raise EditError("no such node: reload the page")
        found: Any = self.data.get("nodes")
        node: Any = None
        for depth, index in enumerate(loc):
            if not isinstance(found, list) or index >= len(found):
                raise EditError("no such node (the tree changed): reload the page")
            node = found[index]
            if not isinstance(node, dict):
                raise EditError(f"item {index + 1} is not a node mapping: fix it in the text")
            if depth < len(loc) - 1:
                found = node.get("children")
        return node

    def outline(self) -> list[OutlineNode]:
        """The nodes as nested, in file order (a node that is no mapping is left out)."""
        count = 0

        def walk(items: Any, parent: Loc, depth: int) -> list[OutlineNode]:
            nonlocal count
            out: list[OutlineNode] = []
            if not isinstance(items, list) or depth >= MAX_DEPTH:
                return out
            for i, raw in enumerate(items):
                count += 1
                if not isinstance(raw, dict) or count > MAX_NODES:
                    continue
                loc = (*parent, i)
                node_id, kind = raw.get("id"), raw.get("kind")
                out.append(
                    OutlineNode(
                        loc,
                        node_id if isinstance(node_id, str) else "",
                        kind if isinstance(kind, str) else "",
                        enabled=raw.get("enabled") is not False,
                        foreach="foreach" in raw,
                        depth=depth,
                        children=walk(raw.get("children"), loc, depth + 1),
                    )
                )
            return out

        return walk(self.data.get("nodes"), (), 0)

    def flat(self) -> list[OutlineNode]:
        def each(nodes: list[OutlineNode]) -> Iterator[OutlineNode]:
            for n in nodes:
                yield n
                yield from each(n.children)

        return list(each(self.outline()))

    def ids(self) -> set[str]:
        return {n.id for n in self.flat() if n.id}

    # --- structure -----------------------------------------------------------------------
    def add(self, parent: Loc | None, kind: str, node_id: str) -> Loc:
        """A new node of `kind` as the last child of `parent` (None: the last top-level node)."""
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", node_id):
            raise EditError(f"'{node_id[:40]}' is no node id: letters, digits and _")
        if node_id in self.ids():
            raise EditError(f"there is a node '{node_id}' already: choose another id")
        owner, key, items = self._list_of(parent)
        new = _mapping({"id": node_id, "kind": kind}, self.fmt)
        with_comments(items, owner, key, lambda: items.append(new))
        return (*(parent or ()), len(items) - 1)

    def remove(self, loc: Loc) -> str:
        removed = self.node(loc)
        owner, key, items = self._list_of(loc[:-1] or None)
        with_comments(items, owner, key, lambda: items.pop(loc[-1]))
        return str(removed.get("id") or "")

    def move(self, loc: Loc, where: str) -> Loc:
        """Move a node `up`, `down`, to the `top` level, or `into:LOC` (as its last child)."""
        node = self.node(loc)
        owner, key, items = self._list_of(loc[:-1] or None)
        index = loc[-1]
        if where in ("up", "down"):
            other = index - 1 if where == "up" else index + 1
            if not 0 <= other < len(items):
                raise EditError(f"the node is {'first' if where == 'up' else 'last'} already")

            def swap() -> None:
                items[index], items[other] = items[other], items[index]

            with_comments(items, owner, key, swap)
            return (*loc[:-1], other)
        if where == "top":
            target: Loc | None = None
        elif where.startswith("into:"):
            target = parse_loc(where[5:])
            if target[: len(loc)] == loc:
                raise EditError("a node cannot move into itself or its own subtree")
            self.node(target)
        else:
            raise EditError(f"unknown move {where[:20]!r}: up, down, top or into:LOC")
        new_owner, new_key, new_items = self._list_of(target)
        # The target's address is computed before the node leaves its list (which shifts it).
        carried: dict[int, str] = {}  # its comment lines go with it
        with_comments(items, owner, key, lambda: items.pop(index), carried)
        target_loc = _shifted(target, loc) if target is not None else None
        with_comments(new_items, new_owner, new_key, lambda: new_items.append(node), carried)
        return (*(target_loc or ()), len(new_items) - 1)

    def toggle(self, loc: Loc) -> bool:
        """Turn a node off (`enabled: false`) or on again (the key goes: true is the default)."""
        node = self.node(loc)
        on = node.get("enabled") is False
        self._in_place(loc, lambda: node.pop("enabled") if on else _put(node, "enabled", False))
        return on

    def set_fields(self, loc: Loc, values: dict[str, Any]) -> list[str]:
        """Set a node's fields (None: remove the key); only changed values are touched, so an
        unchanged field keeps its quoting and comments. Returns the fields changed."""
        node = self.node(loc)
        changed: list[str] = []

        def assign() -> None:
            for name, value in values.items():
                if value is None:
                    if name in node:
                        del node[name]
                        changed.append(name)
                elif name not in node or plain_value(node[name]) != value:
                    _put(node, name, _value(value, self.fmt))
                    changed.append(name)

        self._in_place(loc, assign)
        return changed

    def replace_fields(self, loc: Loc, mapping: dict[str, Any]) -> None:
        """A node's fields from edited YAML, its comments included; its children stay (they
        are edited as nodes)."""
        node = self.node(loc)
        if self.fmt == "json":
            mapping = plain_value(mapping)
        mapping.pop("children", None)
        if node.get("children") is not None:
            mapping["children"] = node["children"]
        owner, key, items = self._list_of(loc[:-1] or None)
        with_comments(items, owner, key, lambda: items.__setitem__(loc[-1], mapping))

    def _list_of(self, parent: Loc | None) -> tuple[Any, str, list[Any]]:
        """The node list of `parent` (None: the top level), with the mapping and key it is in."""
        items = self.siblings(parent)
        owner = self.data if parent is None else self.node(parent)
        return owner, "nodes" if parent is None else "children", items

    def _in_place(self, loc: Loc, change: Callable[[], Any]) -> None:
        """A change inside a node: the comment lines above the next node, which ruamel keeps
        on this node's last value, stay where they are."""
        owner, key, items = self._list_of(loc[:-1] or None)
        with_comments(items, owner, key, change)

    def node_text(self, loc: Loc) -> str:
        """A node's own fields (not its children) as YAML, comments and all, for raw editing."""
        from ruamel.yaml.comments import CommentedMap

        node = self.node(loc)
        own = CommentedMap((k, v) for k, v in node.items() if k != "children")
        if self._yaml is None:
            return dump_yaml(plain_value(own))
        stream = io.StringIO()
        self._yaml.dump(own, stream)
        return stream.getvalue()

    # --- rename ---------------------------------------------------------------------------
    def rename(self, loc: Loc, new_id: str) -> list[str]:
        """Rename a node and the references to it (templates, foreach and when expressions,
        `of`, `from` and `against` ids); returns where references were rewritten."""
        node = self.node(loc)
        old = node.get("id")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", new_id):
            raise EditError(f"'{new_id[:40]}' is no node id: letters, digits and _")
        if new_id == old:
            return []
        if new_id in self.ids():
            raise EditError(f"there is a node '{new_id}' already: choose another id")
        node["id"] = new_id
        if not isinstance(old, str) or not old:
            return []
        places: list[str] = []
        for other in self.flat():
            raw = self.node(other.loc)
            for key in list(raw):
                if key in ("id", "kind", "children"):
                    continue
                renamed = _rename_value(raw[key], key, old, new_id)
                if renamed is not _SAME:
                    raw[key] = _keep_style(raw[key], renamed)
                    places.append(f"{other.id or '?'}.{key}")
        return places


_SAME = object()


def _put(node: Any, key: str, value: Any) -> None:
    """Set a field; a new one goes before `children:`, where a person would write it."""
    if key in node or "children" not in node:
        node[key] = value
        return
    position = list(node).index("children")
    if hasattr(node, "insert"):  # ruamel's CommentedMap
        node.insert(position, key, value)
        return
    items = list(node.items())
    items.insert(position, (key, value))
    node.clear()
    node.update(items)


def _rename_value(value: Any, key: str, old: str, new: str) -> Any:
    """`value` with `old` renamed to `new` where it names a node, or _SAME when unchanged."""
    if isinstance(value, str):
        if key in ID_FIELDS:
            return new if value == old else _SAME
        if key in EXPRESSION_FIELDS:
            out = rename_in_template("{{" + value + "}}", old, new)
            return out[2:-2] if out is not None else _SAME
        out = rename_in_template(value, old, new)
        return out if out is not None else _SAME
    if isinstance(value, list):
        items = [_rename_value(v, key, old, new) for v in value]
        if all(v is _SAME for v in items):
            return _SAME
        for i, item in enumerate(items):
            if item is not _SAME:
                value[i] = _keep_style(value[i], item)
        return value
    if isinstance(value, dict):
        changed = False
        for k in list(value):
            item = _rename_value(value[k], key if key in ID_FIELDS else str(k), old, new)
            if item is not _SAME:
                value[k] = _keep_style(value[k], item)
                changed = True
        return value if changed else _SAME
    return _SAME


def rename_in_template(text: str, old: str, new: str) -> str | None:
    """The template with the variable `old` renamed (not attributes, filters, strings or
    comments); None when it names no `old` or is not a template Jinja can read."""
    if old not in text or "{" not in text:
        return None
    from jinja2 import Environment, TemplateSyntaxError

    try:
        tokens = list(Environment().lex(text))
    except TemplateSyntaxError:
        return None
    out, changed, previous = [], False, ""
    for _, kind, value in tokens:
        if kind == "name" and value == old and previous not in (".", "|"):
            value, changed = new, True
        out.append(value)
        if kind != "whitespace":
            previous = value
    return "".join(out) if changed else None


def _keep_style(before: Any, after: Any) -> Any:
    """A renamed string in the scalar style it was written in (quoted, literal block)."""
    if isinstance(before, str) and isinstance(after, str) and type(before) is not str:
        try:
            return type(before)(after)
        except TypeError:
            return after
    return after


def _shifted(target: Loc, removed: Loc) -> Loc:
    """`target`'s address once the node at `removed` has left its list."""
    parent = removed[:-1]
    depth = len(parent)
    if len(target) > depth and target[:depth] == parent and target[depth] > removed[-1]:
        return (*parent, target[depth] - 1, *target[depth + 1 :])
    return target


def plain_value(value: Any) -> Any:
    """ruamel's containers and scalars as plain JSON values, for comparing."""
    if isinstance(value, dict):
        return {str(k): plain_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_value(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


def _value(value: Any, fmt: str) -> Any:
    """A new value as written: multi-line text as a `|` block in YAML."""
    if fmt == "yaml" and isinstance(value, str) and "\n" in value:
        from ruamel.yaml.scalarstring import LiteralScalarString

        return LiteralScalarString(value)
    return value


def _mapping(value: dict[str, Any], fmt: str) -> Any:
    if fmt == "json":
        return dict(value)
    from ruamel.yaml.comments import CommentedMap

    return CommentedMap(value)


def dump_yaml(value: Any) -> str:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.width = 4096
    stream = io.StringIO()
    yaml.dump(value, stream)
    return stream.getvalue()


def parse_yaml_value(text: str) -> Any:
    """A value typed as YAML (a field's raw text, a node's fields) as ruamel reads it."""
    from ruamel.yaml import YAML

    try:
        return YAML(typ="rt").load(text)
    except Exception as exc:
        raise EditError(f"not valid YAML: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:300]
