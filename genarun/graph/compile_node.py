"""Compile one tree node: its scope (the names it may reference), its templates and
expressions, its vars, and the dependencies those names add."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, cast

from genarun.errors import Problem, did_you_mean
from genarun.graph.compiled import CompiledNode
from genarun.graph.node_fields import resolve_node_fields
from genarun.nodes.base import NodeKind
from genarun.retrieval.sources import resolve_sources
from genarun.tree.schema import IDENTIFIER, RESERVED_NAMES
from genarun.tree.template_core import (
    Compiled,
    TemplateProblem,
    compile_expression,
    compile_value,
    label,
)
from genarun.tree.validate import TreeNode

if TYPE_CHECKING:
    from jinja2 import TemplateSyntaxError


def compile_node(
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
    """One tree node compiled: its scope and its fields; what is wrong goes to `problems`
    (located), so that every node's problems are said at once."""
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
                problems.append(
                    undefined_problem(name, visible | others, file, line, spec.id, where)
                )

    def tn_line(suffix: tuple[str | int, ...]) -> int | None:
        line: int | None = doc_line((*tn.loc, *suffix))
        return line

    foreach = (
        compile_field(
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
        compile_field(
            compile_expression, spec.when, problems, file, tn_line(("when",)), spec.id, "when"
        )
        if spec.when is not None
        else None
    )

    var_list: list[tuple[str, Compiled]] = []
    visible = set(inner)
    for name, raw in spec.vars.items():
        check_var_name(name, problems, file, tn_line(("vars", name)), spec.id)
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
        compiled = compile_field(
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
        compiled = compile_field(
            compile_value, raw, problems, file, tn_line((alias,)), spec.id, alias
        )
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


def _jinja_syntax_error() -> type[TemplateSyntaxError]:
    """Jinja's syntax error class, imported only when an exception is being matched (an
    except clause's class is evaluated then): a tree without Jinja syntax never loads Jinja,
    and only Jinja raises it."""
    from jinja2 import TemplateSyntaxError

    return TemplateSyntaxError


def compile_field(
    fn: Any,
    value: Any,
    problems: list[Problem],
    file: str,
    line: int | None,
    node: str | None,
    where: str,
) -> Compiled | None:
    """One field compiled with `fn`; a template that cannot be read is a located Problem
    (added to `problems`) and None."""
    try:
        if fn is compile_expression:  # the executor names foreach in its errors itself
            expression: Compiled = compile_expression(value, "" if where == "foreach" else where)
            return expression
        return cast(Compiled | None, fn(value, where))
    except TemplateProblem as exc:
        problems.append(Problem(f"{label(where)}: {exc}", file, line, node, exc.hint))
        return None
    except _jinja_syntax_error() as exc:  # from Jinja's analysis of a template that parsed
        problems.append(
            Problem(
                f"{label(where)}: {(exc.message or 'invalid template').rstrip('.')}",
                file,
                line,
                node,
            )
        )
        return None


def check_var_name(
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


def undefined_problem(
    name: str,
    visible: set[str],
    file: str,
    line: int | None,
    node: str | None,
    where: str,
    note: str | None = None,
) -> Problem:
    """The problem of a field that names `name`, which is not in scope: what is, and the
    closest."""
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
