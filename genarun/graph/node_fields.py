"""Fields whose value is another node's id (a `persistence` node's `of`).

DESIGN.md's scope rule applies to them as to a name in a template: naming a node that is not an
ancestor adds a dependency edge, so that node finishes first. Naming the node itself, a node of
its own subtree (it runs later) or no node at all is a mistake found at compile time.
"""

from __future__ import annotations

from collections.abc import Callable

from genarun.errors import Problem, did_you_mean
from genarun.tree.validate import TreeNode


def foreach_loops(tn: TreeNode) -> tuple[str, ...]:
    """The foreach nodes among a node's ancestors and itself, outermost first."""
    loops: list[str] = []
    node: TreeNode | None = tn
    while node is not None:
        if node.spec.foreach is not None:
            loops.insert(0, node.id)
        node = node.parent
    return tuple(loops)


def resolve_node_fields(
    tn: TreeNode,
    fields: frozenset[str],
    by_id: dict[str, TreeNode],
    descendants: set[str],
    ancestor_ids: tuple[str, ...],
    file: str,
    line: Callable[[tuple[str | int, ...]], int | None],
    broken: frozenset[str] = frozenset(),
) -> tuple[dict[str, TreeNode], set[str], list[Problem]]:
    """The nodes named by `fields` (field -> node), the dependency edges they add, and the
    mistakes: each names its field's line and the nodes that could be named instead. A name in
    `broken` (a node that did not validate) is no mistake of this node."""
    named: dict[str, TreeNode] = {}
    deps: set[str] = set()
    problems: list[Problem] = []
    spec = tn.spec
    for name in sorted(fields):
        value = getattr(spec, name, None)
        if value is None:
            continue
        alias = type(spec).model_fields[name].alias or name
        where = line((alias,))
        if isinstance(value, str) and value in broken and value not in by_id:
            continue
        if not isinstance(value, str) or value not in by_id:
            hint = did_you_mean(str(value), set(by_id) - {spec.id} - descendants)
            problems.append(
                Problem(
                    f"{alias}: no node '{value}' in the tree",
                    file,
                    where,
                    spec.id,
                    hint=hint or f"nodes: {', '.join(sorted(set(by_id) - {spec.id}))}",
                )
            )
        elif value == spec.id:
            problems.append(
                Problem(
                    f"{alias}: '{value}' is this node itself",
                    file,
                    where,
                    spec.id,
                    hint="name another node of the tree",
                )
            )
        elif value in descendants:
            problems.append(
                Problem(
                    f"{alias}: '{value}' is inside this node's own subtree, which runs after it",
                    file,
                    where,
                    spec.id,
                    hint=f"move this node below '{value}', or beside it",
                )
            )
        else:
            named[name] = by_id[value]
            if value not in ancestor_ids:
                deps.add(value)  # it must finish first
    return named, deps, problems
