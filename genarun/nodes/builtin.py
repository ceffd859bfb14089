"""Registers the built-in node kinds (an entry-point plugin, like any third party's).

Each kind's module (its parameters' models, its imports) is imported when a tree first uses
the kind: a run of a template tree does not build the fetch or cycle kinds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from genarun.plugins import Registry

# kind name -> its module under genarun.nodes, in the order kinds are listed
BUILTIN_KINDS = {
    "template": "template",
    "group": "group",
    "generate": "generate",
    "image": "image",
    "caption": "caption",
    "embed": "embed",
    "cycle": "cycle",
    "persistence": "persistence",
    "fetch": "fetch",
    "human": "human",
    "retrieve": "retrieve",
}


def register(registry: Registry) -> None:
    for name, module in BUILTIN_KINDS.items():
        registry.add_lazy_kind(name, f"genarun.nodes.{module}")
