"""The Astro side of a site export: `src/content.config.ts` generated from site-data.schema.json.

Each page collection of the schema (`x-genarun-collections`) becomes a content collection read
by Astro's `file()` loader from `public/data/site-data.json`, with a zod schema translated from
the JSON Schema, so a run whose data does not fit its tree fails the build with zod's message.
"""

from __future__ import annotations

import json
from typing import Any

DATA_FILE = "public/data/site-data.json"


def _ts(value: Any) -> str:
    """A JavaScript literal (JSON is one)."""
    return json.dumps(value, ensure_ascii=False)


class ZodWriter:
    """Translates the JSON Schema subset genarun writes into zod source."""

    def __init__(self, schema: dict[str, Any]):
        self.defs: dict[str, Any] = schema.get("$defs", {})
        self.used: dict[str, str] = {}  # def name -> its const's source

    def ref(self, name: str) -> str:
        if name not in self.used:
            self.used[name] = ""  # reserved first: a recursive ref stops here
            self.used[name] = self.zod(self.defs[name])
        return f"{name}Schema"

    def zod(self, schema: Any) -> str:
        if schema is True or schema == {} or not isinstance(schema, dict):
            return "z.any()"
        schema = {k: v for k, v in schema.items() if k not in ("description", "title")}
        if not schema:
            return "z.any()"
        if "$ref" in schema:
            return self.ref(str(schema["$ref"]).rsplit("/", 1)[-1])
        if "const" in schema:
            return f"z.literal({_ts(schema['const'])})"
        if "enum" in schema:
            options = [f"z.literal({_ts(v)})" for v in schema["enum"]]
            return options[0] if len(options) == 1 else f"z.union([{', '.join(options)}])"
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self._union(schema[key])
        kind = schema.get("type")
        if isinstance(kind, list):
            return self._union([{**schema, "type": t} for t in kind])
        if kind == "string":
            return "z.string()"
        if kind == "integer":
            return "z.number().int()"
        if kind == "number":
            return "z.number()"
        if kind == "boolean":
            return "z.boolean()"
        if kind == "null":
            return "z.null()"
        if kind == "array":
            items = schema.get("items")
            return f"z.array({self.zod(items if items is not None else {})})"
        if kind == "object" or "properties" in schema:
            return self._object(schema)
        return "z.any()"

    def _union(self, options: list[Any]) -> str:
        non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
        nullable = len(non_null) < len(options)
        if not non_null:
            return "z.null()"
        inner = (
            self.zod(non_null[0])
            if len(non_null) == 1
            else f"z.union([{', '.join(self.zod(o) for o in non_null)}])"
        )
        return f"{inner}.nullable()" if nullable else inner

    def _object(self, schema: dict[str, Any]) -> str:
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        fields = []
        for name, sub in properties.items():
            code = self.zod(sub)
            if name not in required:
                code += ".optional()"
            fields.append(f"{_ts(name)}: {code}")
        body = "z.object({" + ", ".join(fields) + "})"
        if schema.get("additionalProperties") is False:
            return body + ".strict()"
        return body + ".passthrough()"

    def definitions(self) -> str:
        """The consts for every $def used, dependencies first."""
        return "\n".join(f"const {name}Schema = {code};" for name, code in self.used.items())


def content_config(schema: dict[str, Any]) -> str:
    """The source of src/content.config.ts for a tree's site-data schema."""
    writer = ZodWriter(schema)
    data_properties = schema["properties"]["data"]["properties"]
    collections = schema.get("x-genarun-collections", [])
    texts = schema.get("x-genarun-texts", [])
    blocks = []
    names = []
    for collection in collections:
        target: Any = {"properties": data_properties}
        for key in collection["path"]:
            target = target["properties"][key] if "properties" in target else {}
        items = target.get("items", {}) if isinstance(target, dict) else {}
        if isinstance(items, dict) and items.get("type") == "array":  # nested: flat entries
            items = items.get("items", {})
        entry = writer.zod(items)
        path = "".join(f"?.[{_ts(k)}]" for k in collection["path"])
        const = _identifier(collection["name"])
        names.append((collection["name"], const))
        blocks.append(
            f"// {collection['node']}: one entry per item (data{_dotted(collection['path'])}).\n"
            f"const {const} = defineCollection({{\n"
            f"  loader: file({_ts(DATA_FILE)}, {{ parser: (text) => JSON.parse(text).data{path} ?? [] }}),\n"
            f"  schema: {entry},\n"
            f"}});"
        )
    text_fields = ", ".join(f"{_ts(t)}: {writer.zod(data_properties[t])}.optional()" for t in texts)
    site_meta = writer.zod({"$ref": "#/$defs/site"})
    text_pick = ", ".join(f"{_ts(t)}: data.data[{_ts(t)}]" for t in texts)
    site_block = (
        "// The run this site comes from, and the top-level texts shown on the home page.\n"
        "const site = defineCollection({\n"
        f"  loader: file({_ts(DATA_FILE)}, {{\n"
        "    parser: (text) => {\n"
        "      const data = JSON.parse(text);\n"
        f"      return [{{ id: 'site', ...data.site, texts: {{ {text_pick} }} }}];\n"
        "    },\n"
        "  }),\n"
        f"  schema: {site_meta}.and(z.object({{ id: z.string(), texts: z.object({{ {text_fields} }}) }})),\n"
        "});"
    )
    exported = ", ".join(
        ["site", *(f"{_ts(name)}: {const}" if name != const else const for name, const in names)]
    )
    return (
        "// Generated by `genarun export site` from public/data/site-data.schema.json:\n"
        "// regenerate it (export again) rather than editing it.\n"
        "import { defineCollection, z } from 'astro:content';\n"
        "import { file } from 'astro/loaders';\n\n"
        + writer.definitions()
        + "\n\n"
        + site_block
        + "\n\n"
        + "\n\n".join(blocks)
        + f"\n\nexport const collections = {{ {exported} }};\n"
    )


def _identifier(name: str) -> str:
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return f"c_{out}" if not out or out[0].isdigit() or out == "site" else out


def _dotted(path: list[str]) -> str:
    return "".join(f".{k}" for k in path)
