"""`template`: renders `text` (random picks + Jinja) and optionally parses it."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from genarun.nodes.base import ExecutionContext, NodeKind, ParseMode, parse_output
from genarun.tree.schema import NodeBase


class TemplateNode(NodeBase):
    text: Any = Field(
        description="The template: picks and Jinja; a single expression keeps its type."
    )
    parse: ParseMode = Field("text", description="text, json, lines or yaml.")


def run(ctx: ExecutionContext, node: TemplateNode) -> Any:
    if isinstance(node.text, str):
        return parse_output(
            node.text,
            node.parse,
            hint=f"fix the text so it is valid {node.parse.upper()}, or write parse: text",
        )
    return node.text


KIND = NodeKind(
    name="template",
    params=TemplateNode,
    run=run,
    description="Renders `text` (random picks and Jinja); `parse: text/json/lines/yaml`.",
    # Rendering is cheaper than a cache lookup, and its result depends only on its inputs.
    cacheable=False,
    output="text or value",
)
