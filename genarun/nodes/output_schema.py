"""JSON Schemas for model outputs (`generate`'s `schema:`, `fetch`'s `assemble`): reading one
inline or from a file beside the tree, checking it is a schema, and validating a value against it.

A schema file is named relative to the tree's folder and read without `..` or symbolic links,
like every file a tree names. jsonschema is imported when a schema is used, not before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from genarun.bounded_yaml import YamlBoundsError, load_bounded_yaml

SCHEMA_FILE_SUFFIXES = (".json", ".yaml", ".yml")


class SchemaProblem(ValueError):
    """A schema that cannot be read or is not a JSON Schema; the message says how to fix it."""


@dataclass
class SchemaMismatch(ValueError):
    """A model's answer that does not satisfy the schema."""

    where: str  # the JSON path of the first failing value, "$" for the whole
    detail: str
    text: str = ""  # the model's text: the executor keeps it with the failed execution
    hint: str | None = None

    def __str__(self) -> str:
        message = f"output does not match the schema at {self.where}: {self.detail}"
        return f"{message} ({self.hint})" if self.hint else message


def load_schema(value: dict[str, Any] | str, base: Path) -> dict[str, Any]:
    """The schema `value` gives: itself (a mapping), or the JSON or YAML file it names relative
    to `base` (the tree's folder); raise SchemaProblem naming the fix."""
    schema = value if isinstance(value, dict) else read_schema_file(value, base)
    problem = schema_problem(schema)
    if problem:
        where = f"the file {value}" if isinstance(value, str) else "it"
        raise SchemaProblem(f"not a valid JSON Schema: {problem} (fix {where})")
    return schema


def check_schema_field(value: Any, context: Any) -> Any:
    """A tree's `schema:` checked when the tree is validated: an inline schema against the
    meta-schema, a file name by reading it from the tree's folder (in `context`). Templates
    are checked when they are rendered."""
    if value is None:
        return value
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        return value
    base = context.get("tree_dir") if isinstance(context, dict) else None
    if isinstance(value, dict):
        problem = schema_problem(value)
        if problem:
            raise ValueError(f"not a valid JSON Schema: {problem}")
    elif base is not None:
        try:
            load_schema(value, Path(base))
        except SchemaProblem as exc:
            raise ValueError(str(exc)) from None
    return value


# The output type (as genarun.graph.value_types names them) of a schema's top-level type.
_TYPES = {"object": "object", "array": "list", "string": "text"}


def schema_output_type(value: Any) -> str | None:
    """The type of an answer under an inline schema, when its top-level type says it."""
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        return _TYPES.get(value["type"])
    return None


def schema_fields(value: Any, base: Path) -> frozenset[str] | None:
    """The keys an answer under a schema (inline, or a file in `base`) can have, when its top
    level is an object whose properties are all listed; None when other keys are allowed
    (`additionalProperties` given and not false, `patternProperties`, or a combinator) or the
    schema is a template."""
    if isinstance(value, str):
        if "{{" in value or "{%" in value:
            return None
        try:
            schema = load_schema(value, base)
        except SchemaProblem:
            return None
    elif isinstance(value, dict):
        schema = value
    else:
        return None
    properties = schema.get("properties")
    if schema.get("type") != "object" or not isinstance(properties, dict):
        return None
    extra = schema.get("additionalProperties", False)
    if extra is not False or any(
        key in schema for key in ("patternProperties", "allOf", "anyOf", "oneOf", "$ref")
    ):
        return None
    return frozenset(str(key) for key in properties)


def read_schema_file(name: str, base: Path, *, what: str = "schema file") -> dict[str, Any]:
    """The JSON or YAML object in the file `name`, inside `base` (the tree's folder), reached
    without `..` or links; raise SchemaProblem naming `what` and the fix."""
    from genarun.store.confined import UnsafePath, read_bytes

    if not name.strip() or "\n" in name:
        raise SchemaProblem(f"give a {what} as the name of a .json/.yaml file")
    if not name.endswith(SCHEMA_FILE_SUFFIXES):
        raise SchemaProblem(
            f"'{name[:200]}' is not a {what} name: give a mapping, or a file ending in"
            " .json, .yaml or .yml"
        )
    try:
        data = read_bytes(base, name)
    except UnsafePath:
        raise SchemaProblem(
            f"{what} '{name}' must be inside the tree's folder {base}, named without '..'"
            " or symbolic links"
        ) from None
    except FileNotFoundError:
        raise SchemaProblem(
            f"{what} '{name}' does not exist in {base}: create it, or fix the name"
        ) from None
    except OSError as exc:
        raise SchemaProblem(f"{what} '{name}' cannot be read: {exc.strerror}") from None
    text = data.decode("utf-8", errors="replace")
    try:
        schema = json.loads(text) if name.endswith(".json") else load_bounded_yaml(text)
    except json.JSONDecodeError as exc:
        raise SchemaProblem(
            f"{what} '{name}' is not valid JSON: {exc.msg} at line {exc.lineno}"
        ) from None
    except (yaml.YAMLError, YamlBoundsError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SchemaProblem(f"{what} '{name}' is not valid YAML: {first}") from None
    if not isinstance(schema, dict):
        raise SchemaProblem(f"{what} '{name}' holds {type(schema).__name__}, not an object")
    return schema


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why `schema` is not a valid JSON Schema (by its own `$schema`, default 2020-12), or None."""
    from jsonschema import SchemaError, validators
    from jsonschema.exceptions import best_match

    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    errors = list(cls(cls.META_SCHEMA).iter_errors(schema))
    if not errors:
        return None
    error: SchemaError = best_match(errors)
    where = "/".join(str(p) for p in error.absolute_path) or "the top level"
    return f"at {where}: {error.message[:300]}"


def validate_value(value: Any, schema: dict[str, Any], *, text: str = "") -> Any:
    """Return `value` when it satisfies `schema`; else raise SchemaMismatch at its first error."""
    from jsonschema import validators
    from jsonschema.exceptions import best_match

    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    error = best_match(cls(schema, format_checker=cls.FORMAT_CHECKER).iter_errors(value))
    if error is None:
        return value
    raise SchemaMismatch(error.json_path, error.message[:300], text)


def parse_json_answer(text: str, schema: dict[str, Any], *, hint: str | None = None) -> Any:
    """A model's JSON answer read and checked against `schema`; SchemaMismatch carries the text
    and `hint` (how to fix it)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaMismatch(
            "$", f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", text, hint
        ) from None
    except RecursionError:
        raise SchemaMismatch("$", "not JSON: nested too deeply", text, hint) from None
    try:
        return validate_value(value, schema, text=text)
    except SchemaMismatch as exc:
        exc.hint = hint
        raise
