"""The `genarun` command line: parse arguments, call the core, render errors.

Each command module holds one concern and is imported when one of its commands runs (or for
`--help`): `genarun run` loads the run command alone, not the reading, export and server ones.
Heavy modules are imported inside commands, so `genarun --help`, `validate` and `graph` never
import torch.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
from collections.abc import Iterator
from typing import Any

import click

from genarun import __version__

# The command modules, in the order they register (publish adds `export site` to the export
# group experiments makes, toolbox adds `export video`...), and the module of each command that
# is not a group (tests/test_startup.py checks this against what `register` adds). A group
# (runs, models, experiments, tda, export) may gain subcommands from any module: asking for one
# loads them all, as does an unknown name (for did-you-mean) and `--help`. (cluster and
# dynamics are groups too.)
MODULES = (
    "core",
    "estimate",
    "models",
    "runs",
    "history",
    "experiments",
    "publish",
    "toolbox",
    "human",
    "search",
    "cluster",
    "dynamics",
    "factors",
)
COMMANDS: dict[str, tuple[str, ...]] = {
    "run": ("core",),
    "validate": ("core",),
    "graph": ("core",),
    "schema": ("core",),
    "estimate": ("estimate",),
    "rerun": ("history",),
    "resume": ("history",),
    "diff": ("history",),
    "watch": ("experiments", "publish"),  # publish's register looks up the export group
    "convert": ("toolbox",),
    "doctor": ("toolbox",),
    "embed": ("toolbox",),
    "inbox": ("human",),
    "answer": ("human",),
    "hook-url": ("human",),
    "serve": ("human",),
    "search": ("search",),
}


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """Imports make classes, functions and schemas that live as long as the process, and next to
    no garbage; their allocations trigger the cyclic collector again and again, each pass
    walking the growing heap of them for nothing (about 3 % of a one-node run's instructions).
    Collection is paused while a command's modules load, and resumes as it was after; in the
    genarun process what they made is frozen first (see _LazyGroup.__call__)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if _process_entry:
            gc.freeze()  # see _LazyGroup.__call__
        gc.enable()


# Whether this process is the `genarun` command (the script, `python -m genarun`), not a caller
# of `main` (CliRunner, tests): set by _LazyGroup.__call__.
_process_entry = False


@contextlib.contextmanager
def _interrupt_is_exit_130() -> Iterator[None]:
    """Ctrl-C while a command's modules load or its arguments are read (before the command's
    own handler, cli/common.py handle_errors, is there): the message and exit code of any other
    interruption, not click's `Aborted!` with exit 1, which scripts take for a failure."""
    try:
        yield
    except KeyboardInterrupt:
        import sys

        click.echo("interrupted", err=True)
        sys.exit(130)


class _LazyGroup(click.Group):
    """Registers a command's module when the command is asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: set[str] = set()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The process's entry (the `genarun` script, `python -m genarun`; CliRunner calls
        `main`, not this): the command runs, then the process ends."""
        # What exists now (click, this module) and what the command's modules make while they
        # load (collection_paused) lives as long as the process: frozen, the collector never
        # walks it, where each collection that a later allocation set off walked it again.
        global _process_entry
        _process_entry = True
        gc.freeze()
        try:
            return self.main(*args, **kwargs)
        finally:
            # The interpreter's finalization collects cycles among everything still alive: every
            # module, class and pydantic schema (about 6 % of a one-node run's instructions).
            # Frozen, they are skipped; what modules and frames hold is still released (files
            # flushed and closed) by reference counting as the interpreter tears them down.
            gc.freeze()

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with _interrupt_is_exit_130():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _interrupt_is_exit_130():
            return super().invoke(ctx)

    def _load(self, modules: tuple[str, ...]) -> None:
        for name in modules:
            if name not in self._loaded:
                self._loaded.add(name)
                with collection_paused():
                    importlib.import_module(f"genarun.cli.{name}").register(self)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None and any(arg in ("-h", "--help") for arg in rest):
            # Only a command about to print its help needs its examples (cli/examples.py).
            from genarun.cli.examples import attach

            attach(self)
        return name, command, rest

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load(COMMANDS.get(cmd_name, MODULES))  # a group or an unknown name: all
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load(MODULES)
        return super().list_commands(ctx)


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="genarun")
def main() -> None:
    """genarun: declarative, recursive pipeline trees for generative AI.

    Write a tree (YAML or JSON) of nodes, then `genarun run tree.yaml`.
    Outputs go to SQLite and to a dated folder beside the tree.
    """
