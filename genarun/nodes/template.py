"""`template`: renders `text` (random picks + Jinja) and optionally parses it."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from genarun.nodes.base import PARSED_TYPES, ExecutionContext, NodeKind, ParseMode, parse_output
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


def _output_type(spec: TemplateNode) -> str | None:
    if isinstance(spec.text, list):
        return "list"
    if isinstance(spec.text, dict):
        return "object"
    if spec.parse != "text":
        return PARSED_TYPES[spec.parse]
    # A single expression keeps its value's type, known only when it runs (random picks may
    # leave one, too: "[{{ a }} | {{ b }}]").
    text = spec.text.strip() if isinstance(spec.text, str) else ""
    single = text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1
    return None if single or ("[" in text and "{{" in text) else "text"


KIND = NodeKind(
    name="template",
    params=TemplateNode,
    run=run,
    description="Renders `text` (random picks and Jinja); `parse: text/json/lines/yaml`.",
    # Rendering is cheaper than a cache lookup, and its result depends only on its inputs.
    cacheable=False,
    output_type=_output_type,
    output="text or value",
)
