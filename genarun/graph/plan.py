"""Plans for rerun, --only and resume: which executions must run again, and why.

Pure graph work: node references such as `cover[3]`, the executions that depend on a set of
targets (descendants and nodes that reference them, transitively), the nodes needed by others
(ancestors and referenced nodes), and the nodes whose definition changed between two trees.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterable
from typing import Any

from genarun.errors import UserError, did_you_mean
from genarun.graph.compiled import CompiledTree, shared_loop_count
from genarun.tree.template_core import attributes_read
from genarun.tree.validate import LoadedTree

# A node and a foreach prefix: ("cover", (3,)) is every execution of cover under item 3.
Target = tuple[str, tuple[int, ...]]

_NODE_REF = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[[0-9]+\])*)")


def parse_node_ref(text: str) -> Target:
    """`cover`, `cover[3]` or `cover[3][1]` as a node id and foreach indexes."""
    match = _NODE_REF.fullmatch(text.strip())
    if not match:
        raise UserError(
            f"--node {text!r}: expected a node id, optionally with item indexes such as cover[3] or cover[3][1]"
        )
    indexes = tuple(int(i) for i in re.findall(r"\[([0-9]+)\]", match.group(2)))
    return match.group(1), indexes


def format_target(node_id: str, path: Iterable[int]) -> str:
    return node_id + "".join(f"[{i}]" for i in path)


def check_node_ids(compiled: CompiledTree, ids: Iterable[str], option: str) -> None:
    """Raise UserError for ids that are not nodes of the tree, with a did-you-mean."""
    for node_id in ids:
        base = node_id.split("[", 1)[0]
        if node_id not in compiled.nodes and base in compiled.nodes and option != "--node":
            raise UserError(
                f"{option} {node_id}: {option} takes whole nodes ({option} {base}); to run one "
                f"foreach item again, use genarun rerun RUN --node {node_id}"
            )
        if node_id not in compiled.nodes:
            hint = did_you_mean(node_id, set(compiled.nodes))
            known = ", ".join(sorted(compiled.nodes))
            raise UserError(
                f"{option} {node_id}: the tree has no node '{node_id}' ({hint or 'nodes: ' + known})"
            )


def dependents(compiled: CompiledTree, targets: dict[Target, str]) -> dict[Target, str]:
    """The targets and every execution that depends on them, each with a reason.

    A child keeps its parent's foreach prefix; a node that references a target keeps only the
    foreach levels it shares with it (from outside a foreach it sees all the items)."""
    out: dict[Target, str] = dict(targets)
    queue = deque(targets)
    while queue:
        node_id, prefix = queue.popleft()
        node = compiled.nodes[node_id]
        for succ in compiled.graph.successors(node_id):
            edge = compiled.graph.edges[node_id, succ].get("edge")
            if edge == "child":
                target, reason = (succ, prefix), f"under '{node_id}'"
            else:
                shared = shared_loop_count(compiled.nodes[succ].loops, node.loops)
                target, reason = (succ, prefix[:shared]), f"uses '{node_id}'"
            if not any(covers(t, target) for t in out):
                out[target] = reason
                queue.append(target)
    return out


def covers(broad: Target, narrow: Target) -> bool:
    """Whether target `broad` includes every execution of target `narrow`."""
    return broad[0] == narrow[0] and narrow[1][: len(broad[1])] == broad[1]


def needed_by(compiled: CompiledTree, node_ids: set[str]) -> set[str]:
    """Ancestors and referenced nodes of `node_ids`, transitively (outside `node_ids`)."""
    needed: set[str] = set()
    queue = deque(node_ids)
    while queue:
        node = compiled.nodes[queue.popleft()]
        for other in (*node.ancestors, *node.deps):
            if other not in needed and other not in node_ids:
                needed.add(other)
                queue.append(other)
    return needed


def subtree(compiled: CompiledTree, node_ids: Iterable[str]) -> set[str]:
    """The nodes and all their descendants."""
    out: set[str] = set()
    queue = deque(node_ids)
    while queue:
        node_id = queue.popleft()
        if node_id not in out:
            out.add(node_id)
            queue.extend(compiled.nodes[node_id].children)
    return out


def changed_nodes(old: LoadedTree | None, new: CompiledTree) -> dict[str, str]:
    """Nodes of `new` whose definition differs from `old`, with what changed.

    Compares each node's fields (not `description` or `children`), its parent, the tree vars
    it names (directly or through other vars) and the model aliases it names."""
    if old is None:
        return {node_id: "the source run's tree could not be read" for node_id in new.nodes}
    old_nodes = {tn.id: tn for tn in old.walk()}
    changed_vars = _changed_keys(old.spec.vars, new.loaded.spec.vars)
    for name, compiled in new.tree_vars:  # a var that uses a changed var changes too
        if compiled.names & changed_vars:
            changed_vars.add(name)
    changed_models = _changed_keys(old.spec.models, new.loaded.spec.models)
    out: dict[str, str] = {}
    for node_id, node in new.nodes.items():
        before = old_nodes.get(node_id)
        if before is None:
            out[node_id] = "new in the tree"
            continue
        if before.spec.kind != node.spec.kind:
            out[node_id] = f"kind changed ({before.spec.kind} -> {node.spec.kind})"
            continue
        fields = _changed_keys(_definition(before.spec), _definition(node.spec))
        if fields:
            out[node_id] = (
                f"field{'s' if len(fields) > 1 else ''} {', '.join(sorted(fields))} changed"
            )
            continue
        old_parent = before.parent.id if before.parent else None
        if old_parent != node.parent:
            out[node_id] = (
                f"moved (parent was {old_parent or 'the top level'}, now {node.parent or 'the top level'})"
            )
            continue
        used_vars = sorted(_names_used(node) & changed_vars)
        if used_vars:
            out[node_id] = (
                f"tree var{'s' if len(used_vars) > 1 else ''} {', '.join(used_vars)} changed"
            )
            continue
        used_models = sorted(_strings(node.spec.param_fields()) & changed_models)
        if used_models:
            out[node_id] = f"model alias {', '.join(used_models)} changed"
    return out


def _definition(spec: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = spec.model_dump(
        by_alias=True, exclude={"children", "description"}, mode="json"
    )
    return dumped


def _changed_keys(old: dict[str, Any], new: dict[str, Any]) -> set[str]:
    def canon(value: Any) -> str:
        return json.dumps(value, sort_keys=True, default=str)

    return {
        k
        for k in set(old) | set(new)
        if k not in old or k not in new or canon(old[k]) != canon(new[k])
    }


def _names_used(node: Any) -> set[str]:
    names: set[str] = set()
    for compiled in (*node.params.values(), node.foreach, node.when, *(c for _n, c in node.vars)):
        if compiled is not None:
            names |= compiled.names
    return names


def _strings(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_strings(v) for v in value.values())) if value else set()
    if isinstance(value, list | tuple):
        return set().union(*(_strings(v) for v in value)) if value else set()
    return set()


# `run.name` is the tree's name; `run.id` and `run.started` are new in every run.
_RUN_STABLE = frozenset({"name"})


def run_bound_nodes(compiled: CompiledTree) -> dict[str, str]:
    """Nodes whose templates read `run.id` or `run.started` (directly, or through tree vars
    that do), with why: a run that takes outputs from another run (rerun, --only) runs them
    again, since their rendered parameters differ from those the stored outputs saw."""

    def reads_run(value: Any) -> set[str]:
        return set(attributes_read(value, "run")) - _RUN_STABLE if value is not None else set()

    bound_vars: dict[str, str] = {}
    for name, value in compiled.tree_vars:
        fields = reads_run(value)
        if fields:
            bound_vars[name] = _run_fields(fields)
        else:
            via = sorted(value.names & set(bound_vars))
            if via:
                bound_vars[name] = bound_vars[via[0]]
    out: dict[str, str] = {}
    for node_id, node in compiled.nodes.items():
        values = [*node.params.values(), node.foreach, node.when, *(v for _n, v in node.vars)]
        fields = set().union(*(reads_run(v) for v in values))
        via = sorted(set().union(*(v.names for v in values if v is not None)) & set(bound_vars))
        if fields:
            out[node_id] = f"uses {_run_fields(fields)}, new in each run"
        elif via:
            out[node_id] = (
                f"uses tree var {via[0]}, which uses {bound_vars[via[0]]}, new in each run"
            )
    return out


def _run_fields(fields: set[str]) -> str:
    return " and ".join(f"run.{f}" if f != "*" else "run" for f in sorted(fields))
