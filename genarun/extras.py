"""Optional parts of genarun and the libraries each needs (the extras of `pip install genarun`).

The core install runs trees on the dummy and OpenAI-compatible providers, fetches, human steps
and site exports. Local models, topology, the web server and Ray come with extras; a node, model
or command that needs a missing one is refused before anything runs, with the command that
installs it. Availability is found with `importlib.util.find_spec`, which imports nothing, so
checking costs no torch import.
"""

from __future__ import annotations

import importlib.util
import sys

from genarun.errors import UserError

# extra -> the modules it provides that genarun imports (distribution names differ:
# open-clip-torch is `open_clip`). Kept in step with [project.optional-dependencies].
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "local": (
        "torch",
        "diffusers",
        "transformers",
        "open_clip",
        "sentence_transformers",
        "llguidance",
    ),
    "tda": ("ripser", "gudhi", "persim", "matplotlib"),
    "data": ("pyarrow",),
    "web": ("starlette", "uvicorn", "ruamel.yaml"),
    "ray": ("ray",),
    # The approximate vector index of `genarun search` (exact numpy search needs nothing).
    "ann": ("usearch",),
}


class MissingExtra(UserError):
    """Something asked for needs libraries of an extra that is not installed."""

    def __init__(self, what: str, extra: str, missing: list[str]):
        self.extra = extra
        self.missing = missing
        super().__init__(missing_extra_message(what, extra, missing))


def install_hint(extra: str) -> str:
    return f"pip install 'genarun[{extra}]'"


def missing_extra_message(what: str, extra: str, missing: list[str]) -> str:
    """'{what} needs genarun[local] (torch is not installed): pip install 'genarun[local]''."""
    names = ", ".join(missing)
    verb = "is" if len(missing) == 1 else "are"
    return f"{what} needs genarun[{extra}] ({names} {verb} not installed): {install_hint(extra)}"


def module_available(name: str) -> bool:
    """Whether `import name` can work, without importing it.

    A None entry in sys.modules is Python's way of marking a module unimportable; it is
    honoured so that a process (or a test) can hide a library.
    """
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing_modules(extra: str, modules: tuple[str, ...] | None = None) -> list[str]:
    """Those of `modules` (default: all the extra's) that cannot be imported."""
    wanted = EXTRA_MODULES[extra] if modules is None else modules
    return [name for name in wanted if not module_available(name)]


def require_extra(what: str, extra: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise MissingExtra naming `what`, the extra and the command that installs it."""
    missing = missing_modules(extra, modules)
    if missing:
        raise MissingExtra(what, extra, missing)
