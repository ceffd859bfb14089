"""Fields of a node's output read by name before the run: `{{ g.title }}` where `g`'s output is
known, from its fields alone, to be an object with fixed keys (`generate` with a `schema:`
whose properties are listed, NodeKind.output_fields).

A key the output cannot have is an error at `validate`, with a did-you-mean, instead of a
failure when the node that reads it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from genarun.errors import Problem, did_you_mean
from genarun.graph.value_types import item_names
from genarun.tree.template_core import Compiled, attributes_read

if TYPE_CHECKING:
    from genarun.graph.compiled import CompiledNode

# Attributes of any mapping a template may call (`{{ g.items() }}`), not keys.
_MAPPING_METHODS = frozenset({"items", "keys", "values", "get"})


def output_field_problems(
    nodes: dict[str, CompiledNode],
    file: str,
    line: Callable[[tuple[str | int, ...]], int | None],
    tree_dir: Path,
) -> list[Problem]:
    """Every read of a key that a node's output, known to have fixed keys, does not have."""
    known: dict[str, frozenset[str] | None] = {}

    def fields_of(source: CompiledNode) -> frozenset[str] | None:
        if source.id not in known:
            declared = source.kind.output_fields
            known[source.id] = declared(source.spec, tree_dir) if declared else None
        return known[source.id]

    problems: list[Problem] = []
    for node in nodes.values():
        shadows = item_names(node)
        # An ancestor's output, or a dependency's within the same foreach items: one object.
        # Named from outside its foreach, a node is the list of its items' outputs.
        sources = [
            nodes[name]
            for name in (*node.ancestors, *sorted(node.deps))
            if name in nodes
            and name not in shadows
            and node.loops[: len(nodes[name].loops)] == nodes[name].loops
        ]
        for source in sources:
            fields = fields_of(source)
            if fields is None:
                continue
            for where, suffix, compiled in _compiled_values(node):
                read = attributes_read(compiled, source.id) - {"*"} - _MAPPING_METHODS
                for key in sorted(read - fields):
                    close = did_you_mean(key, set(fields))
                    listed = f"its schema's properties: {', '.join(sorted(fields)) or 'none'}"
                    problems.append(
                        Problem(
                            f"{where}: '{source.id}' has no field '{key}'",
                            file,
                            line((*node.tree_node.loc, *suffix)),
                            node.id,
                            hint=f"{close} {listed}" if close else listed,
                        )
                    )
    return problems


def _compiled_values(
    node: CompiledNode,
) -> Iterator[tuple[str, tuple[str | int, ...], Compiled]]:
    """(what to call it, where it is under the node, the compiled value) for every template
    and expression of a node."""
    if node.foreach is not None:
        yield "foreach", ("foreach",), node.foreach
    if node.when is not None:
        yield "when", ("when",), node.when
    for name, compiled in node.vars:
        yield f"vars.{name}", ("vars", name), compiled
    spec_fields = type(node.spec).model_fields
    for name, compiled in node.params.items():
        alias = spec_fields[name].alias or name
        yield f"field '{alias}'", (alias,), compiled
