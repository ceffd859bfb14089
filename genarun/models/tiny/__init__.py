"""Built-in tiny models: real architectures with small random weights.

Each is built deterministically on first use into the model cache (`GENARUN_HOME/models/<name>`)
and then loaded back with `from_pretrained` (or open_clip's loaders), the same path real weights
take. Builders live one family per module and register here by name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

# name -> builder(target_dir) that writes a complete, loadable model folder
BUILDERS: dict[str, Callable[[Path], None]] = {}

BUILD_VERSION = "1"  # bump to rebuild every tiny model after a builder changes


def genarun_home() -> Path:
    """Where genarun keeps its model cache: $GENARUN_HOME or the user's cache directory."""
    env = os.environ.get("GENARUN_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "genarun"


def tiny_builder(name: str) -> Callable[[Callable[[Path], None]], Callable[[Path], None]]:
    """Register a builder for the tiny model `name`."""

    def decorate(fn: Callable[[Path], None]) -> Callable[[Path], None]:
        BUILDERS[name] = fn
        return fn

    return decorate


def tiny_model_dir(name: str) -> Path:
    return genarun_home() / "models" / f"{name}-v{BUILD_VERSION}"


def ensure_tiny_model(name: str) -> Path:
    """Build the tiny model `name` into the cache if it is not there yet; return its folder."""
    _import_builders()
    target = tiny_model_dir(name)
    if (target / ".complete").exists():
        return target
    if name not in BUILDERS:
        raise KeyError(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a temporary folder and rename: a crash or a second process never sees half a model.
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        BUILDERS[name](tmp)
        (tmp / ".complete").write_text("ok\n")
        try:
            tmp.rename(target)
        except OSError:
            if not (target / ".complete").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _import_builders() -> None:
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
