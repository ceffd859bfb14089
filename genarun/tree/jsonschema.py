"""The JSON Schema of the tree format, assembled from the registered kinds' pydantic models."""

from __future__ import annotations

from typing import Any

SCHEMA_ID = "https://gena.run/schema/tree-v1.json"


def tree_json_schema() -> dict[str, Any]:
    """A draft 2020-12 schema: the tree, and each node validated by its `kind`."""
    from pydantic.json_schema import GenerateJsonSchema

    from genarun.plugins import registry
    from genarun.tree.schema import TreeSpec

    defs: dict[str, Any] = {}
    node_refs = []
    for name, kind in sorted(registry().kinds.items()):
        schema = kind.params.model_json_schema(
            by_alias=True, ref_template="#/$defs/{model}", schema_generator=GenerateJsonSchema
        )
        defs.update(schema.pop("$defs", {}))
        props = schema.setdefault("properties", {})
        props["kind"] = {"const": name, "description": kind.description}
        props["children"] = {
            "type": "array",
            "items": {"$ref": "#/$defs/Node"},
            "description": "Child nodes.",
        }
        schema["title"] = f"{name} node"
        _human_titles(props, f"{name} node")
        schema["description"] = f"{kind.description} Output: {kind.output}."
        schema["additionalProperties"] = False
        key = f"{name}_node"
        defs[key] = schema
        node_refs.append(
            {
                "if": {"properties": {"kind": {"const": name}}, "required": ["kind"]},
                "then": {"$ref": f"#/$defs/{key}"},
            }
        )
    kinds = sorted(registry().kinds)
    defs["Node"] = {
        "type": "object",
        "required": ["id", "kind"],
        "properties": {"kind": {"enum": kinds}},
        "allOf": node_refs,
    }
    tree = TreeSpec.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    defs.update(tree.pop("$defs", {}))
    tree["properties"]["nodes"] = {
        "type": "array",
        "items": {"$ref": "#/$defs/Node"},
        "minItems": 1,
        "description": "The top-level nodes.",
    }
    tree["additionalProperties"] = False
    # Editors show a title on hover: the field as written and where it is, never pydantic's
    # class names (`TreeSpec`) or one generated title per union branch ("Steps || Steps").
    tree["title"] = "genarun tree (format 1)"
    _human_titles(tree["properties"], "tree")
    defs["Node"]["title"] = "node"
    for key, value in defs.items():
        if not key.endswith("_node") and key != "Node":
            value.pop("title", None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **tree,
        "$defs": defs,
    }


def _human_titles(properties: dict[str, Any], where: str) -> None:
    for field, prop in properties.items():
        prop["title"] = f"{field} ({where})"
        for branch in prop.get("anyOf", ()):
            branch.pop("title", None)
