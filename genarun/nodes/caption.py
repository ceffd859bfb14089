"""`caption`: image to text."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from pydantic import Field

from genarun.models.base import Invocation, hit_limit
from genarun.nodes.base import ExecutionContext, Invoke, NodeKind, ceiling_message
from genarun.tree.schema import NodeBase, PositiveInt, Tpl


class CaptionNode(NodeBase):
    model: str | dict[str, Any] = Field(description="Image-to-text model.")
    image: Any = Field(description="An image output (`{{ cover }}`) or an image file path.")
    prompt: str | None = Field(None, description="Optional prompt or question about the image.")
    max_tokens: Tpl[PositiveInt] = Field(
        1024,
        description="Most new tokens: a ceiling, the caption normally ends by itself before it (a caption cut there is logged).",
    )


def run(ctx: ExecutionContext, node: CaptionNode) -> Generator[Invoke, Any, str]:
    spec = ctx.model(node.model)
    image = ctx.load_image(node.image)
    settings: dict[str, Any] = {"max_tokens": node.max_tokens}
    if node.prompt:
        settings["prompt"] = node.prompt
    text = yield Invoke(spec, Invocation("caption", image, ctx.seed, settings))
    if hit_limit(text):
        ctx.log("warning", ceiling_message(node.max_tokens))
    return str(text)


KIND = NodeKind(
    name="caption",
    params=CaptionNode,
    run=run,
    description="Image to text: `model`, `image`, optional `prompt`.",
    output="text",
    model_task="caption",
    output_type=lambda spec: "text",
)
