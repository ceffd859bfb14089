"""The structure of a compiled tree as indented text and as a Mermaid flowchart."""

from __future__ import annotations

from genarun.graph.compiled import CompiledNode, CompiledTree


def _label(node: CompiledNode) -> str:
    parts = [f"{node.id} ({node.kind.name})"]
    if node.spec.foreach is not None:
        foreach = node.spec.foreach if isinstance(node.spec.foreach, str) else "[...]"
        parts.append(f"foreach {foreach} as {node.item_name}")
    if node.spec.when is not None:
        parts.append(f"when {node.spec.when}")
    if node.deps:
        parts.append("needs " + ", ".join(sorted(node.deps)))
    if node.skip_reason:
        parts.append(node.skip_reason)
    return "  ".join(parts)


def render_text(compiled: CompiledTree) -> str:
    """An indented outline: one node per line with its kind, foreach, when and dependencies."""
    lines = [f"{compiled.name}"]
    if compiled.matrix:
        lines.append("matrix: " + ", ".join(f"{k} x{len(v)}" for k, v in compiled.matrix.items()))

    def walk(node_ids: list[str], depth: int) -> None:
        for node_id in node_ids:
            node = compiled.nodes[node_id]
            lines.append("  " * depth + "- " + _label(node))
            walk(node.children, depth + 1)

    walk(compiled.roots, 1)
    return "\n".join(lines)


def render_mermaid(compiled: CompiledTree) -> str:
    """A Mermaid flowchart: solid arrows parent -> child, dotted arrows for references."""
    lines = ["flowchart TD"]
    for node in compiled.nodes.values():
        shape = (
            f'{node.id}[["{node.id}: {node.kind.name} (foreach)"]]'
            if node.spec.foreach is not None
            else f'{node.id}["{node.id}: {node.kind.name}"]'
        )
        lines.append(f"  {shape}")
    for source, target, data in compiled.graph.edges(data=True):
        arrow = "-->" if data.get("edge") == "child" else "-.->"
        lines.append(f"  {source} {arrow} {target}")
    return "\n".join(lines)
