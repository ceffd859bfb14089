"""`assemble:` on a `fetch`: a text model fills the request's parameters under a JSON Schema.

    - id: weather
      kind: fetch
      url: "{{ base_url }}"                 # the API's base URL; the operation adds its path
      params: {current: temperature_2m}     # pinned: the model fills the rest
      assemble:
        model: writer
        from: openmeteo.yaml#getForecast    # or schema: {type: object, properties: ...}
        instructions: "Current weather in {{ city }}."

The parameter schema is the operation's parameters (genarun.nodes.openapi) or the `schema:`
given, less those the node pins itself. The model answers under it (constrained decoding, or
`response_format` for API models, genarun.nodes.output_schema's validation either way); each
of `retries` samples again with another seed. The validated parameters become the request:
with `from:`, path parameters fill the operation's path, query and header parameters go to
`params` and `headers`, `body` to the JSON body; with `schema:`, the object is the query of a
GET, HEAD or DELETE and the JSON body of the others. The request is stored as its own step
(genarun.store.assembled) before it is sent: a resume, or a rerun with the same inputs, sends
the stored request instead of asking the model again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import urllib.parse
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from genarun.errors import did_you_mean
from genarun.models.base import Invocation
from genarun.nodes.effects import Invoke
from genarun.nodes.openapi import OpenApiProblem, Operation, load_operation
from genarun.nodes.output_schema import (
    SchemaMismatch,
    SchemaProblem,
    check_schema_field,
    load_schema,
    parse_json_answer,
)
from genarun.run.seeds import derive_seed
from genarun.tree.schema import Strict

if TYPE_CHECKING:
    from genarun.nodes.base import ExecutionContext
    from genarun.nodes.fetch import FetchNode
    from genarun.nodes.fetch_request import FetchRequest

QUERY_METHODS = frozenset({"GET", "HEAD", "DELETE"})


class AssembleSpec(Strict):
    """`assemble: {model, from | schema, instructions}` of a fetch."""

    model: str | dict[str, Any] = Field(description="The text model that fills the parameters.")
    from_: str | None = Field(
        None,
        alias="from",
        description="An OpenAPI file and operation: api.yaml#operationId.",
    )
    schema_: dict[str, Any] | str | None = Field(
        None,
        alias="schema",
        description="A JSON Schema of the parameters (a mapping or a .json/.yaml file).",
    )
    instructions: str = Field(
        "", description="What to fill in, from the node's scope (a template)."
    )
    max_tokens: int = Field(256, ge=1, description="Most tokens of the model's answer.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature; 0 is greedy.")
    retries: int = Field(
        2, ge=0, le=10, description="Further answers asked for when one fails the schema."
    )

    @model_validator(mode="after")
    def _one_source(self) -> AssembleSpec:
        if (self.from_ is None) == (self.schema_ is None):
            raise ValueError(
                "assemble needs exactly one of from: (an OpenAPI file#operationId) or schema:"
            )
        return self

    @field_validator("schema_")
    @classmethod
    def _schema_usable(cls, value: Any, info: ValidationInfo) -> Any:
        return check_schema_field(value, info.context)

    @field_validator("from_")
    @classmethod
    def _operation_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        context = info.context if isinstance(info.context, dict) else {}
        if value is None or "{{" in value or context.get("tree_dir") is None:
            return value
        try:
            load_operation(value, Path(context["tree_dir"]))
        except OpenApiProblem as exc:
            raise ValueError(str(exc)) from None
        return value


def check_assemble_field(value: Any, context: Any) -> Any:
    """A fetch's `assemble:` mapping checked as an AssembleSpec (its OpenAPI operation or
    schema read from the tree's folder in `context`); the mapping itself is kept, so that its
    strings render as templates."""
    if value is None:
        return value
    try:
        AssembleSpec.model_validate(value, strict=True, context=context)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            where = ".".join(str(p) for p in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                # A misspelt key: name the one meant, as for any other field of a node.
                fields = {f.alias or n for n, f in AssembleSpec.model_fields.items()}
                meant = did_you_mean(str(error["loc"][-1]), fields)
                message = f"unknown field ({meant or 'allowed: ' + ', '.join(sorted(fields))})"
            problems.append(f"{where}: {message}" if where else message)
        raise ValueError("; ".join(problems)) from None
    return value


class AssembleError(ValueError):
    """An assembly that failed: its schema, its OpenAPI operation, or the model's answers."""


def assemble_request(
    ctx: ExecutionContext, node: FetchNode, request: FetchRequest
) -> Generator[Invoke, Any, FetchRequest]:
    """The request with the parameters a text model filled in (or those stored for this
    execution already), validated; yields the model's invocations."""
    given = node.assemble
    assert given is not None
    spec = given if isinstance(given, AssembleSpec) else AssembleSpec.model_validate(given)
    try:
        operation = load_operation(spec.from_, ctx.tree_dir) if spec.from_ else None
        schema = load_schema(spec.schema_, ctx.tree_dir) if spec.schema_ is not None else None
    except (OpenApiProblem, SchemaProblem) as exc:
        raise AssembleError(f"assemble: {exc}") from None
    pinned = _pinned(request, operation)
    if operation is not None:
        schema = operation.parameter_schema(pinned)
    else:
        assert schema is not None
        schema = _unpinned(schema, pinned)
    inputs = _inputs_hash(spec, schema, request)
    run = ctx.run
    from genarun.store.assembled import find_assembled, record_assembled

    sources = [run.id]
    source_run = getattr(getattr(run, "reuse", None), "source_run_id", None)
    if source_run:
        sources.append(source_run)
    stored = find_assembled(run.store, sources, ctx.node_id, ctx.path, inputs)
    if stored is not None:
        ctx.log(
            "info",
            "assemble: sending the request assembled before"
            + ("" if stored.run_id == run.id else f" by run {stored.run_id[:8]}")
            + " (not asked again)",
        )
        # Rebuilt from the stored parameters: the node's own values (secrets among them) are
        # placeholders, filled only when the request leaves.
        return build_request(request, operation, stored.parameters)
    model = ctx.model(spec.model)
    prompt = build_prompt(spec, operation, schema)
    settings = {"max_tokens": spec.max_tokens, "temperature": spec.temperature, "schema": schema}
    last: SchemaMismatch | None = None
    for attempt in range(spec.retries + 1):
        seed = ctx.seed if attempt == 0 else derive_seed(ctx.seed, "assemble", (attempt,))
        text = yield Invoke(model, Invocation("generate", prompt, seed, settings))
        try:
            parameters = parse_json_answer(str(text), schema)
        except SchemaMismatch as exc:
            last = exc
            ctx.log("warning", f"assemble: answer {attempt + 1} failed the schema: {exc}")
            continue
        built = build_request(request, operation, parameters)
        record_assembled(
            run.store,
            run_id=run.id,
            node_id=ctx.node_id,
            path=ctx.path,
            inputs=inputs,
            model=model.label(),
            prompt=prompt,
            answer=str(text),
            parameters=parameters,
            request=built.to_json(),
        )
        return built
    assert last is not None
    raise SchemaMismatch(
        last.where,
        f"assemble: the model's parameters failed the schema in {spec.retries + 1} answers,"
        f" the last at {last.where}: {last.detail}",
        last.text,
        "say in assemble.instructions which values to use, raise assemble.retries, or use a"
        " model that follows instructions",
    )


def _pinned(request: FetchRequest, operation: Operation | None) -> set[str]:
    """The parameters the node sets itself: the model is not asked for them."""
    pinned = set(request.params) | {k for k in request.headers}
    if isinstance(request.json, dict):
        pinned |= set(request.json)
    if operation is not None and request.json is not None and not isinstance(request.json, dict):
        pinned.add("body")
    return pinned


def _unpinned(schema: dict[str, Any], pinned: set[str]) -> dict[str, Any]:
    properties = schema.get("properties")
    if not pinned or not isinstance(properties, dict):
        return schema
    out = dict(schema)
    out["properties"] = {k: v for k, v in properties.items() if k not in pinned}
    if isinstance(schema.get("required"), list):
        out["required"] = [k for k in schema["required"] if k not in pinned]
    return out


def _inputs_hash(spec: AssembleSpec, schema: dict[str, Any], request: FetchRequest) -> str:
    canon = json.dumps(
        [spec.model_dump(by_alias=True, mode="json"), schema, request.to_json()],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(canon.encode()).hexdigest()


def build_prompt(spec: AssembleSpec, operation: Operation | None, schema: dict[str, Any]) -> str:
    """What the model is asked: the instructions, the call, and each parameter to fill."""
    lines = [str(spec.instructions).strip()] if str(spec.instructions).strip() else []
    if operation is not None:
        call = f"{operation.method} {operation.path}"
        lines.append(
            f"Fill in the parameters of the API call {call}"
            + (f" ({operation.summary.strip()})." if operation.summary.strip() else ".")
        )
    else:
        lines.append("Fill in the parameters of the API call.")
    required = set(schema.get("required") or [])
    for name, sub in (schema.get("properties") or {}).items():
        kind = sub.get("type", "value") if isinstance(sub, dict) else "value"
        about = sub.get("description", "") if isinstance(sub, dict) else ""
        need = "required" if name in required else "optional"
        lines.append(f"- {name} ({kind}, {need})" + (f": {about}" if about else ""))
    lines.append("Answer with one JSON object and nothing else.")
    return "\n".join(lines)


def build_request(
    request: FetchRequest, operation: Operation | None, parameters: dict[str, Any]
) -> FetchRequest:
    """The node's request with the model's parameters in place (the node's own values win)."""
    if operation is None:
        if request.method in QUERY_METHODS:
            return dataclasses.replace(request, params={**parameters, **request.params})
        body = request.json if request.json is not None else {}
        if not isinstance(body, dict):
            raise AssembleError("assemble: schema: needs the node's json: to be a mapping or unset")
        return dataclasses.replace(request, json={**parameters, **body})
    path = operation.path
    params = dict(request.params)
    headers = dict(request.headers)
    for parameter in operation.parameters:
        if parameter.name not in parameters:
            continue
        value = parameters[parameter.name]
        if parameter.location == "path":
            path = path.replace(
                "{" + parameter.name + "}", urllib.parse.quote(_text(value), safe="")
            )
        elif parameter.location == "query":
            params.setdefault(parameter.name, value)
        else:
            headers.setdefault(parameter.name, _text(value))
    if "{" in path:
        raise AssembleError(
            f"assemble: the path {operation.path} still has parameters the model did not fill"
            " (mark them required in the OpenAPI file, or set them in the node's url)"
        )
    base = request.url.rstrip("/") or (operation.server or "").rstrip("/")
    body = request.json
    if "body" in parameters:
        body = (
            {**parameters["body"], **request.json}
            if isinstance(parameters["body"], dict) and isinstance(request.json, dict)
            else (request.json if request.json is not None else parameters["body"])
        )
    return dataclasses.replace(
        request,
        method=operation.method,
        url=base + path,
        params=params,
        headers=headers,
        json=body,
    )


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
