"""`embed`: embeds texts or images; the vectors go to SQLite, the output holds references."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from pydantic import Field

from genarun.models.base import Invocation
from genarun.nodes.base import ExecutionContext, Invoke, NodeKind
from genarun.tree.schema import NodeBase
from genarun.values import EmbeddingRef, ImageRef


class EmbedNode(NodeBase):
    model: str | dict[str, Any] = Field(description="Embedding model (text, image or joint).")
    input: Any = Field(description="A text, an image, or a list of them (`{{ article }}`).")


def run(ctx: ExecutionContext, node: EmbedNode) -> Generator[list[Invoke], Any, Any]:
    spec = ctx.model(node.model)
    single = not isinstance(node.input, list)
    items = [node.input] if single else list(node.input)
    invokes, sources = [], []
    for item in items:
        if isinstance(item, ImageRef):
            if "embed_image" not in spec.tasks:
                raise ValueError(f"model '{spec.label()}' cannot embed images")
            invokes.append(Invoke(spec, Invocation("embed_image", item.open(), ctx.seed)))
            sources.append(item.path)
        else:
            if "embed_text" not in spec.tasks:
                raise ValueError(f"model '{spec.label()}' cannot embed text")
            text = item if isinstance(item, str) else str(item)
            invokes.append(Invoke(spec, Invocation("embed_text", text, ctx.seed)))
            sources.append(text)
    vectors = yield invokes
    refs: list[EmbeddingRef] = ctx.store_embeddings(vectors, spec.label(), sources)
    return refs[0] if single else refs


KIND = NodeKind(
    name="embed",
    params=EmbedNode,
    run=run,
    description="Embeds texts or images with `model`; vectors go to SQLite.",
    output="embedding reference(s)",
    model_task="embed",
)
