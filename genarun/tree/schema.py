"""The tree format, version 1: pydantic models of the tree and of the fields every node has.

Each node kind adds its own fields by subclassing `NodeBase` (see `genarun.nodes`). Every
model forbids unknown fields, so a misspelt field is an error, never silently ignored.

Fields of a kind that hold typed values (`max_tokens: int`) may also be written as a template
(`"{{ n }}"`): `Tpl[int]` accepts either; the template is rendered at run time and the result
validated against the same model.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeAlias, TypeVar, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

# Checked with fullmatch: `$` also matches before a final newline, so `^...$` let "id\n" in.
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TREE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# The same for JSON Schema, whose `pattern` searches: anchored (`$` there is the end only).
IDENTIFIER_PATTERN = f"^{IDENTIFIER.pattern}$"
TREE_NAME_PATTERN = f"^{TREE_NAME.pattern}$"
# Built-in names of the scope, and Jinja's constants and operators, which a name would hide or
# which cannot be written as a variable (`{{ not }}`).
RESERVED_NAMES = frozenset(
    {"seed", "run", "index", "loop", "item", "true", "false", "none", "True", "False", "None"}
    | {"not", "and", "or", "in", "is", "if", "else"}
)


def _template_only(value: str) -> str:
    if "{{" not in value and "{%" not in value:
        raise ValueError("expected a value or a template such as '{{ name }}'")
    return value


# A template where a typed value is expected must hold `{{` or `{%`: `steps: many` is a mistake,
# flagged by the validator and, through this pattern, by editors using `genarun schema`.
TEMPLATE_PATTERN = r"\{\{|\{%"
TemplateStr = Annotated[
    str,
    AfterValidator(_template_only),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": TEMPLATE_PATTERN,
            "description": "A template rendered at run time, such as '{{ n }}'.",
        }
    ),
]
# Bounds of typed fields; a template's rendered value is checked against the same bounds.
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
# Seeds are stored in SQLite, whose integers are 64-bit.
SEED_MAX = 2**63 - 1
Seed = Annotated[int, Field(ge=-SEED_MAX, le=SEED_MAX)]


def seed_problem(value: Any) -> str | None:
    """Why `value` is not a run seed (a whole number or 'random'), or None."""
    if value == "random" or (
        isinstance(value, int) and not isinstance(value, bool) and abs(value) <= SEED_MAX
    ):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return (
            f"seed {value} is too large (at most {SEED_MAX}: seeds are stored as 64-bit integers)"
        )
    shown = f"'{value}'" if isinstance(value, str) else repr(value)
    return f"a seed is a whole number or 'random', not {shown}"


# A model spec's fields (`{provider, id, options, revision}`) and what each must hold.
MODEL_SPEC_FIELDS = {
    "provider": str,
    "id": str | int,
    "options": dict,
    "revision": str,
    "price": dict,  # genarun.usage.prices: what its tokens, images, calls or GPU time cost
}
_SPEC_FIELD_WORDS = {
    "provider": "text",
    "id": "text",
    "options": "a mapping",
    "revision": "text",
    "price": "a mapping",
}


def model_ref_problem(ref: Any) -> tuple[str | None, str] | None:
    """Why `ref` is not a model reference (a name, or a mapping {provider, id, options,
    revision}): the spec field at fault (None for the whole value) and the message; or None."""
    if isinstance(ref, str):
        return None
    if not isinstance(ref, dict):
        got = "a list" if isinstance(ref, list) else "null" if ref is None else repr(ref)
        return None, (
            f"a model is a name (a catalog name, alias, Hugging Face id or local path) or a "
            f"mapping {{provider, id, options}}, not {got}"
        )
    unknown = sorted(str(key) for key in ref if key not in MODEL_SPEC_FIELDS)
    if unknown:
        return unknown[0], (
            f"model spec: unknown field(s) {', '.join(repr(k) for k in unknown)}; "
            "allowed: provider, id, options, revision, price"
        )
    if "id" not in ref:
        return None, "model spec needs an 'id'"
    for key, wanted in MODEL_SPEC_FIELDS.items():
        value = ref.get(key)
        if value is None and key != "id":
            continue
        if not isinstance(value, wanted) or isinstance(value, bool):
            return key, f"model spec: '{key}' must be {_SPEC_FIELD_WORDS[key]}, not {value!r:.60}"
    if any(not isinstance(key, str) for key in ref.get("options") or {}):
        return "options", "model spec: the names of 'options' must be text"
    if ref.get("price") is not None:
        from genarun.usage.prices import price_problem

        problem = price_problem(ref["price"])
        if problem:
            return "price", f"model spec: {problem}"
    return None


def empty_dict() -> dict[str, Any]:
    """The `default_factory` of mapping fields. A Python function rather than `dict`: pydantic
    reads a factory's signature, and a builtin's is parsed from its text with the tokenize
    module, whose regular expression took 30-40 ms of every start to compile."""
    return {}


def empty_list() -> list[Any]:
    """The `default_factory` of list fields (see `empty_dict`)."""
    return []


T = TypeVar("T")
# A typed field that may instead hold a Jinja template rendered at run time.
Tpl: TypeAlias = Union[T, TemplateStr]  # noqa: UP007 - mypy reads a generic alias only this way


class Strict(BaseModel):
    # defer_build: a model's validator is built when it first validates, not when its class is
    # made, so a run builds those of the tree and of the kinds it uses (abstract NodeBase and
    # the unused nested specs are never built on their own; about 1 ms each on a start).
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=False, defer_build=True)


class NoveltySpec(Strict):
    """`novelty:` on a generating node: regenerate an output too close to what exists."""

    against: list[str] = Field(
        min_length=1,
        description="Node ids (their embedded outputs; this node's own id: its earlier items) "
        "and `documents`, compared with the new output.",
    )
    model: str | dict[str, Any] = Field(description="The embedding model that compares them.")
    max_similarity: float | dict[Literal["text", "image", "cross"], float] = Field(
        0.9,
        description="The highest cosine similarity allowed; per modality pair as {text, image, "
        "cross} (text-image similarities of CLIP live in a lower range).",
    )
    attempts: int = Field(3, ge=1, le=20, description="Generations tried in all.")
    runs: str = Field("this", description="Whose outputs count: this, tree, all or a run id.")

    @field_validator("max_similarity")
    @classmethod
    def _similarity(cls, value: float | dict[str, float]) -> float | dict[str, float]:
        # A cosine similarity lies in [-1, 1]: a limit above 1 would never regenerate anything.
        for limit in value.values() if isinstance(value, dict) else [value]:
            if not -1.0 <= limit <= 1.0:
                raise ValueError(
                    f"max_similarity {limit} is not a cosine similarity: give one from -1 to 1"
                    " (0.9 regenerates near-copies)"
                )
        return value


_ID_SCHEMA: dict[str, Any] = {
    "pattern": IDENTIFIER_PATTERN,
    "not": {"enum": sorted(RESERVED_NAMES)},
}


class NodeBase(Strict):
    """Fields every node has. Kinds subclass this and add their own."""

    id: str = Field(
        description="Unique in the tree; an identifier, usable as a variable.",
        json_schema_extra=_ID_SCHEMA,
    )
    kind: str = Field(description="The node kind (template, generate, image, ...).")
    description: str | None = Field(None, description="Free text for people; not used.")
    vars: dict[str, Any] = Field(
        default_factory=empty_dict,
        description="Variables for this node and its subtree; string values are templates "
        "rendered once per execution, in order (a var sees the ones before it).",
    )
    foreach: Any = Field(
        None,
        description="Run once per item: a node name, an expression (`plan[:3]`), a template "
        "or a literal list.",
    )
    as_: str | None = Field(
        None,
        alias="as",
        description="Name of the foreach item variable (default: item).",
        json_schema_extra={"pattern": IDENTIFIER_PATTERN},
    )
    when: str | bool | None = Field(
        None, description="An expression; when false the node and its subtree are skipped."
    )
    enabled: bool = Field(True, description="false removes the node and its subtree from the run.")
    retries: int = Field(0, ge=0, le=100, description="Extra attempts when the node fails.")
    seed: Seed | Literal["random"] | None = Field(
        None, description="Overrides the derived seed: a fixed int, or random (fresh, recorded)."
    )
    children: list[Any] = Field(default_factory=empty_list, description="Child nodes.")
    index: bool | str | dict[str, Any] | None = Field(
        None,
        description="Embed each output as it is produced, so `retrieve` nodes find it: an "
        "embedding model, or true for the model of the retrieve nodes that name this node.",
    )
    novelty: NoveltySpec | None = Field(
        None,
        description="Regenerate (derived seed) an output too similar to what `against` holds.",
    )

    @field_validator("id")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not IDENTIFIER.fullmatch(value):
            raise ValueError(
                f"node id '{value}' is not an identifier: use letters, digits and _ "
                "(it becomes a variable name)"
            )
        if value in RESERVED_NAMES:
            raise ValueError(f"node id '{value}' is reserved; choose another name")
        return value

    @field_validator("as_")
    @classmethod
    def _as_identifier(cls, value: str | None) -> str | None:
        if value is not None and not IDENTIFIER.fullmatch(value):
            raise ValueError(f"'as: {value}' is not an identifier")
        return value

    def param_fields(self) -> dict[str, Any]:
        """The kind's own fields (the node's parameters), as written in the tree."""
        return {
            name: getattr(self, name)
            for name in type(self).model_fields
            if name not in STRUCTURAL_FIELDS
        }


# Fields that are structure, not templates: never rendered as parameters.
STRUCTURAL_FIELDS = frozenset(NodeBase.model_fields)


PUBLISHED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


class SiteSpec(Strict):
    """`site:`: what `genarun export site` publishes, and how."""

    title: str | None = Field(None, description="The site's title (default: the tree's name).")
    description: str | None = Field(
        None, description="The site's description (default: the tree's description)."
    )
    publish: list[str] | dict[str, str] | None = Field(
        None,
        description="The nodes published in site-data.json: a list of node ids, or node id -> "
        "name in site-data (default: every top-level node, under its id).",
    )
    template: str | None = Field(
        None, description="The site template `export site` uses by default (astro-blog)."
    )
    generator: str | None = Field(
        None,
        description="A node whose output is {files: {path: content}, commands: [...]}, applied "
        "over the exported site (as `export site --from NODE`).",
    )
    out: str | None = Field(
        None,
        description="The folder `genarun watch` refreshes the export in, relative to the tree "
        "file's folder.",
    )

    @field_validator("publish")
    @classmethod
    def _names(cls, value: list[str] | dict[str, str] | None) -> list[str] | dict[str, str] | None:
        names = list(value.values()) if isinstance(value, dict) else []
        for name in names:
            if not PUBLISHED_NAME.fullmatch(name):
                raise ValueError(
                    f"published name '{name}' may hold only letters, digits, - and _ "
                    "(it is a key of site-data.json and a collection name)"
                )
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(
                f"published name '{repeated[0]}' is given to several nodes: each needs its own"
            )
        return value

    @field_validator("template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        # A tree names a shipped template or a folder inside its own folder: `export site`
        # copies the folder into the export (genarun/publish/export.py, tree_template).
        if value is None:
            return value
        parts = value.replace("\\", "/").split("/")
        if value.startswith(("/", "~")) or re.match(r"[A-Za-z]:", value) or ".." in parts:
            raise ValueError(
                f"site template '{value}' is outside the tree's folder: name a shipped template"
                " (astro-blog) or a folder inside the tree's folder, or give any folder to"
                " `export site --template`"
            )
        if "\x00" in value:
            raise ValueError("site template holds a NUL character")
        return value

    def published(self) -> dict[str, str] | None:
        """node id -> published name, or None for the default (every top-level node)."""
        if self.publish is None:
            return None
        if isinstance(self.publish, list):
            return {node_id: node_id for node_id in self.publish}
        return dict(self.publish)


class SecretSpec(Strict):
    """`secrets: {NAME: {hosts: [...]}}`: an environment variable that `secret('NAME')` reads
    at send time, and the only hosts it may be sent to."""

    hosts: list[str] = Field(
        min_length=1,
        description="Hosts the secret may be sent to: api.example.com, *.example.com (its "
        "subdomains), localhost:8080 (that port only).",
    )

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        from genarun.tree.secrets import HostRule

        for entry in value:
            HostRule.parse(entry)
        return value


class DocumentsSpec(Strict):
    """`documents:` in its long form: the files and how they are chunked."""

    paths: list[str] = Field(
        min_length=1, description="Files, folders and globs, relative to the tree's folder."
    )
    chunk_size: int = Field(1000, ge=50, le=100_000, description="Most characters per chunk.")
    overlap: int = Field(
        100, ge=0, le=10_000, description="Characters repeated where a paragraph is cut."
    )


class TreeSpec(Strict):
    """The top of a tree file."""

    genarun: Literal[1] = Field(description="Format version; 1.")
    name: str = Field(
        description="Letters, digits, - and _; names the output folder.",
        json_schema_extra={"pattern": TREE_NAME_PATTERN},
    )
    description: str | None = None
    seed: Seed | Literal["random"] | None = Field(
        None, description="Run seed; omitted or random = fresh entropy, recorded in the run."
    )
    models: dict[str, Any] = Field(
        default_factory=empty_dict,
        description="Model aliases: name -> catalog name, Hugging Face id, local path or "
        "{provider, id, options}.",
    )
    vars: dict[str, Any] = Field(
        default_factory=empty_dict, description="Tree variables; string values are templates."
    )
    matrix: dict[str, list[Any]] = Field(
        default_factory=empty_dict,
        description="One run per combination (cartesian product), each value bound as a var.",
        json_schema_extra={
            "propertyNames": {"pattern": IDENTIFIER_PATTERN},
            "additionalProperties": {"type": "array", "minItems": 1},
        },
    )
    site: SiteSpec | None = Field(
        None, description="What `genarun export site` publishes, under which names."
    )
    secrets: dict[str, SecretSpec] = Field(
        default_factory=empty_dict,
        description="Environment variables that templates read with secret('NAME') at send "
        "time, each with the hosts it may be sent to.",
        json_schema_extra={"propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}},
    )
    documents: list[str] | DocumentsSpec | None = Field(
        None,
        description="Base documents that `retrieve` searches: files, folders and globs of "
        ".md/.txt/.json/.html and images, relative to the tree's folder.",
    )
    nodes: list[Any] = Field(description="The top-level nodes.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not TREE_NAME.fullmatch(value):
            # The name becomes the output folder's: say one that would do (`my blog`: my-blog).
            slug = re.sub(r"[^A-Za-z0-9_-]+", "-", value).strip("-")[:100]
            example = f" (for example name: {slug})" if slug and TREE_NAME.fullmatch(slug) else ""
            raise ValueError(f"tree name '{value}' may hold only letters, digits, - and _{example}")
        return value

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, value: dict[str, SecretSpec]) -> dict[str, SecretSpec]:
        from genarun.tree.secrets import SECRET_NAME

        for name in value:
            if not SECRET_NAME.fullmatch(name):
                raise ValueError(
                    f"secret '{name}' is not an environment variable's name (letters, digits, _)"
                )
        return value

    @field_validator("matrix")
    @classmethod
    def _matrix(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in value.items():
            if not IDENTIFIER.fullmatch(key):
                raise ValueError(f"matrix key '{key}' is not an identifier")
            if not values:
                raise ValueError(f"matrix key '{key}' has no values")
            if key == "seed":
                for seed in values:
                    problem = seed_problem(seed)
                    if problem:
                        raise ValueError(f"matrix key 'seed': {problem}")
        return value
