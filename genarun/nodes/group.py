"""`group`: a container for structure and vars; it has no output of its own."""

from __future__ import annotations

from genarun.nodes.base import ExecutionContext, NodeKind
from genarun.tree.schema import NodeBase


class GroupNode(NodeBase):
    pass


def run(ctx: ExecutionContext, node: GroupNode) -> None:
    return None


KIND = NodeKind(
    name="group",
    params=GroupNode,
    run=run,
    description="A container for structure and vars.",
    # It has no output to reuse: a cache lookup would only cost time.
    cacheable=False,
    output="none",
)
