"""`generate`: text generation with a language model, optionally under a JSON Schema."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from pydantic import Field, ValidationInfo, field_validator

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
from genarun.nodes.output_schema import (
    check_schema_field,
    load_schema,
    parse_json_answer,
    schema_fields,
    schema_output_type,
)
from genarun.run.seeds import derive_seed
from genarun.tree.schema import NodeBase, NonNegativeFloat, PositiveInt, Tpl

# How to fix an answer that fails its schema.
SCHEMA_HINT = (
    "raise retries: each retry samples again with another seed; raise max_tokens if it was cut;"
    " or loosen the schema"
)


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
    # Named schema_ in Python: `schema` would shadow pydantic's BaseModel.schema().
    schema_: dict[str, Any] | str | None = Field(
        None,
        alias="schema",
        description=(
            "A JSON Schema the answer must satisfy (a mapping, or a .json/.yaml file beside the"
            " tree): local models decode under it, API models get it as response_format; the"
            " answer is validated and parsed (the output is the value)."
        ),
    )

    @field_validator("schema_")
    @classmethod
    def _schema_usable(cls, value: Any, info: ValidationInfo) -> Any:
        return check_schema_field(value, info.context)


def run(ctx: ExecutionContext, node: GenerateNode) -> Generator[Invoke, Any, Any]:
    spec = ctx.model(node.model)
    settings: dict[str, Any] = {"max_tokens": node.max_tokens, "temperature": node.temperature}
    if node.system:
        settings["system"] = node.system
    schema = load_schema(node.schema_, ctx.tree_dir) if node.schema_ is not None else None
    seed = ctx.seed
    if schema is not None:
        settings["schema"] = schema
        # A retry of a deterministic model with the same seed gives the same invalid answer.
        attempt = ctx.attempt
        seed = ctx.seed if attempt <= 1 else derive_seed(ctx.seed, "schema-attempt", (attempt,))
    elif node.parse != "text":
        settings["format"] = node.parse  # a hint; the dummy model answers in that format
    text = yield Invoke(spec, Invocation("generate", str(node.prompt), seed, settings))
    cut = hit_limit(text)
    if cut:
        ctx.log("warning", ceiling_message(node.max_tokens))
    if schema is not None:
        hint = f"the answer was cut at max_tokens {node.max_tokens}: raise it" if cut else None
        return parse_json_answer(str(text), schema, hint=hint or SCHEMA_HINT)
    hint = MODEL_FORMAT_HINT.format(mode=node.parse.upper())
    if cut:
        hint = f"the answer was cut at max_tokens {node.max_tokens}: raise it; or {hint}"
    return parse_output(text, node.parse, hint=hint)


KIND = NodeKind(
    name="generate",
    params=GenerateNode,
    run=run,
    description=(
        "Text generation: `model`, `prompt`, `system`, `max_tokens`, `temperature`, `parse`,"
        " `schema`."
    ),
    output="text or value",
    model_task="generate",
    output_type=lambda spec: (
        schema_output_type(spec.schema_) if spec.schema_ is not None else PARSED_TYPES[spec.parse]
    ),
    output_fields=lambda spec, tree_dir: (
        schema_fields(spec.schema_, tree_dir) if spec.schema_ is not None else None
    ),
)
