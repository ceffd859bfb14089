"""Read a tree file and validate it against the format: the tree, then every node by its kind."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from genarun.errors import Problem, TreeError, did_you_mean
from genarun.tree.load import Document, load_document
from genarun.tree.schema import NodeBase, TreeSpec

Loc = tuple[str | int, ...]


@dataclass
class TreeNode:
    """A validated node with where it came from."""

    spec: NodeBase
    loc: Loc
    line: int | None
    parent: TreeNode | None = None
    children: list[TreeNode] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.spec.id


@dataclass
class LoadedTree:
    path: Path
    doc: Document
    spec: TreeSpec
    roots: list[TreeNode]

    def walk(self) -> list[TreeNode]:
        """Every node, parents before children, in file order."""
        out: list[TreeNode] = []
        stack = list(reversed(self.roots))
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(reversed(node.children))
        return out

    def line(self, loc: Loc) -> int | None:
        return self.doc.line(loc)


def read_tree(path: Path | str) -> LoadedTree:
    """Load and validate a tree file; raise TreeError listing every problem found."""
    path = Path(path)
    doc = load_document(path)
    return validate_document(doc)


def validate_document(doc: Document) -> LoadedTree:
    from genarun.plugins import registry

    kinds = registry().kinds
    file = str(doc.path)
    problems: list[Problem] = []
    data = doc.data
    if not isinstance(data, dict):
        raise TreeError(Problem("a tree file must hold a mapping with genarun, name and nodes", file, 1))
    version = data.get("genarun")
    if "genarun" not in data:
        problems.append(Problem("missing 'genarun: 1' (the format version)", file, 1, hint="add 'genarun: 1' as the first line"))
    elif version != 1 or isinstance(version, bool):
        problems.append(_version_problem(version, file, doc.line(("genarun",))))
    try:
        spec = TreeSpec.model_validate(data)
    except ValidationError as exc:
        tree_problems = _pydantic_problems(exc, TreeSpec, (), doc, None)
        # The version is reported above, with its fix.
        tree_problems = [p for p in tree_problems if p.message != "missing required field 'genarun'" and not p.message.startswith("field 'genarun':")]
        problems.extend(tree_problems)
        spec = None
    nodes_raw = data.get("nodes")
    roots: list[TreeNode] = []
    if isinstance(nodes_raw, list):
        if not nodes_raw:
            problems.append(Problem("the tree has no nodes", file, doc.line(("nodes",)), hint="add at least one node under 'nodes:'"))
        roots = _validate_nodes(nodes_raw, ("nodes",), None, doc, kinds, problems)
    if problems:
        raise TreeError(_dedupe(problems))
    assert spec is not None
    return LoadedTree(doc.path, doc, spec, roots)


def _version_problem(version: Any, file: str, line: int | None) -> Problem:
    if isinstance(version, int | float) and not isinstance(version, bool) and version > 1:
        return Problem(
            f"this tree is in format version {version}; this genarun reads version 1",
            file,
            line,
            hint="upgrade genarun to run it, or write it in format 1 and set 'genarun: 1' (docs/reference.md)",
        )
    shown = f'"{version}"' if isinstance(version, str) else "null" if version is None else str(version)
    return Problem(
        f"'genarun: {shown}' is not a format version; this genarun reads version 1",
        file,
        line,
        hint="write 'genarun: 1' (a number, unquoted)",
    )


def _validate_nodes(
    raw_nodes: list[Any],
    loc: Loc,
    parent: TreeNode | None,
    doc: Document,
    kinds: dict[str, Any],
    problems: list[Problem],
) -> list[TreeNode]:
    file = str(doc.path)
    out: list[TreeNode] = []
    for i, raw in enumerate(raw_nodes):
        node_loc = (*loc, i)
        line = doc.line(node_loc)
        if not isinstance(raw, dict):
            problems.append(Problem(f"a node must be a mapping with id and kind, not {type(raw).__name__}", file, line))
            continue
        node_name = str(raw.get("id", f"#{i + 1}"))
        kind_name = raw.get("kind")
        if kind_name is None:
            problems.append(Problem("missing 'kind'", file, line, node_name, hint=f"one of: {', '.join(sorted(kinds))}"))
            continue
        if kind_name not in kinds:
            hint = did_you_mean(str(kind_name), set(kinds)) or f"known kinds: {', '.join(sorted(kinds))}"
            problems.append(Problem(f"unknown kind '{kind_name}'", file, doc.line((*node_loc, "kind")), node_name, hint=hint))
            continue
        model = kinds[kind_name].params
        try:
            spec = model.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(exc, model, node_loc, doc, node_name))
            continue
        node = TreeNode(spec, node_loc, line, parent)
        children = raw.get("children") or []
        if children:
            node.children = _validate_nodes(children, (*node_loc, "children"), node, doc, kinds, problems)
        out.append(node)
    return out


def _pydantic_problems(exc: ValidationError, model: type[BaseModel], loc: Loc, doc: Document, node: str | None) -> list[Problem]:
    file = str(doc.path)
    fields = {f.alias or name for name, f in model.model_fields.items()}
    problems = []
    for err in exc.errors():
        err_loc = tuple(err["loc"])
        # Union branches repeat the location with a type tag (e.g. 'int', 'function-after[...]').
        clean = tuple(p for p in err_loc if isinstance(p, int) or not _is_type_tag(str(p)))
        if loc == () and len(clean) > 1 and clean[0] == "nodes":
            continue  # nodes are validated one by one with their kinds
        if loc and len(clean) > 1 and clean[0] == "children":
            continue  # children are validated with their own kinds
        line = doc.line((*loc, *clean))
        name = ".".join(str(p) for p in clean)
        hint = None
        if err["type"] == "extra_forbidden":
            msg = f"unknown field '{name}'"
            hint = did_you_mean(str(clean[-1]), fields) or f"allowed fields: {', '.join(sorted(fields))}"
        elif err["type"] == "missing":
            msg = f"missing required field '{name}'"
        else:
            msg = f"field '{name}': {_clean_message(err['msg'])}" if name else _clean_message(err["msg"])
            hint = _TYPE_HINTS.get((str(clean[-1]) if clean else "", err["type"])) or _TYPE_HINTS.get(("", err["type"]))
        problems.append(Problem(msg, file, line, node, hint))
    return problems


# Fixes for values of the wrong shape, by (field, pydantic error type); "" is any field.
_TYPE_HINTS = {
    ("nodes", "list_type"): "write each node as a list item under 'nodes:', starting with '- id: ...'",
    ("children", "list_type"): "write each child as a list item under 'children:', starting with '- id: ...'",
    ("", "dict_type"): "write it as 'name: value' lines indented under it",
    ("", "list_type"): "write a list: [a, b] or one '- item' line each",
}


def _is_type_tag(part: str) -> bool:
    return part in {"int", "float", "str", "bool", "dict[str,any]", "list[any]", "none"} or "[" in part or part.startswith(("function-", "literal"))


def _clean_message(msg: str) -> str:
    return msg.removeprefix("Value error, ")


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[str] = set()
    out = []
    for p in problems:
        key = str(p)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out
