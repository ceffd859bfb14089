"""Compile a validated tree into a networkx DiGraph with resolved scopes.

The DiGraph (`CompiledTree.graph`) is built on first use: importing networkx takes longer than
a small run, and a run only needs the checks below (no cycle, an order), done on plain dicts.

Edges come from the parent/child structure and from the names each template and expression
references (parsed by Jinja, not guessed). Every name must be in scope; naming a node that is not
an ancestor adds a dependency edge. Errors found here stop the run before anything executes.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from jinja2 import TemplateSyntaxError

from genarun.errors import Problem, TreeError, did_you_mean
from genarun.graph.node_fields import resolve_node_fields
from genarun.graph.output_fields import output_field_problems
from genarun.graph.secret_policy import secret_problems
from genarun.graph.value_types import type_problems
from genarun.nodes.base import NodeKind
from genarun.retrieval.sources import resolve_sources
from genarun.tree.schema import IDENTIFIER, RESERVED_NAMES, seed_problem
from genarun.tree.templates import (
    Compiled,
    TemplateProblem,
    compile_expression,
    compile_value,
    label,
)
from genarun.tree.validate import LoadedTree, TreeNode

if TYPE_CHECKING:
    import networkx as nx

BUILTIN_NAMES = frozenset({"seed", "run"})


@dataclass
class CompiledNode:
    """One node of the tree, ready to execute."""

    id: str
    kind: NodeKind
    tree_node: TreeNode
    parent: str | None
    ancestors: tuple[str, ...]  # outermost first
    children: list[str]
    foreach: Compiled | None
    item_name: str
    when: Compiled | None
    vars: list[tuple[str, Compiled]]
    params: dict[str, Compiled]
    deps: frozenset[str]  # nodes named that are not ancestors: they must finish first
    loops: tuple[str, ...]  # foreach nodes among ancestors and self, outermost first
    skip_reason: str | None = None
    # The nodes its node-id fields name (kind.node_fields: a persistence node's `of`).
    named: dict[str, TreeNode] = field(default_factory=dict)
    # Nodes whose earlier foreach items it searches and waits for (genarun.retrieval.sources).
    progressive: frozenset[str] = frozenset()

    @property
    def spec(self) -> Any:
        return self.tree_node.spec

    @property
    def line(self) -> int | None:
        return self.tree_node.line

    @cached_property
    def node_path(self) -> str:
        return "/".join((*self.ancestors, self.id))


@dataclass
class CompiledTree:
    loaded: LoadedTree
    nodes: dict[str, CompiledNode]
    roots: list[str]
    tree_vars: list[tuple[str, Compiled]]
    matrix: dict[str, list[Any]]
    overrides: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def graph(self) -> nx.DiGraph:
        """The tree as a networkx DiGraph: a node per tree node (`kind`, `line`), an edge from
        parent to child (`edge="child"`) and from a referenced node to its user (`"ref"`)."""
        import networkx as nx

        graph = nx.DiGraph()
        for node in self.nodes.values():
            graph.add_node(node.id, kind=node.kind.name, line=node.line)
        for source, target, edge in _edges(self.nodes):
            graph.add_edge(source, target, edge=edge)
        return graph

    @property
    def name(self) -> str:
        return self.loaded.spec.name


# The most runs a matrix may expand into unless `--max-runs` says more: a cross product grows
# fast (7 keys of 10 values: 10,000,000 runs), and is refused before it is expanded.
MAX_RUNS = 10_000


def compile_tree(
    loaded: LoadedTree,
    overrides: dict[str, Any] | None = None,
    skip: set[str] | None = None,
    max_runs: int | None = MAX_RUNS,
    broken: frozenset[str] | set[str] = frozenset(),
) -> CompiledTree:
    """Compile a validated tree; `overrides` are `--set` values, `skip` node ids not to run,
    `max_runs` the most runs its matrix may give (None: no limit, for commands that do not
    expand it), `broken` ids of nodes left out because they did not validate (naming one is
    not reported: its own error is). Raises TreeError with every problem found."""
    file = str(loaded.path)
    spec = loaded.spec
    overrides = dict(overrides or {})
    problems: list[Problem] = []
    all_nodes: list[TreeNode] = []
    by_id: dict[str, TreeNode] = {}
    # A second node of the same id, and its subtree, are left out of the checks below: what
    # they name, and what names them, is ambiguous until the id is fixed.
    left_out: set[int] = set()
    broken = set(broken)
    for tn in loaded.walk():
        if tn.parent is not None and id(tn.parent) in left_out:
            left_out.add(id(tn))
            broken.add(tn.id)
        elif tn.id in by_id:
            first = by_id[tn.id]
            problems.append(
                Problem(
                    f"duplicate id '{tn.id}' (first used on line {first.line})",
                    file,
                    tn.line,
                    tn.id,
                    hint="ids must be unique in the tree",
                )
            )
            left_out.add(id(tn))
        else:
            by_id[tn.id] = tn
            all_nodes.append(tn)

    matrix = dict(spec.matrix)
    for name, value in overrides.items():
        if name in matrix:
            matrix[name] = [value]
        elif name not in spec.vars:
            hint = did_you_mean(name, set(spec.vars) | set(matrix))
            known = ", ".join(sorted(set(spec.vars) | set(matrix))) or "none"
            if name == "seed":  # the run seed has its own option
                hint = f"the run seed is set with --seed {overrides[name]}"
            problems.append(
                Problem(
                    f"--set {name}: the tree has no var or matrix key '{name}'",
                    file,
                    None,
                    hint=hint or f"vars and matrix keys: {known}",
                )
            )
    if max_runs is not None:
        problems.extend(_matrix_size(loaded, matrix, max_runs))
    for name in set(spec.vars) & set(matrix):
        problems.append(
            Problem(
                f"'{name}' is both a var and a matrix key",
                file,
                loaded.line(("matrix", name)),
                hint="rename one of them",
            )
        )
    global_names = set(BUILTIN_NAMES) | set(spec.vars) | set(matrix)
    for name in sorted((set(spec.vars) | set(matrix)) & set(by_id)):
        problems.append(
            Problem(
                f"'{name}' is both a tree var/matrix key and a node id",
                file,
                by_id[name].line,
                name,
                hint="rename one of them",
            )
        )

    # Tree vars: rendered once per run, in order; a var sees the vars before it.
    tree_vars: list[tuple[str, Compiled]] = []
    seen_vars = set(BUILTIN_NAMES) | set(matrix)
    for name, raw in spec.vars.items():
        _check_var_name(name, problems, file, loaded.line(("vars", name)), None)
        value = overrides.get(name, raw)
        compiled = _compile(
            compile_value, value, problems, file, loaded.line(("vars", name)), None, f"vars.{name}"
        )
        if compiled is not None:
            for ref in sorted(compiled.names - seen_vars):
                problems.append(
                    _undefined(
                        ref,
                        seen_vars,
                        file,
                        loaded.line(("vars", name)),
                        None,
                        f"vars.{name}",
                        "tree vars see only the matrix, seed, run and earlier vars",
                    )
                )
            tree_vars.append((name, compiled))
        seen_vars.add(name)

    descendants: dict[str, set[str]] = {}
    for tn in reversed(all_nodes):
        kept = [c for c in tn.children if id(c) not in left_out]
        descendants[tn.id] = {c.id for c in kept}.union(*(descendants[c.id] for c in kept))

    from genarun.plugins import registry

    kinds = registry().kinds
    compiled_nodes: dict[str, CompiledNode] = {}
    for tn in all_nodes:
        compiled_nodes[tn.id] = _compile_node(
            tn,
            kinds[tn.spec.kind],
            by_id,
            descendants,
            global_names,
            file,
            problems,
            loaded.line,
            frozenset(broken - set(by_id)),
        )
    problems += type_problems(compiled_nodes, file, loaded.line)
    problems += output_field_problems(compiled_nodes, file, loaded.line, loaded.path.parent)
    problems += secret_problems(loaded, compiled_nodes, tree_vars, matrix)

    successors: dict[str, dict[str, None]] = {node_id: {} for node_id in compiled_nodes}
    for source, target, _edge in _edges(compiled_nodes):
        successors[source][target] = None
    cycle = _find_cycle(successors)
    if cycle:
        names = [*cycle, cycle[0]]
        where = ", ".join(f"'{n}' line {by_id[n].line}" for n in names[:-1])
        problems.append(
            Problem(
                f"dependency cycle: {' -> '.join(names)} ({where})",
                file,
                by_id[names[0]].line,
                names[0],
                hint="remove one of these references",
            )
        )

    for node_id in sorted((skip or set()) - set(compiled_nodes)):  # a typo must not run the node
        hint = (
            did_you_mean(node_id, set(compiled_nodes))
            or f"nodes: {', '.join(sorted(compiled_nodes))}"
        )
        problems.append(
            Problem(f"--skip {node_id}: the tree has no node '{node_id}'", file, None, hint=hint)
        )
    if problems:
        raise TreeError(sorted(problems, key=lambda p: p.line or 0))
    _mark_skipped(compiled_nodes, _topological_order(successors), skip or set())
    roots = [tn.id for tn in loaded.roots]
    return CompiledTree(loaded, compiled_nodes, roots, tree_vars, matrix, overrides)


def follow_on_problems(loaded: LoadedTree, broken: set[str]) -> list[Problem]:
    """The compile-time problems (names, templates, types, cycles) of the nodes of a tree
    that did validate, `loaded` holding only those; `broken` the ids of those that did not."""
    try:
        compile_tree(loaded, max_runs=None, broken=frozenset(broken))
    except TreeError as exc:
        return exc.problems
    return []


def _edges(nodes: dict[str, CompiledNode]) -> Iterator[tuple[str, str, str]]:
    """(source, target, "child" or "ref") for every edge, in a stable order."""
    for node in nodes.values():
        if node.parent:
            yield node.parent, node.id, "child"
        for dep in sorted(node.deps):
            yield dep, node.id, "ref"


def _find_cycle(successors: dict[str, dict[str, None]]) -> list[str] | None:
    """The nodes of the first cycle a depth-first search meets (nodes and edges in insertion
    order, as networkx's find_cycle searches), or None."""
    done: set[str] = set()
    for start in successors:
        if start in done:
            continue
        path, on_path, pending = [start], {start: 0}, [iter(successors[start])]
        while pending:
            following = next(pending[-1], None)
            if following is None:
                finished = path.pop()
                del on_path[finished]
                done.add(finished)
                pending.pop()
            elif following in on_path:
                return path[on_path[following] :]
            elif following not in done:
                on_path[following] = len(path)
                path.append(following)
                pending.append(iter(successors[following]))
    return None


def _topological_order(successors: dict[str, dict[str, None]]) -> list[str]:
    """Every node after the nodes with an edge to it (the graph has no cycle)."""
    waiting = dict.fromkeys(successors, 0)
    for targets in successors.values():
        for target in targets:
            waiting[target] += 1
    ready = deque(node for node, count in waiting.items() if count == 0)
    order: list[str] = []
    while ready:
        node = ready.popleft()
        order.append(node)
        for target in successors[node]:
            waiting[target] -= 1
            if waiting[target] == 0:
                ready.append(target)
    return order


def _matrix_size(loaded: LoadedTree, matrix: dict[str, list[Any]], max_runs: int) -> list[Problem]:
    """The matrix's run count, refused when over `max_runs` (counted, not expanded)."""
    runs = math.prod(len(values) for values in matrix.values())
    if runs <= max_runs:
        return []
    sizes = " x ".join(f"{len(values)} {key}" for key, values in matrix.items())
    return [
        Problem(
            f"matrix: {sizes} make {runs:,} runs, over the limit of {max_runs:,}",
            str(loaded.path),
            loaded.line(("matrix",)),
            hint=f"fix keys to one value with --set KEY=VALUE, or pass --max-runs {runs} "
            "if you mean to run them all",
        )
    ]


def check_matrix_sets(loaded: LoadedTree, overrides: dict[str, Any]) -> dict[str, Any]:
    """`--set KEY=VALUE` for matrix keys, as a user typed them: a value written as one of the
    key's values (`--set n=3` for "3") becomes that value; a seed must be one; a value that
    looks like a misspelling of one (`Photo` for `photo`) is an error. Any other value runs
    as given: a new prompt, a new network (a list), a new number. Returns the overrides to
    compile with."""
    file = str(loaded.path)
    out = dict(overrides)
    problems: list[Problem] = []
    for name, value in overrides.items():
        values = loaded.spec.matrix.get(name)
        if values is None:
            continue
        line = loaded.line(("matrix", name))
        if name == "seed" and seed_problem(value):
            problems.append(Problem(f"--set seed={value}: {seed_problem(value)}", file, line))
            continue
        canon = json.dumps(value, sort_keys=True, default=str)
        if any(json.dumps(v, sort_keys=True, default=str) == canon for v in values):
            continue
        same_text = [v for v in values if str(v) == str(value)]
        if same_text:
            out[name] = same_text[0]
            continue
        if not isinstance(value, str):  # a list, a number, a mapping: plainly a new value
            continue
        # Only a string can be a misspelling, and only of one of the key's string values
        # (`--set 'network=[painter, writer]'` is a new network, not a typo of another).
        texts = [v for v in values if isinstance(v, str)]
        close = [t for t in texts if t.casefold() == value.casefold()]
        hint = f"did you mean '{close[0]}'?" if close else did_you_mean(value, texts)
        if hint:
            problems.append(
                Problem(
                    f"--set {name}={value}: '{value}' is not a value of matrix key '{name}'",
                    file,
                    line,
                    hint=f"{hint} values: {', '.join(map(str, values))}",
                )
            )
    if problems:
        raise TreeError(problems)
    return out


def _compile_node(
    tn: TreeNode,
    kind: NodeKind,
    by_id: dict[str, TreeNode],
    descendants: dict[str, set[str]],
    global_names: set[str],
    file: str,
    problems: list[Problem],
    doc_line: Any,
    broken: frozenset[str],
) -> CompiledNode:
    spec = tn.spec
    ancestors: list[TreeNode] = []
    p = tn.parent
    while p is not None:
        ancestors.insert(0, p)
        p = p.parent
    ancestor_ids = tuple(a.id for a in ancestors)
    loops = tuple(a.id for a in ancestors if a.spec.foreach is not None)
    if spec.foreach is not None:
        loops = (*loops, spec.id)

    # Names visible from the parent's scope (what `foreach` sees).
    outer: set[str] = set(global_names) | set(ancestor_ids)
    for a in ancestors:
        outer |= set(a.spec.vars)
        if a.spec.foreach is not None:
            outer |= {a.spec.as_ or "item", "index"}
    inner = set(outer)
    if spec.foreach is not None:
        inner |= {spec.as_ or "item", "index"}

    # Nodes it may name besides its ancestors; tested per name, because building this set
    # for every node made compiling quadratic (a 60,000-node tree took minutes).
    def other_node(name: str) -> bool:
        return (
            name in by_id
            and name != spec.id
            and name not in descendants[spec.id]
            and name not in ancestor_ids
        )

    deps: set[str] = set()

    def check(
        compiled: Compiled | None, visible: set[str], where: str, loc_suffix: tuple[str | int, ...]
    ) -> None:
        if compiled is None:
            return
        line = tn_line(loc_suffix)
        for name in sorted(compiled.names):
            if name in visible:
                continue
            if name == spec.id:
                problems.append(
                    Problem(
                        f"{where} refers to the node's own output '{name}'",
                        file,
                        line,
                        spec.id,
                        hint="a node cannot use its own output; move the template to a child node",
                    )
                )
            elif name in descendants[spec.id]:
                problems.append(
                    Problem(
                        f"{where} refers to '{name}', a node inside this node's own subtree",
                        file,
                        line,
                        spec.id,
                        hint="children run after their parent: move the reference into a child node",
                    )
                )
            elif other_node(name):
                deps.add(name)
            elif name in broken:
                continue  # a node that did not validate: its own error is reported
            else:
                others = {n for n in by_id if other_node(n)}
                problems.append(_undefined(name, visible | others, file, line, spec.id, where))

    def tn_line(suffix: tuple[str | int, ...]) -> int | None:
        line: int | None = doc_line((*tn.loc, *suffix))
        return line

    foreach = (
        _compile(
            compile_expression,
            spec.foreach,
            problems,
            file,
            tn_line(("foreach",)),
            spec.id,
            "foreach",
        )
        if spec.foreach is not None
        else None
    )
    if isinstance(spec.foreach, bool | int | float):  # a literal that can never be a list
        problems.append(
            Problem(
                f"foreach: {str(spec.foreach).lower() if isinstance(spec.foreach, bool) else spec.foreach} is not a list",
                file,
                tn_line(("foreach",)),
                spec.id,
                hint="give a list ([a, b]), a node name, or an expression such as range(3)",
            )
        )
        foreach = None
    check(foreach, outer, "foreach", ("foreach",))
    when = (
        _compile(compile_expression, spec.when, problems, file, tn_line(("when",)), spec.id, "when")
        if spec.when is not None
        else None
    )

    var_list: list[tuple[str, Compiled]] = []
    visible = set(inner)
    for name, raw in spec.vars.items():
        _check_var_name(name, problems, file, tn_line(("vars", name)), spec.id)
        if name in by_id:
            problems.append(
                Problem(
                    f"var '{name}' has the same name as node '{name}'",
                    file,
                    tn_line(("vars", name)),
                    spec.id,
                    hint="rename the var",
                )
            )
        compiled = _compile(
            compile_value, raw, problems, file, tn_line(("vars", name)), spec.id, f"vars.{name}"
        )
        check(compiled, visible, f"vars.{name}", ("vars", name))
        if compiled is not None:
            var_list.append((name, compiled))
        visible.add(name)
    check(when, visible, "when", ("when",))

    named, named_deps, named_problems = resolve_node_fields(
        tn, kind.node_fields, by_id, descendants[spec.id], ancestor_ids, file, tn_line, broken
    )
    deps |= named_deps
    problems += named_problems
    sources = resolve_sources(
        tn, kind.source_fields, by_id, descendants[spec.id], ancestor_ids, file, tn_line, broken
    )
    deps |= sources.deps
    problems += sources.problems

    params: dict[str, Compiled] = {}
    for name, raw in spec.param_fields().items():
        if name in kind.raw_fields:
            continue
        alias = type(spec).model_fields[name].alias or name
        compiled = _compile(compile_value, raw, problems, file, tn_line((alias,)), spec.id, alias)
        check(compiled, visible, f"field '{alias}'", (alias,))
        if compiled is not None:
            params[name] = compiled

    return CompiledNode(
        id=spec.id,
        kind=kind,
        tree_node=tn,
        parent=tn.parent.id if tn.parent else None,
        ancestors=ancestor_ids,
        children=[c.id for c in tn.children],
        foreach=foreach,
        item_name=spec.as_ or "item",
        when=when,
        vars=var_list,
        params=params,
        deps=frozenset(deps),
        loops=loops,
        named=named,
        progressive=frozenset(sources.progressive),
    )


def _compile(
    fn: Any,
    value: Any,
    problems: list[Problem],
    file: str,
    line: int | None,
    node: str | None,
    where: str,
) -> Compiled | None:
    try:
        if fn is compile_expression:  # the executor names foreach in its errors itself
            expression: Compiled = compile_expression(value, "" if where == "foreach" else where)
            return expression
        return cast(Compiled | None, fn(value, where))
    except TemplateProblem as exc:
        problems.append(Problem(f"{label(where)}: {exc}", file, line, node, exc.hint))
        return None
    except TemplateSyntaxError as exc:  # from Jinja's analysis of a template that parsed
        problems.append(
            Problem(
                f"{label(where)}: {(exc.message or 'invalid template').rstrip('.')}",
                file,
                line,
                node,
            )
        )
        return None


def _check_var_name(
    name: str, problems: list[Problem], file: str, line: int | None, node: str | None
) -> None:
    """A var becomes a template variable: it must be an identifier that hides no built-in."""
    if not IDENTIFIER.fullmatch(name):
        problems.append(
            Problem(
                f"var '{name}' is not an identifier, so templates cannot name it",
                file,
                line,
                node,
                hint=f"use letters, digits and _: {re.sub(r'[^A-Za-z0-9_]', '_', name).lstrip('0123456789') or 'topic'}",
            )
        )
    elif name in RESERVED_NAMES:
        problems.append(
            Problem(
                f"var name '{name}' is reserved",
                file,
                line,
                node,
                hint=_RESERVED_HINTS.get(name, "choose another name"),
            )
        )


_RESERVED_HINTS = {
    "seed": "the run seed is set with 'seed:' at the top of the tree or --seed; choose another name",
    "item": "it is the foreach item; choose another name, or name the item with 'as:'",
    "index": "it is the foreach position; choose another name",
    "run": "it holds the run's id, name and started time; choose another name",
}


def _undefined(
    name: str,
    visible: set[str],
    file: str,
    line: int | None,
    node: str | None,
    where: str,
    note: str | None = None,
) -> Problem:
    hint = did_you_mean(name, visible)
    shown = ", ".join(sorted(visible))
    detail = f"names in scope: {shown}" + (f"; {note}" if note else "")
    return Problem(
        f"{where}: undefined name '{name}'",
        file,
        line,
        node,
        hint=f"{hint} {detail}" if hint else detail,
    )


def _mark_skipped(nodes: dict[str, CompiledNode], order: list[str], skip: set[str]) -> None:
    """Disabled and skipped nodes, their subtrees, and nodes that depend on them are skipped;
    `order` lists each node after its parent and the nodes it depends on."""
    for node_id in order:
        node = nodes[node_id]
        if not node.spec.enabled:
            node.skip_reason = "disabled (enabled: false)"
        elif node_id in skip:
            node.skip_reason = "skipped (--skip)"
        elif node.parent and nodes[node.parent].skip_reason:
            node.skip_reason = f"parent '{node.parent}' is not run"
        else:
            for dep in sorted(node.deps):
                if nodes[dep].skip_reason:
                    node.skip_reason = f"depends on '{dep}', which is not run"
                    break
