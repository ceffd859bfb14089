"""Read a tree file and validate it against the format: the tree, then every node by its kind."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from genarun.errors import Problem, TreeError, did_you_mean
from genarun.tree.field_problems import Loc, pydantic_problems, shown
from genarun.tree.load import Document, load_document
from genarun.tree.schema import NodeBase, TreeSpec, model_ref_problem


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
    return validate_document(read_document(path))


def read_document(path: Path | str) -> Document:
    """A tree file parsed (YAML or JSON, with lines), not validated yet; a PANIC-TDA experiment
    config becomes its equivalent tree. Raises TreeError for a file that is no tree."""
    from genarun.tree.panic_config import is_panic_config, panic_tree

    path = Path(path)
    try:
        doc = load_document(path)
    except TreeError:
        if _other_file(path):
            raise _not_a_tree(path) from None
        raise
    if is_panic_config(doc.data):  # PANIC-TDA's ExperimentConfig: run as its equivalent tree
        doc = panic_tree(doc)
    elif _other_file(path) and not (isinstance(doc.data, dict) and "genarun" in doc.data):
        raise _not_a_tree(path)
    return doc


def _other_file(path: Path) -> bool:
    """A file that is there and is not named as a tree (`offline.py`, `README.md`)."""
    return path.suffix.lower() not in (".yaml", ".yml", ".json") and path.is_file()


def _not_a_tree(path: Path) -> TreeError:
    """Read as YAML, a script or a page gives a baffling syntax error: name the mix-up."""
    if path.suffix.lower() == ".py":
        hint = f"a Python script runs with: python {path}"
    else:
        hint = "name a tree file: a .yaml, .yml or .json file that starts with 'genarun: 1'"
    return TreeError(Problem("not a tree file", str(path), hint=hint))


def validate_document(doc: Document) -> LoadedTree:
    """Validate a parsed tree; raise TreeError listing every problem found, with the names,
    templates and types of the nodes that did validate."""
    loaded, problems, broken = check_document(doc)
    if problems and loaded is not None:
        # Report the names, templates and types of the nodes that are valid in the same pass,
        # so fixing one mistake does not reveal the next. Graph builds on tree, hence the late
        # import; it only happens on the way to an error.
        from genarun.graph.compile import follow_on_problems

        problems.extend(follow_on_problems(loaded, broken))
        problems.sort(key=lambda p: p.line or 0)
    if problems:
        raise TreeError(dedupe(problems))
    assert loaded is not None
    return loaded


def check_document(doc: Document) -> tuple[LoadedTree | None, list[Problem], set[str]]:
    """The validation of a parsed tree without raising: the tree as far as it is valid (None
    when its own fields are not: no name, no format version), the problems found, and the ids
    of the nodes left out (with their subtrees) because they are not valid. A file that holds
    no mapping raises TreeError."""
    from genarun.plugins import registry

    kinds = registry().kinds
    file = str(doc.path)
    problems: list[Problem] = []
    # Ids of nodes that did not validate, with their subtrees: names other nodes may use
    # without being told they are undefined (the node's own error says what to fix).
    broken: set[str] = set()
    data = doc.data
    if not isinstance(data, dict):
        raise TreeError(
            Problem("a tree file must hold a mapping with genarun, name and nodes", file, 1)
        )
    version = data.get("genarun")
    if "genarun" not in data:
        problems.append(
            Problem(
                "missing 'genarun: 1' (the format version)",
                file,
                1,
                hint="add 'genarun: 1' as the first line",
            )
        )
    elif version != 1 or isinstance(version, bool):
        problems.append(_version_problem(version, file, doc.line(("genarun",))))
    try:
        spec = TreeSpec.model_validate(data, strict=True)
    except ValidationError as exc:
        tree_problems = pydantic_problems(exc, TreeSpec, data, (), doc, None)
        # The version is reported above, with its fix.
        tree_problems = [
            p
            for p in tree_problems
            if p.message != "missing required field 'genarun'"
            and not p.message.startswith("field 'genarun':")
        ]
        problems.extend(tree_problems)
        spec = None
    models = data.get("models")
    if isinstance(models, dict):
        for alias, ref in models.items():
            problem = model_ref_problem(ref)
            if problem:
                place = ("models", alias) if problem[0] is None else ("models", alias, problem[0])
                problems.append(Problem(f"model '{alias}': {problem[1]}", file, doc.line(place)))
    nodes_raw = data.get("nodes")
    roots: list[TreeNode] = []
    if isinstance(nodes_raw, list):
        if not nodes_raw:
            problems.append(
                Problem(
                    "the tree has no nodes",
                    file,
                    doc.line(("nodes",)),
                    hint="add at least one node under 'nodes:'",
                )
            )
        roots = _validate_nodes(nodes_raw, ("nodes",), None, doc, kinds, problems, broken)
    if spec is not None and spec.site is not None:
        problems.extend(_site_problems(spec, roots, doc, broken))
    loaded = LoadedTree(doc.path, doc, spec, roots) if spec is not None else None
    return loaded, problems, broken


def _site_problems(
    spec: TreeSpec, roots: list[TreeNode], doc: Document, broken: set[str]
) -> list[Problem]:
    """`site:` names nodes of this tree: a published or generator node that does not exist."""
    assert spec.site is not None
    ids: set[str] = set(broken)
    stack = list(roots)
    while stack:
        node = stack.pop()
        ids.add(node.id)
        stack.extend(node.children)
    named = [("publish", n) for n in spec.site.published() or {}]
    if spec.site.generator:
        named.append(("generator", spec.site.generator))
    problems = []
    for field_name, node_id in named:
        if node_id not in ids:
            close = did_you_mean(node_id, ids)
            problems.append(
                Problem(
                    f"site.{field_name} names node '{node_id}', which is not in the tree",
                    str(doc.path),
                    doc.line(("site", field_name)),
                    hint=close or f"nodes: {', '.join(sorted(ids))}",
                )
            )
    return problems


def _version_problem(version: Any, file: str, line: int | None) -> Problem:
    if isinstance(version, int | float) and not isinstance(version, bool) and version > 1:
        return Problem(
            f"this tree is in format version {version}; this genarun reads version 1",
            file,
            line,
            hint="upgrade genarun to run it, or write it in format 1 and set 'genarun: 1' (docs/reference.md)",
        )
    shown = (
        f'"{version}"' if isinstance(version, str) else "null" if version is None else str(version)
    )
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
    broken: set[str],
) -> list[TreeNode]:
    """The valid nodes of `raw_nodes` and their valid children; the problems of the others go
    to `problems` and their ids (with their subtrees') to `broken`."""
    out: list[TreeNode] = []
    for i, raw in enumerate(raw_nodes):
        node = _validate_node(raw, (*loc, i), i, parent, doc, kinds, problems, broken)
        if node is not None:
            out.append(node)
    return out


def _validate_node(
    raw: Any,
    node_loc: Loc,
    i: int,
    parent: TreeNode | None,
    doc: Document,
    kinds: dict[str, Any],
    problems: list[Problem],
    broken: set[str],
) -> TreeNode | None:
    """One node validated by its kind, or None (its problems added) when it is not valid."""
    node = _node_spec(raw, node_loc, i, parent, doc, kinds, problems)
    if node is None:
        if isinstance(raw, dict):
            if isinstance(raw.get("id"), str):
                broken.add(raw["id"])
            # Its children are checked too, field by field: their mistakes are their own. Their
            # names and templates are not (they would see the broken node's vars and output),
            # so they count as broken.
            children = raw.get("children")
            if isinstance(children, list):
                for j, child in enumerate(children):
                    if isinstance(child, dict) and isinstance(child.get("id"), str):
                        broken.add(child["id"])
                    valid = _validate_node(
                        child, (*node_loc, "children", j), j, None, doc, kinds, problems, broken
                    )
                    broken.update(n.id for n in _subtree(valid))
        return None
    children = raw.get("children") or []
    if children:
        node.children = _validate_nodes(
            children, (*node_loc, "children"), node, doc, kinds, problems, broken
        )
    return node


def _subtree(node: TreeNode | None) -> list[TreeNode]:
    if node is None:
        return []
    return [node, *(n for child in node.children for n in _subtree(child))]


def _node_spec(
    raw: Any,
    node_loc: Loc,
    i: int,
    parent: TreeNode | None,
    doc: Document,
    kinds: dict[str, Any],
    problems: list[Problem],
) -> TreeNode | None:
    """The node itself (not its children) validated by its kind, or None with its problems."""
    file = str(doc.path)
    line = doc.line(node_loc)
    if not isinstance(raw, dict):
        problems.append(
            Problem(
                f"a node must be a mapping with id and kind, not {type(raw).__name__}",
                file,
                line,
            )
        )
        return None
    raw_id = raw.get("id")
    # An id of the wrong type or size is reported by the kind's model; messages say '#3'.
    node_name = raw_id if isinstance(raw_id, str) and len(raw_id) <= 100 else f"#{i + 1}"
    kind_name = raw.get("kind")
    if kind_name is None:
        problems.append(
            Problem(
                "missing 'kind'",
                file,
                line,
                node_name,
                hint=f"one of: {', '.join(sorted(kinds))}",
            )
        )
        return None
    if not isinstance(kind_name, str):
        problems.append(
            Problem(
                f"field 'kind': expected the name of a node kind, got {shown(kind_name)}",
                file,
                doc.line((*node_loc, "kind")),
                node_name,
                hint=f"one of: {', '.join(sorted(kinds))}",
            )
        )
        return None
    if kind_name not in kinds:
        hint = (
            did_you_mean(str(kind_name), set(kinds)) or f"known kinds: {', '.join(sorted(kinds))}"
        )
        problems.append(
            Problem(
                f"unknown kind '{kind_name}'",
                file,
                doc.line((*node_loc, "kind")),
                node_name,
                hint=hint,
            )
        )
        return None
    model = kinds[kind_name].params
    try:
        # Strict, like the JSON Schema editors check against: `enabled: yes` and
        # `retries: "3"` are text where a boolean or a number is due, not converted.
        # The context gives fields that name files (a schema file) the folder they are in.
        spec = model.model_validate(raw, strict=True, context={"tree_dir": doc.path.parent})
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, model, raw, node_loc, doc, node_name))
        return _without_unknown_fields(exc, raw, model, node_loc, line, parent, doc)
    return TreeNode(spec, node_loc, line, parent)


def _without_unknown_fields(
    exc: ValidationError,
    raw: dict[str, Any],
    model: Any,
    node_loc: Loc,
    line: int | None,
    parent: TreeNode | None,
    doc: Document,
) -> TreeNode | None:
    """The node as far as it is valid, checked further (its names, templates and model are
    then reported in the same pass as its field mistakes; those are already said, so it never
    runs): unknown fields and fields of the wrong shape are left out, and a misspelt field
    (`promt:`, `max_token:`) is read as the field it was meant to be, so the names in it are
    checked too. None when that still does not make a node (a required field is wrong, or the
    mistake is the node's as a whole)."""
    errors = exc.errors()
    if any(not e["loc"] or not isinstance(e["loc"][0], str) for e in errors):
        return None
    unknown = {e["loc"][0] for e in errors if e["type"] == "extra_forbidden" and len(e["loc"]) == 1}
    missing = {e["loc"][0] for e in errors if e["type"] == "missing" and len(e["loc"]) == 1}
    wrong = {e["loc"][0] for e in errors} - unknown - missing
    if wrong & _SCOPE_FIELDS:
        # Left out, they would change what the node and its children see: every name they
        # bring would be reported undefined, for a mistake already said.
        return None
    rest = {key: value for key, value in raw.items() if key not in unknown | wrong}
    meant = _meant_fields([key for key in raw if key in unknown], rest, model)
    # Every misspelling read as meant, else only those that fill a required field.
    for renames in (meant, {k: v for k, v in meant.items() if v in missing}):
        attempt = {**rest, **{meant_as: raw[key] for key, meant_as in renames.items()}}
        try:
            spec = model.model_validate(attempt, strict=True, context={"tree_dir": doc.path.parent})
        except ValidationError:
            continue
        for key, meant_as in renames.items():
            # Problems in the meant field's templates point at the line of the misspelt one.
            _alias_lines(doc, (*node_loc, key), (*node_loc, meant_as))
        return TreeNode(spec, node_loc, line, parent)
    return None


# Fields that bring names into scope (the node's, its children's), and the children.
_SCOPE_FIELDS = frozenset({"id", "vars", "foreach", "as", "children"})


def _meant_fields(unknown: list[str], present: dict[str, Any], model: Any) -> dict[str, str]:
    """Unknown field -> the field it was probably meant to be (as its did-you-mean says),
    for fields the node does not already have; of two misspellings of one field, the first
    written."""
    import difflib

    fields = sorted({f.alias or name for name, f in model.model_fields.items()} - set(present))
    meant: dict[str, str] = {}
    for key in unknown:
        close = difflib.get_close_matches(str(key), fields, n=1, cutoff=0.6)
        if close and close[0] not in meant.values():
            meant[key] = close[0]
    return meant


def _alias_lines(doc: Document, written: Loc, meant: Loc) -> None:
    """Lines of the value under `written` also found under `meant`."""
    size = len(written)
    for key, number in list(doc.lines.items()):
        if tuple(key[:size]) == written:
            doc.lines.setdefault((*meant, *key[size:]), number)


def dedupe(problems: list[Problem]) -> list[Problem]:
    """The problems without repeats (two checks that found the same mistake), in order."""
    seen: set[str] = set()
    out = []
    for p in problems:
        key = str(p)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out
