"""The one registry of node kinds, model providers and catalog models.

Built-ins and third-party plugins register the same way: a module named in the
`genarun.plugins` entry-point group exposes `register(registry)`. Entry points are loaded
lazily, once per process, and loading them never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genarun.models.base import Provider
    from genarun.models.catalog import CatalogEntry
    from genarun.nodes.base import NodeKind

ENTRY_POINT_GROUP = "genarun.plugins"


@dataclass
class Registry:
    kinds: dict[str, NodeKind] = field(default_factory=dict)
    providers: dict[str, Provider] = field(default_factory=dict)
    catalog: dict[str, CatalogEntry] = field(default_factory=dict)

    def add_kind(self, kind: NodeKind) -> None:
        self.kinds[kind.name] = kind

    def add_provider(self, provider: Provider) -> None:
        self.providers[provider.name] = provider

    def add_model(self, entry: CatalogEntry) -> None:
        self.catalog[entry.name] = entry


_registry: Registry | None = None


def registry() -> Registry:
    """The process-wide registry, filled from entry points on first use."""
    global _registry
    if _registry is None:
        reg = Registry()
        _load_builtins(reg)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.value in _BUILTIN_MODULES:
                continue
            module: Any = ep.load()
            module.register(reg)
        _registry = reg
    return _registry


# Built-ins are also declared as entry points in pyproject.toml; loading them directly as
# well keeps genarun working from a source checkout that was never pip-installed.
_BUILTIN_MODULES = ("genarun.nodes.builtin", "genarun.models.builtin")


def _load_builtins(reg: Registry) -> None:
    import importlib

    for name in _BUILTIN_MODULES:
        importlib.import_module(name).register(reg)
