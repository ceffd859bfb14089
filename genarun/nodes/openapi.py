"""One operation of an OpenAPI description, as `assemble: {from: api.yaml#operationId}` needs
it: its method and path, and a JSON Schema of its parameters for a model to fill.

The parameter schema is one object: a property per path, query and header parameter (with the
parameter's description and whether it is required), and `body` for a JSON request body.
Local `$ref`s (`#/components/...`) are resolved inline; OpenAPI 3.0's `nullable` becomes a
JSON Schema type with null, and keywords JSON Schema does not have (`example`, `xml`,
`discriminator`, ...) are dropped, so the schema both constrains decoding and validates.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genarun.nodes.output_schema import SchemaProblem, read_schema_file

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
_OPENAPI_ONLY = frozenset(
    {"nullable", "example", "xml", "discriminator", "readOnly", "writeOnly", "externalDocs",
     "deprecated"}
)  # fmt: skip
_MAX_REF_DEPTH = 16


class OpenApiProblem(ValueError):
    """An OpenAPI file or operation that cannot be used; the message names the fix."""


@dataclass(frozen=True)
class Parameter:
    name: str
    location: str  # path, query or header
    required: bool
    schema: dict[str, Any]


@dataclass(frozen=True)
class Operation:
    """An operation of an OpenAPI document, resolved."""

    operation_id: str
    method: str  # upper case
    path: str  # the path template, e.g. /v1/forecast/{city}
    summary: str
    server: str | None  # the first `servers` URL, if any
    parameters: tuple[Parameter, ...] = ()
    body: dict[str, Any] | None = None  # the JSON body's schema
    body_required: bool = False
    described: dict[str, str] = field(default_factory=dict)

    def parameter_schema(self, pinned: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
        """The JSON Schema of the parameters a model fills (those not in `pinned`)."""
        properties: dict[str, Any] = {}
        required: list[str] = []
        for parameter in self.parameters:
            if parameter.name in pinned:
                continue
            properties[parameter.name] = parameter.schema
            if parameter.required:
                required.append(parameter.name)
        if self.body is not None and "body" not in pinned:
            properties["body"] = self.body
            if self.body_required:
                required.append("body")
        return {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }


def load_operation(reference: str, base: Path) -> Operation:
    """The operation `file#operationId` names, its file read from `base` (the tree's folder)."""
    name, hash_mark, operation_id = reference.partition("#")
    if not hash_mark or not name.strip() or not operation_id.strip():
        raise OpenApiProblem(
            f"from: '{reference}' must name an OpenAPI file and an operation, like"
            " api.yaml#getForecast"
        )
    try:
        document = read_schema_file(name.strip(), base, what="OpenAPI file")
    except SchemaProblem as exc:
        raise OpenApiProblem(str(exc)) from None
    return find_operation(document, operation_id.strip(), name.strip())


def find_operation(document: dict[str, Any], operation_id: str, file: str) -> Operation:
    """The operation with `operation_id` in `document` (from `file`, for messages)."""
    if "openapi" not in document or not isinstance(document.get("paths"), dict):
        raise OpenApiProblem(
            f"{file} is not an OpenAPI description (it needs `openapi:` and `paths:`)"
        )
    known: list[str] = []
    for path, item in document["paths"].items():
        if not isinstance(item, dict):
            continue
        shared = item.get("parameters") or []
        for method in METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            found = operation.get("operationId")
            if isinstance(found, str):
                known.append(found)
            if found == operation_id:
                return _operation(document, str(path), method, operation, shared)
    from genarun.errors import did_you_mean

    hint = did_you_mean(operation_id, set(known)) or (
        f"its operations: {', '.join(sorted(known))}" if known else "it names no operationId"
    )
    raise OpenApiProblem(f"{file} has no operation '{operation_id}' ({hint})")


def _operation(
    document: dict[str, Any], path: str, method: str, operation: dict[str, Any], shared: list[Any]
) -> Operation:
    by_key: dict[tuple[str, str], Parameter] = {}
    for raw in [*shared, *(operation.get("parameters") or [])]:
        entry = _resolve(document, raw, 0)
        if not isinstance(entry, dict) or entry.get("in") not in ("path", "query", "header"):
            continue  # cookie parameters are not filled by a model
        name = str(entry.get("name", ""))
        schema = json_schema(document, entry.get("schema") or {"type": "string"})
        if entry.get("description") and "description" not in schema:
            schema = {**schema, "description": str(entry["description"])}
        required = bool(entry.get("required")) or entry["in"] == "path"
        by_key[(entry["in"], name)] = Parameter(name, entry["in"], required, schema)
    parameters = tuple(by_key.values())
    names = [p.name for p in parameters]
    clash = {n for n in names if names.count(n) > 1}
    if clash:
        raise OpenApiProblem(
            f"operation '{operation.get('operationId')}' has parameters named alike in two"
            f" places ({', '.join(sorted(clash))}); assemble needs distinct names"
        )
    body = None
    body_required = False
    request_body = _resolve(document, operation.get("requestBody"), 0)
    if isinstance(request_body, dict):
        content = request_body.get("content") or {}
        media = next((v for k, v in content.items() if "json" in k), None)
        if isinstance(media, dict) and isinstance(media.get("schema"), dict):
            body = json_schema(document, media["schema"])
            body_required = bool(request_body.get("required"))
    servers = document.get("servers") or []
    server = servers[0].get("url") if servers and isinstance(servers[0], dict) else None
    return Operation(
        operation_id=str(operation.get("operationId")),
        method=method.upper(),
        path=path,
        summary=str(operation.get("summary") or operation.get("description") or ""),
        server=str(server) if server else None,
        parameters=parameters,
        body=body,
        body_required=body_required,
    )


def json_schema(document: dict[str, Any], schema: Any, depth: int = 0) -> Any:
    """An OpenAPI schema object as plain JSON Schema, its local $refs inlined."""
    if depth > _MAX_REF_DEPTH:
        return {}  # a recursive schema: deeper levels accept anything
    schema = _resolve(document, schema, depth)
    if isinstance(schema, list):
        return [json_schema(document, item, depth + 1) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _OPENAPI_ONLY:
            continue
        if key in ("enum", "const", "default", "required"):
            out[key] = copy.deepcopy(value)
        elif key == "properties" and isinstance(value, dict):
            out[key] = {k: json_schema(document, v, depth + 1) for k, v in value.items()}
        elif key == "format" and schema.get("type") in ("number", "integer"):
            continue  # int32, double: sizes, not JSON Schema formats
        else:
            out[key] = json_schema(document, value, depth + 1)
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _resolve(document: dict[str, Any], value: Any, depth: int) -> Any:
    while isinstance(value, dict) and isinstance(value.get("$ref"), str):
        ref = value["$ref"]
        if not ref.startswith("#/") or depth > _MAX_REF_DEPTH:
            raise OpenApiProblem(f"$ref '{ref}': only local references (#/...) are followed")
        target: Any = document
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise OpenApiProblem(f"$ref '{ref}' names nothing in the OpenAPI file")
            target = target[part]
        value = target
        depth += 1
    return value
