"""Type checks before the run: a value that is known, from the tree alone, to be of the wrong
type for where it goes.

Each kind may declare the type of its output from its fields (`NodeKind.output_type`: an image
node gives an image, `generate` with `parse: text` gives text, ...). A field typed as text
(`prompt`, `system`, `start`, ...) given a single expression naming a node whose output is an
image, a list or an object, and a `foreach:` over a node whose output is text or an image, fail
at run time; here they are errors at `validate`, with the file, line and fix. Values whose type
is not known before the run (parsed JSON, a var, an expression) are checked when the node runs.
"""

from __future__ import annotations

import functools
import re
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from genarun.errors import Problem

if TYPE_CHECKING:
    from pydantic import BaseModel

    from genarun.graph.compiled import CompiledNode

# Output types a kind can declare.
TEXT, IMAGE, LIST, OBJECT = "text", "image", "list", "object"
# `{{ name }}`: a template that is one bare name, which keeps the named value's type.
_SINGLE_NAME = re.compile(r"\s*\{\{-?\s*([A-Za-z_][A-Za-z0-9_]*)\s*-?\}\}\s*")
_BARE_NAME = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*")


def item_names(node: CompiledNode) -> set[str]:
    """Foreach item names (`as:`) in a node's scope: they hide a node of the same name."""
    names = set()
    tn: Any = node.tree_node
    while tn is not None:
        if tn.spec.foreach is not None:
            names.add(tn.spec.as_ or "item")
        tn = tn.parent
    return names


@functools.cache
def text_fields(params: type[BaseModel]) -> frozenset[str]:
    """A kind's fields typed as text (`str` or `str | None`): a template there must render text."""
    out = set()
    for name, info in params.model_fields.items():
        annotation = info.annotation
        args = typing.get_args(annotation)
        is_union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
        if annotation is str or (is_union and set(args) == {str, type(None)}):
            out.add(name)
    return frozenset(out)


def named_node(value: Any, *, bare: bool = False) -> str | None:
    """The name a field's value consists of (`{{ cover }}`, or `cover` for an expression field)."""
    if not isinstance(value, str):
        return None
    match = _SINGLE_NAME.fullmatch(value) or (_BARE_NAME.fullmatch(value) if bare else None)
    return match.group(1) if match else None


def _declared(source: CompiledNode) -> str | None:
    kind = source.kind
    return kind.output_type(source.spec) if kind.output_type else None


def value_type(source: CompiledNode, user: CompiledNode) -> tuple[str | None, str]:
    """The type of `source`'s output as `user` sees it, and the words for it."""
    kind = source.kind
    declared = _declared(source)
    shared = user.loops[: len(source.loops)] == source.loops
    if not shared:  # named from outside its foreach: the list of every item's output
        return LIST, f"a list: every output of {kind.name} node '{source.id}', one per item"
    words = {
        TEXT: "text",
        IMAGE: "an image",
        LIST: "a list",
        OBJECT: "an object",
    }.get(declared or "", "")
    return declared, f"{words}, the output of {kind.name} node '{source.id}'"


_FIXES = {
    IMAGE: "to describe it, add a caption node with image: '{{{{ {name} }}}}'; to mention its "
    "path, write text around it: 'a picture at {{{{ {name} }}}}'",
    LIST: "join it, '{{{{ {name} | join(\", \") }}}}', or take one item, '{{{{ {name}[0] }}}}'",
    OBJECT: "name the field you want: '{{{{ {name}.field }}}}'",
}


def type_problems(
    nodes: dict[str, CompiledNode], file: str, line: Callable[[tuple[str | int, ...]], int | None]
) -> list[Problem]:
    """Text fields given a non-text node output, and foreach over text or an image."""
    problems: list[Problem] = []
    for node in nodes.values():
        spec = node.spec
        where = node.tree_node.loc
        shadows = item_names(node)
        for field in sorted(text_fields(type(spec)) & set(node.params)):  # type: ignore[arg-type]
            name = named_node(getattr(spec, field))
            source = nodes.get(name) if name else None
            if source is None or name in shadows:
                continue
            found, words = value_type(source, node)
            if found in _FIXES:
                alias = type(spec).model_fields[field].alias or field
                problems.append(
                    Problem(
                        f"field '{alias}' is text, but '{{{{ {name} }}}}' is {words}",
                        file,
                        line((*where, alias)),
                        node.id,
                        hint=_FIXES[IMAGE if _declared(source) == IMAGE else found].format(
                            name=name
                        ),
                    )
                )
        if spec.foreach is None:
            continue
        name = named_node(spec.foreach, bare=True)
        source = nodes.get(name) if name else None
        if source is None or name in shadows:
            continue
        found, words = value_type(source, node)
        if found == TEXT:
            hint = (
                f"write parse: json or parse: lines on '{name}' at line {source.line} "
                f"so its output is a list, or split the text: foreach: {name}.splitlines()"
            )
        elif found == IMAGE:
            hint = "give a list, a mapping, or a node whose output is one"
        else:
            continue
        problems.append(
            Problem(
                f"foreach: '{name}' is {words}, not a list",
                file,
                line((*where, "foreach")),
                node.id,
                hint=hint,
            )
        )
    return problems
