"""The shape of site-data.json, derived from a tree, and its JSON Schema (draft 2020-12).

site-data.json mirrors the run's outputs like output.json, shaped for a site:
- a node without children holds its value; a node with children holds `{value, child...}`
  (a `group` has no value);
- a foreach node holds a list of entries, each `{id, index, label, tags, <as>: item, value,
  child...}`: the item it ran for (an article's title, tags) beside its outputs;
- images are `{kind: "image", src, width, height, alt}` with `src` relative to the data file;
- a node published under a foreach (`site.publish`) holds the flat list of its entries.

Node kinds, `parse:` modes and foreach give the types; node descriptions (or their prompts)
describe them. `x-genarun-collections` lists the page collections a site builds pages from
(the outermost foreach nodes in the published data) with their path in the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from genarun.errors import Problem, TreeError

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# Keys every foreach entry has, besides the item and the outputs.
ENTRY_KEYS = ("id", "index", "label", "tags", "value")
# A field that names one other node: `{{ cover }}`, `cover`.
SINGLE_NAME = re.compile(r"\s*(?:\{\{\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*(?:\}\})?\s*")

IMAGE = {
    "type": "object",
    "description": "An image: a PNG beside the data file.",
    "properties": {
        "kind": {"const": "image"},
        "src": {
            "type": "string",
            "pattern": r"^assets/[A-Za-z0-9_.-]+\.png$",
            "description": "Path of the PNG, relative to site-data.json.",
        },
        "width": {"type": ["integer", "null"]},
        "height": {"type": ["integer", "null"]},
        "alt": {
            "type": ["string", "null"],
            "description": "Alt text: the caption node that describes this image, if any.",
        },
    },
    "required": ["kind", "src", "width", "height", "alt"],
    "additionalProperties": False,
}
EMBEDDING = {
    "type": "object",
    "description": "A vector stored in the run's SQLite database.",
    "properties": {
        "embedding": {"type": "integer"},
        "model": {"type": "string"},
        "dim": {"type": "integer"},
    },
    "required": ["embedding", "model", "dim"],
}
ANY: dict[str, Any] = {}


def _parsed(parse: str) -> dict[str, Any]:
    if parse == "text":
        return {"type": "string"}
    if parse == "lines":
        return {"type": "array", "items": {"type": "string"}}
    return dict(ANY)  # json and yaml give any value


def value_schema(node: Any) -> dict[str, Any] | None:
    """The JSON Schema of one execution's output of `node` (a CompiledNode); None: no value."""
    kind = node.kind.name
    spec = node.spec
    image = {"$ref": "#/$defs/image"}
    embedding = {"$ref": "#/$defs/embedding"}
    if kind == "group":
        return None
    if kind in ("template", "generate"):
        schema = _parsed(getattr(spec, "parse", "text"))
        given = getattr(spec, "schema_", None) or getattr(spec, "json_schema", None)
        if isinstance(given, dict):  # generate's `schema:`, where the kind has it
            schema = dict(given)
    elif kind == "image":
        schema = image
    elif kind == "caption":
        schema = {"type": "string"}
    elif kind == "embed":
        schema = {"anyOf": [embedding, {"type": "array", "items": embedding}]}
    elif kind == "cycle":
        schema = {"type": "array", "items": {"anyOf": [{"type": "string"}, image]}}
    else:  # persistence and third-party kinds: their output as it is
        schema = dict(ANY)
    schema = {**schema, "description": describe(node)}
    return schema


def describe(node: Any) -> str:
    """The description of a node's output: its `description`, else its kind and prompt."""
    spec = node.spec
    if spec.description:
        return str(spec.description)
    text = getattr(spec, "prompt", None) or getattr(spec, "text", None)
    shown = f": {' '.join(str(text).split())[:120]}" if isinstance(text, str) else ""
    return f"Output of the {node.kind.name} node '{node.id}'{shown}"


@dataclass
class Collection:
    """A list of entries a site makes pages of: its name, node and path in site-data.json."""

    name: str
    node: str
    path: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "node": self.node, "path": self.path}


def published_nodes(compiled: Any) -> dict[str, str]:
    """node id -> name in site-data.json: `site.publish`, or every top-level node."""
    site = compiled.loaded.spec.site
    chosen = site.published() if site is not None else None
    if chosen is None:
        chosen = {node_id: node_id for node_id in compiled.roots}
    return {
        node_id: name
        for node_id, name in chosen.items()
        if node_id in compiled.nodes and not compiled.nodes[node_id].skip_reason
    }


def item_schema(compiled: Any, node: Any) -> dict[str, Any]:
    """What a foreach node's items are: the items of the list node it names, when it names one."""
    match = SINGLE_NAME.fullmatch(str(node.spec.foreach))
    source = compiled.nodes.get(match.group(1)) if match else None
    if source is not None and source.id != node.id:
        schema = value_schema(source)
        if schema and schema.get("type") == "array" and isinstance(schema.get("items"), dict):
            return dict(schema["items"])
    return dict(ANY)


def check_entry_names(compiled: Any) -> None:
    """Entry keys must not collide: an `as:` name or child id of `id`, `label`, ..."""
    problems = []
    file = str(compiled.loaded.path)
    for node in compiled.nodes.values():
        if node.foreach is None:
            continue
        names = [node.item_name, *node.children]
        for name in names:
            taken = name in ENTRY_KEYS or names.count(name) > 1
            if taken:
                what = "its item name ('as:')" if name == node.item_name else f"child '{name}'"
                problems.append(
                    Problem(
                        f"{what} would be the key '{name}' of each site-data entry, which is "
                        f"taken ({', '.join(ENTRY_KEYS)} and the item name are reserved there)",
                        file,
                        node.line,
                        node.id,
                        hint="rename it",
                    )
                )
    if problems:
        raise TreeError(problems)


def entry_schema(compiled: Any, node: Any) -> dict[str, Any]:
    """The schema of what `node` holds in its parent's entry (a list for a foreach node)."""
    value = value_schema(node)
    nullable_value: dict[str, Any] | None = (
        {"anyOf": [value, {"type": "null"}]} if value is not None else None
    )
    if node.foreach is None and not node.children:
        return nullable_value or {"type": "null"}
    properties: dict[str, Any] = {}
    required: list[str] = []
    if node.foreach is not None:
        properties.update(
            {
                "id": {
                    "type": "string",
                    "pattern": "^[a-z0-9][a-z0-9-]*$",
                    "description": "Unique in its list; made from the item, so it stays the "
                    "same when the run is rerun.",
                },
                "index": {"type": "integer", "minimum": 0, "description": "Position in the list."},
                "label": {"type": "string", "description": "The item as a title."},
                "tags": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "The item's tags (its `tags` field), if any.",
                },
                node.item_name: {
                    **item_schema(compiled, node),
                    "description": f"The foreach item ('{node.item_name}') of this entry.",
                },
            }
        )
        required += ["id", "index", "label", "tags"]
    if nullable_value is not None:
        properties["value"] = nullable_value
    for child_id in node.children:
        child = compiled.nodes[child_id]
        if child.skip_reason:
            continue
        properties[child_id] = entry_schema(compiled, child)
    entry = {
        "type": "object",
        "description": describe(node),
        "properties": properties,
        "required": required,
    }
    if node.foreach is None:
        return entry
    return {"type": "array", "items": entry, "description": describe(node)}


def _collections(
    compiled: Any, node: Any, path: list[str], out: list[Collection], name: str | None
) -> None:
    """Page collections under `node`, found at `path`: the outermost foreach nodes (nested ones
    are parts of their parent's pages)."""
    if node.foreach is not None:
        out.append(Collection(name or node.id, node.id, path))
        return
    if node.loops:  # a published value under a foreach: a flat list of values, no pages
        return
    for child_id in node.children:
        child = compiled.nodes[child_id]
        if not child.skip_reason:
            _collections(compiled, child, [*path, child_id], out, None)


def site_schema(compiled: Any, *, title: str | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the site-data.json that runs of this tree give."""
    check_entry_names(compiled)
    spec = compiled.loaded.spec
    data_properties: dict[str, Any] = {}
    collections: list[Collection] = []
    texts: list[str] = []
    for node_id, name in published_nodes(compiled).items():
        node = compiled.nodes[node_id]
        schema = entry_schema(compiled, node)
        # Under a foreach, a published node holds the flat list of its entries (or values).
        nested = node.loops and node.foreach is None
        data_properties[name] = {"type": "array", "items": schema} if nested else schema
        _collections(compiled, node, [name], collections, name)
        text = (value_schema(node) or {}).get("type") == "string"
        if text and not node.loops and not node.children:
            texts.append(name)
    names = [c.name for c in collections]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise TreeError(
            Problem(
                f"two lists would publish as the collection '{repeated[0]}'",
                str(compiled.loaded.path),
                compiled.loaded.line(("site",)),
                hint="give them distinct names under site.publish",
            )
        )
    site_title = title or (spec.site.title if spec.site and spec.site.title else spec.name)
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": "site-data.schema.json",
        "title": f"site-data.json of the tree '{spec.name}'",
        "description": (spec.site.description if spec.site else None)
        or spec.description
        or f"The published outputs of a run of {spec.name}",
        "type": "object",
        "properties": {
            "$schema": {"type": "string"},
            "site": {"$ref": "#/$defs/site"},
            "data": {
                "type": "object",
                "description": "The published nodes' outputs, by published name.",
                "properties": data_properties,
                "required": [],
                "additionalProperties": False,
            },
        },
        "required": ["site", "data"],
        "additionalProperties": False,
        "x-genarun-collections": [c.to_json() for c in collections],
        "x-genarun-texts": texts,
        "x-genarun-title": site_title,
        "$defs": {"image": IMAGE, "embedding": EMBEDDING, "site": SITE_META},
    }


SITE_META: dict[str, Any] = {
    "type": "object",
    "description": "About the run this data comes from.",
    "properties": {
        "title": {"type": "string"},
        "description": {"type": ["string", "null"]},
        "tree": {"type": "string", "description": "The tree's name."},
        "run": {"type": "string", "description": "The run's id."},
        "seed": {"type": ["integer", "null"]},
        "bindings": {"type": "object", "description": "Matrix values and --set overrides."},
        "status": {"type": "string", "description": "completed, failed, interrupted, ..."},
        "complete": {"type": "boolean", "description": "Every published output is present."},
        "missing": {
            "type": "array",
            "items": {"type": "string"},
            "description": "What is missing, and why (a failed node, an image file gone).",
        },
        "started": {"type": "string", "description": "When the run started (ISO 8601, UTC)."},
        "collections": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "node": {"type": "string"},
                    "path": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["name", "node", "path"],
            },
        },
        "generator": {"type": "string"},
    },
    "required": [
        "title",
        "tree",
        "run",
        "status",
        "complete",
        "missing",
        "collections",
        "generator",
    ],
}
