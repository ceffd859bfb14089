"""`generate`: text generation with a language model."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from pydantic import Field

from genarun.models.base import Invocation, hit_limit
from genarun.nodes.base import (
    MODEL_FORMAT_HINT,
    PARSED_TYPES,
    ExecutionContext,
    Invoke,
    NodeKind,
    ParseMode,
    ceiling_message,
    parse_output,
)
from genarun.tree.schema import NodeBase, NonNegativeFloat, PositiveInt, Tpl


class GenerateNode(NodeBase):
    model: str | dict[str, Any] = Field(
        description="Model alias, catalog name, HF id, path or spec."
    )
    prompt: str = Field(description="The prompt (a template).")
    system: str | None = Field(None, description="System message, for chat models.")
    max_tokens: Tpl[PositiveInt] = Field(256, description="Maximum new tokens.")
    temperature: Tpl[NonNegativeFloat] = Field(
        0.8, description="Sampling temperature; 0 is greedy."
    )
    parse: ParseMode = Field("text", description="text, json, lines or yaml.")


def run(ctx: ExecutionContext, node: GenerateNode) -> Generator[Invoke, Any, Any]:
    spec = ctx.model(node.model)
    settings: dict[str, Any] = {"max_tokens": node.max_tokens, "temperature": node.temperature}
    if node.system:
        settings["system"] = node.system
    if node.parse != "text":
        settings["format"] = node.parse  # a hint; the dummy model answers in that format
    text = yield Invoke(spec, Invocation("generate", str(node.prompt), ctx.seed, settings))
    hint = MODEL_FORMAT_HINT.format(mode=node.parse.upper())
    if hit_limit(text):
        ctx.log("warning", ceiling_message(node.max_tokens))
        hint = f"the answer was cut at max_tokens {node.max_tokens}: raise it; or {hint}"
    return parse_output(text, node.parse, hint=hint)


KIND = NodeKind(
    name="generate",
    params=GenerateNode,
    run=run,
    description="Text generation: `model`, `prompt`, `system`, `max_tokens`, `temperature`, `parse`.",
    output="text or value",
    model_task="generate",
    output_type=lambda spec: PARSED_TYPES[spec.parse],
)
