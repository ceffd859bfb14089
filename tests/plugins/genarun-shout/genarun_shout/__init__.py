"""`shout`: a node kind added by a plugin. It upper-cases `text` and counts its words."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from genarun.nodes.base import ExecutionContext, NodeKind
from genarun.tree.schema import NodeBase

if TYPE_CHECKING:
    from genarun.plugins import Registry


class ShoutNode(NodeBase):
    text: str = Field(description="What to shout (a template).")
    marks: int = Field(1, ge=0, le=10, description="How many '!' to end it with.")


def run(ctx: ExecutionContext, node: ShoutNode) -> dict[str, Any]:
    ctx.log("info", f"shouting {len(node.text)} characters")
    return {"text": node.text.upper() + "!" * node.marks, "words": len(node.text.split())}


KIND = NodeKind(
    name="shout",
    params=ShoutNode,
    run=run,
    description="Upper-cases `text` and ends it with `marks` exclamation marks (a plugin).",
    output="object: text, words",
    output_type=lambda spec: "object",
)


def register(registry: Registry) -> None:
    registry.add_kind(KIND)
