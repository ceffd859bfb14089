"""The editor's form for one node, made from its kind's JSON Schema (`genarun schema`, built from
the registry, so a plugin's kind gets a form too): a choice for an enum, true/false for a flag,
a line or a text box for text and numbers, YAML for lists and objects; required fields marked,
each field's description beside it. What a form sends back is read by the same types: a field
left empty is removed (its default applies), a field sent unchanged is not touched (it keeps
its quoting and comments in the file)."""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass, field
from typing import Any

from genarun.server.tree_doc import EditError, dump_yaml, parse_yaml_value, plain_value

# Text fields shown as a box of several lines (prompts and templates are long).
LONG_TEXT = frozenset({"text", "prompt", "system", "negative_prompt", "question", "body"})
_INT = re.compile(r"-?[0-9]+")
_FLOAT = re.compile(r"-?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][-+]?[0-9]+)?")


@dataclass
class FormField:
    name: str
    widget: str  # "line", "box", "choice", "flag" or "yaml"
    description: str = ""
    required: bool = False
    common: bool = False  # a field every node has (foreach, when, vars, ...)
    options: list[str] = field(default_factory=list)
    types: frozenset[str] = frozenset()
    value: str = ""  # the current value as the form shows it
    mixed: bool = False  # text or a list/object: a line for text, YAML for a list or object

    @property
    def text_only(self) -> bool:
        return self.types <= {"string", "null"}


@functools.lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    from genarun.tree.jsonschema import tree_json_schema

    return tree_json_schema()


def kinds() -> list[tuple[str, str]]:
    """Every registered kind with its one-line description, for the add-node choice."""
    from genarun.plugins import registry

    return [(name, kind.description) for name, kind in sorted(registry().kinds.items())]


def _common_fields() -> frozenset[str]:
    from genarun.tree.schema import NodeBase

    return frozenset(f.alias or name for name, f in NodeBase.model_fields.items())


def kind_fields(kind: str) -> list[FormField] | None:
    """The form fields of a kind (its own first, then those every node has); None for a kind
    the registry does not know (its node is edited as YAML)."""
    defs = _schema()["$defs"]
    schema = defs.get(f"{kind}_node")
    if schema is None:
        return None
    required = set(schema.get("required", ()))
    common = _common_fields()
    out = []
    for name, prop in schema.get("properties", {}).items():
        if name in ("id", "kind", "children"):
            continue
        types, options = _types(prop, defs)
        if options and types <= {"string", "null", "enum"}:
            widget = "choice"
        elif types == {"boolean"} or types == {"boolean", "null"}:
            widget = "flag"
        elif types & {"array", "object", "any"} and not types & {"string", "any"}:
            widget = "yaml"
        else:
            widget = "box" if name in LONG_TEXT else "line"
        out.append(
            FormField(
                name,
                widget,
                description=prop.get("description", ""),
                required=name in required,
                common=name in common,
                options=options,
                types=frozenset(types - {"enum"}),
                mixed=bool(types & {"array", "object", "any"}) and widget != "yaml",
            )
        )
    out.sort(key=lambda f: (f.common, not f.required))  # stable: schema order within
    return out


def _types(prop: dict[str, Any], defs: dict[str, Any]) -> tuple[set[str], list[str]]:
    """The JSON types a property takes ("any" where unconstrained) and its enum values."""
    types: set[str] = set()
    options: list[str] = []
    branches = prop.get("anyOf") or prop.get("oneOf") or [prop]
    for branch in branches:
        if "$ref" in branch:
            target = defs.get(branch["$ref"].rsplit("/", 1)[-1], {})
            found, more = _types(target, defs) if target is not branch else ({"object"}, [])
            types |= found or {"object"}
            options += more
            continue
        if "enum" in branch or "const" in branch:
            values = branch.get("enum", [branch.get("const")])
            options += [v for v in values if isinstance(v, str)]
            types.add("enum" if all(isinstance(v, str) for v in values) else "any")
            continue
        kind = branch.get("type")
        if isinstance(kind, list):
            types |= set(kind)
        elif isinstance(kind, str):
            types.add(kind)
        elif branch.get("allOf"):
            found, more = _types(branch["allOf"][0], defs)
            types |= found
            options += more
        else:
            types.add("any")
    return types, options


def for_value(form_field: FormField, value: Any) -> FormField:
    """The field as shown for its current value: a text-or-list field holding a list or an
    object is edited as YAML (and one not set yet, unless it takes any value: a template's
    `text`, a `foreach`, are mostly text)."""
    if form_field.mixed and (
        isinstance(value, (dict, list)) or (value is None and "any" not in form_field.types)
    ):  # a list or object, or nothing yet where the schema names a list or object type
        return dataclasses.replace(form_field, widget="yaml")
    return dataclasses.replace(form_field)


def shown_value(form_field: FormField, value: Any, present: bool) -> str:
    """How the form shows a field's value (the empty string: not set)."""
    if not present:
        return ""
    if form_field.widget == "yaml" or isinstance(value, (dict, list)):
        return _yaml_text(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def read_field(form_field: FormField, sent: str) -> Any:
    """A field's value from the text the form sent; None: remove the field."""
    sent = sent.replace("\r\n", "\n")
    if form_field.widget == "yaml":
        if not sent.strip():
            return None
        try:
            return plain_value(parse_yaml_value(sent))
        except EditError as exc:
            raise EditError(f"{form_field.name}: {exc}") from None
    if sent == "":
        return None
    if form_field.widget == "flag":
        if sent not in ("true", "false"):
            raise EditError(f"{form_field.name}: true or false")
        return sent == "true"
    if form_field.text_only or form_field.widget == "choice":
        return sent
    # A number field that also takes a template (`steps: "{{ n }}"`): numbers as numbers.
    text = sent.strip()
    if "integer" in form_field.types and _INT.fullmatch(text):
        return int(text)
    if "number" in form_field.types and _FLOAT.fullmatch(text):
        return float(text)
    if "boolean" in form_field.types and text in ("true", "false"):
        return text == "true"
    if "null" in form_field.types and text == "null":
        return None
    return sent


def _yaml_text(value: Any) -> str:
    return dump_yaml(plain_value(value)).removesuffix("...\n")
