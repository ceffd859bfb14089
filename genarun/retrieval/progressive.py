"""Progressive retrieval at run time: item i of a foreach sees, and waits for, what items
0..i-1 of a node in that foreach stored (see `sources`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from genarun.retrieval.sources import shared_loop_count

if TYPE_CHECKING:
    from genarun.graph.compile import CompiledNode
    from genarun.retrieval.stored import RowInfo
    from genarun.run.state import RunState


def _rule(
    node: CompiledNode, target: CompiledNode, path: tuple[int, ...]
) -> tuple[tuple[int, ...], int, int] | None:
    """(the shared foreach items above, the level, this item's index) or None."""
    shared = shared_loop_count(node.loops, target.loops)
    if shared == 0:
        return None
    level = shared - 1
    return path[:level], level, path[level]


def earlier_items_ready(
    run: RunState,
    node: CompiledNode,
    path: tuple[int, ...],
    pending: Mapping[tuple[str, str], Mapping[tuple[int, ...], int]],
) -> bool:
    """Whether every earlier item of each progressive source has finished (with its subtree
    down to the source node)."""
    for name in node.progressive:
        target = run.compiled.nodes[name]
        rule = _rule(node, target, path)
        if rule is None:
            continue
        base, level, own = rule
        loop_node = target.loops[level]
        chain = (*target.ancestors, target.id)
        members = chain[chain.index(loop_node) + 1 :]
        results = run.results.get(loop_node, {})
        for j in range(own):
            item = (*base, j)
            result = results.get(item)
            if result is None:
                return False
            if result.status != "done":
                continue  # its subtree never runs
            for member in members:
                counts = pending.get((run.id, member))
                if counts is not None and counts.get(item, 0) > 0:
                    return False
    return True


def earlier_items_filter(
    run_id: str, node: CompiledNode, path: tuple[int, ...], compiled_nodes: dict[str, Any]
) -> Callable[[RowInfo], bool] | None:
    """Which stored rows an execution may see: of progressive sources in this run, only the
    earlier items; everything else as it is. None when nothing is filtered."""
    rules: dict[str, tuple[tuple[int, ...], int, int] | None] = {}
    for name in node.progressive:
        rules[name] = _rule(node, compiled_nodes[name], path)
    if not rules:
        return None

    def keep(row: RowInfo) -> bool:
        if row.run_id != run_id or row.node_id not in rules:
            return True
        rule = rules[row.node_id]
        if rule is None:  # this node itself outside any foreach: nothing earlier in this run
            return False
        base, level, own = rule
        return len(row.path) > level and row.path[:level] == base and row.path[level] < own

    return keep
