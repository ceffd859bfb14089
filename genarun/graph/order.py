"""The graph checks compile_tree runs on plain dicts (no networkx import): a cycle, a
topological order, and which nodes are skipped."""

from __future__ import annotations

from collections import deque

from genarun.graph.compiled import CompiledNode


def find_cycle(successors: dict[str, dict[str, None]]) -> list[str] | None:
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


def topological_order(successors: dict[str, dict[str, None]]) -> list[str]:
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


def mark_skipped(nodes: dict[str, CompiledNode], order: list[str], skip: set[str]) -> None:
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
