"""The one registry of node kinds, model providers and catalog models.

Built-ins and third-party plugins register the same way: a module named in the
`genarun.plugins` entry-point group exposes `register(registry)`. Entry points are loaded
lazily, once per process, and loading them never imports torch.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genarun.models.base import Provider
    from genarun.models.catalog import CatalogEntry
    from genarun.nodes.base import NodeKind

ENTRY_POINT_GROUP = "genarun.plugins"


class Kinds(dict[str, "NodeKind"]):
    """Node kinds by name. A kind added with `Registry.add_lazy_kind` is imported when it is
    first looked up (`kinds[name]`), so a run imports the kinds its tree uses, not every kind's
    module and models; `name in kinds` imports nothing; iterating imports them all."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, str] = {}  # name -> the module whose KIND it is

    def __missing__(self, name: str) -> NodeKind:
        module = self.lazy.pop(name, None)
        if module is None:
            raise KeyError(name)
        kind: NodeKind = importlib.import_module(module).KIND
        assert kind.name == name, f"{module}.KIND is {kind.name!r}, registered as {name!r}"
        self[name] = kind
        return kind

    def _load_all(self) -> None:
        for name in list(self.lazy):
            self[name]

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name) or name in self.lazy

    def __iter__(self) -> Iterator[str]:
        self._load_all()
        return super().__iter__()

    def __len__(self) -> int:
        return super().__len__() + len(self.lazy)

    def get(self, name: str, default: Any = None) -> Any:
        if name in self:  # a lookup that imports a lazy kind
            return self[name]
        return default

    def keys(self) -> Any:
        self._load_all()
        return super().keys()

    def values(self) -> Any:
        self._load_all()
        return super().values()

    def items(self) -> Any:
        self._load_all()
        return super().items()


class Registry:
    """Node kinds, model providers and catalog models by name.

    The built-in providers' registration (their modules, catalog entries and dataclasses) is
    deferred until `providers` or `catalog` is first read, so a run of a tree without models
    does not import them; entries that plugins added before then keep overriding the built-ins,
    in the order they had."""

    def __init__(
        self,
        kinds: dict[str, NodeKind] | None = None,
        providers: dict[str, Provider] | None = None,
        catalog: dict[str, CatalogEntry] | None = None,
    ) -> None:
        self.kinds: dict[str, NodeKind] = Kinds() if kinds is None else kinds
        self._providers: dict[str, Provider] = {} if providers is None else providers
        self._catalog: dict[str, CatalogEntry] = {} if catalog is None else catalog
        self._deferred: list[Callable[[Registry], None]] = []
        # Until every deferred registration has run: readers in other threads wait for it
        # (a Ray actor loads its models on several threads at once, and one of them saw the
        # providers half registered: "unknown provider 'diffusers'; known:" with none known).
        self._pending = False
        self._lock = threading.RLock()  # re-entrant: a registration may read the providers

    @property
    def providers(self) -> dict[str, Provider]:
        self._register_deferred()
        return self._providers

    @property
    def catalog(self) -> dict[str, CatalogEntry]:
        self._register_deferred()
        return self._catalog

    def defer(self, register: Callable[[Registry], None]) -> None:
        """Call `register(self)` when providers or the catalog are first read, before the
        entries added in the meantime (as if it had been called now)."""
        with self._lock:
            self._deferred.append(register)
            self._pending = True

    def _register_deferred(self) -> None:
        if not self._pending:
            return
        with self._lock:
            deferred, self._deferred = self._deferred, []
            if not deferred:  # another thread did it meanwhile, or a registration re-entered
                return
            later_providers, later_catalog = self._providers, self._catalog
            self._providers, self._catalog = {}, {}
            try:
                for register in deferred:
                    register(self)
            finally:
                self._providers.update(later_providers)
                self._catalog.update(later_catalog)
                self._pending = bool(self._deferred)

    def add_kind(self, kind: NodeKind) -> None:
        if isinstance(self.kinds, Kinds):
            self.kinds.lazy.pop(kind.name, None)
        self.kinds[kind.name] = kind

    def add_lazy_kind(self, name: str, module: str) -> None:
        """Register the kind `module.KIND` (named `name`), imported on first use."""
        if not isinstance(self.kinds, Kinds):
            self.add_kind(importlib.import_module(module).KIND)
            return
        dict.pop(self.kinds, name, None)
        self.kinds.lazy[name] = module

    def add_provider(self, provider: Provider) -> None:
        self._providers[provider.name] = provider

    def add_model(self, entry: CatalogEntry) -> None:
        self._catalog[entry.name] = entry


_registry: Registry | None = None


def registry() -> Registry:
    """The process-wide registry, filled from entry points on first use."""
    global _registry
    if _registry is None:
        reg = Registry()
        _load_builtins(reg)
        from genarun.plugin_scan import declared_entry_points

        # Scanned with importlib.metadata only where a plugin other than the built-ins may be
        # declared (genarun/plugin_scan.py says why): usually none is.
        declared = declared_entry_points((ENTRY_POINT_GROUP, _PYDANTIC_GROUP))
        if declared is None or not declared[ENTRY_POINT_GROUP] <= set(_BUILTIN_MODULES):
            from importlib.metadata import entry_points

            for ep in entry_points(group=ENTRY_POINT_GROUP):
                if ep.value in _BUILTIN_MODULES:
                    continue
                module: Any = ep.load()
                module.register(reg)
        if declared is not None and not declared[_PYDANTIC_GROUP]:
            _no_pydantic_plugins()
        _registry = reg
    return _registry


# pydantic's plugin group: pydantic scans it with importlib.metadata when it builds its first
# validator, and keeps what it found in `_loader._plugins` (None until then).
_PYDANTIC_GROUP = "pydantic"


def _no_pydantic_plugins() -> None:
    """Tell pydantic what its scan would find: no plugin (no distribution declares one).

    pydantic's loader module imports importlib.metadata only to scan, and importing that (with
    email, zipfile, csv, socket...) is about 5 % of a one-node run's start. Where nothing has
    imported it yet, the loader is imported beside a stand-in whose `entry_points` imports the
    real module when called: never, once `_plugins` holds the answer."""
    stand_in = None
    if "importlib.metadata" not in sys.modules and "pydantic.plugin._loader" not in sys.modules:
        stand_in = types.ModuleType("importlib.metadata", "imported when first used")
        stand_in.entry_points = _entry_points  # type: ignore[attr-defined]
        sys.modules["importlib.metadata"] = stand_in
    try:
        from pydantic.plugin import _loader
    except ImportError:  # a pydantic without plugins: nothing to scan
        return
    finally:
        if stand_in is not None and sys.modules.get("importlib.metadata") is stand_in:
            del sys.modules["importlib.metadata"]
    if getattr(_loader, "_plugins", False) is None:
        _loader._plugins = {}


def _entry_points(**params: Any) -> Any:
    import importlib.metadata

    return importlib.metadata.entry_points(**params)


# Built-ins are also declared as entry points in pyproject.toml; loading them directly as
# well keeps genarun working from a source checkout that was never pip-installed.
_BUILTIN_MODULES = ("genarun.nodes.builtin", "genarun.models.builtin")


def _load_builtins(reg: Registry) -> None:
    # Node kinds register lazily themselves; the model providers only add providers and catalog
    # entries, registered when those are first read.
    importlib.import_module("genarun.nodes.builtin").register(reg)
    reg.defer(lambda r: importlib.import_module("genarun.models.builtin").register(r))
