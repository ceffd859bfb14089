"""Compile a validated tree into a networkx DiGraph with resolved scopes.

The DiGraph (`CompiledTree.graph`) is built on first use: importing networkx takes longer than
a small run, and a run only needs the checks below (no cycle, an order), done on plain dicts.

Edges come from the parent/child structure and from the names each template and expression
references (parsed by Jinja, not guessed). Every name must be in scope; naming a node that is not
an ancestor adds a dependency edge. Errors found here stop the run before anything executes.
"""

from __future__ import annotations

from typing import Any

from genarun.errors import Problem, TreeError, did_you_mean
from genarun.graph.compile_node import (
    check_var_name,
    compile_field,
    compile_node,
    undefined_problem,
)
from genarun.graph.compiled import CompiledNode, CompiledTree, tree_edges
from genarun.graph.matrix import MAX_RUNS, matrix_size_problems
from genarun.graph.order import find_cycle, mark_skipped, topological_order
from genarun.graph.output_fields import output_field_problems
from genarun.graph.secret_policy import secret_problems
from genarun.graph.value_types import type_problems
from genarun.tree.template_core import Compiled, compile_value
from genarun.tree.validate import LoadedTree, TreeNode

BUILTIN_NAMES = frozenset({"seed", "run"})


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
    compiled, problems = compile_with_problems(loaded, overrides, skip, max_runs, broken)
    if problems:
        raise TreeError(problems)
    return compiled


def compile_with_problems(
    loaded: LoadedTree,
    overrides: dict[str, Any] | None = None,
    skip: set[str] | None = None,
    max_runs: int | None = MAX_RUNS,
    broken: frozenset[str] | set[str] = frozenset(),
) -> tuple[CompiledTree, list[Problem]]:
    """`compile_tree`, returning its problems (sorted by line) with the tree compiled as far as
    it could be: the nodes without problems of their own can still be checked further (the
    models they name), so that one pass reports every mistake of a file."""
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
        problems.extend(matrix_size_problems(loaded, matrix, max_runs))
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
        check_var_name(name, problems, file, loaded.line(("vars", name)), None)
        value = overrides.get(name, raw)
        # A value given with --set is not on the var's line: its mistakes are the option's.
        given = name in overrides
        where = f"--set {name}" if given else f"vars.{name}"
        var_line = None if given else loaded.line(("vars", name))
        compiled = compile_field(compile_value, value, problems, file, var_line, None, where)
        if compiled is not None:
            for ref in sorted(compiled.names - seen_vars):
                problems.append(
                    undefined_problem(
                        ref,
                        seen_vars,
                        file,
                        var_line,
                        None,
                        where,
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
        compiled_nodes[tn.id] = compile_node(
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
    for source, target, _edge in tree_edges(compiled_nodes):
        successors[source][target] = None
    cycle = find_cycle(successors)
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
    if not cycle:  # an order exists
        mark_skipped(compiled_nodes, topological_order(successors), skip or set())
    roots = [tn.id for tn in loaded.roots if tn.id in compiled_nodes]
    tree = CompiledTree(loaded, compiled_nodes, roots, tree_vars, matrix, overrides)
    return tree, sorted(problems, key=lambda p: p.line or 0)


def follow_on_problems(loaded: LoadedTree, broken: set[str]) -> list[Problem]:
    """The compile-time problems (names, templates, types, cycles) of the nodes of a tree
    that did validate, `loaded` holding only those; `broken` the ids of those that did not."""
    try:
        compile_tree(loaded, max_runs=None, broken=frozenset(broken))
    except TreeError as exc:
        return exc.problems
    return []
