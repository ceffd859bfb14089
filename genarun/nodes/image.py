"""`image`: text to image; the PNG goes to the run's assets/ with its metadata."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from pydantic import Field

from genarun.models.base import Invocation
from genarun.models.weights import metadata_fields
from genarun.nodes.base import ExecutionContext, Invoke, NodeKind
from genarun.tree.schema import NodeBase, NonNegativeFloat, PositiveInt, Tpl
from genarun.values import ImageRef


class ImageNode(NodeBase):
    model: str | dict[str, Any] = Field(description="Text-to-image model.")
    prompt: str = Field(description="The prompt (a template).")
    negative_prompt: str | None = Field(None, description="What to avoid.")
    width: Tpl[PositiveInt] | None = Field(
        None, description="Width in pixels (model default if omitted)."
    )
    height: Tpl[PositiveInt] | None = Field(
        None, description="Height in pixels (model default if omitted)."
    )
    steps: Tpl[PositiveInt] | None = Field(
        None, description="Denoising steps (model default if omitted)."
    )
    guidance: Tpl[NonNegativeFloat] | None = Field(
        None, description="Guidance scale (model default if omitted)."
    )


def run(ctx: ExecutionContext, node: ImageNode) -> Generator[Invoke, Any, ImageRef]:
    spec = ctx.model(node.model)
    settings = {
        key: value
        for key in ("negative_prompt", "width", "height", "steps", "guidance")
        if (value := getattr(node, key)) is not None
    }
    image = yield Invoke(spec, Invocation("image", str(node.prompt), ctx.seed, settings))
    ref = ctx.save_image(image, prompt=str(node.prompt), **metadata_fields(spec))
    ref.sha256  # noqa: B018 (the PNG is on disk before the execution is recorded; a failed write fails the node)
    return ref


KIND = NodeKind(
    name="image",
    params=ImageNode,
    run=run,
    description="Text to image: `model`, `prompt`, `negative_prompt`, `width`, `height`, `steps`, `guidance`.",
    output="image asset (a PNG path relative to the run folder)",
    model_task="image",
    output_type=lambda spec: "image",
)
