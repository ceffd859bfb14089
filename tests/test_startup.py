"""What a plain run imports: a one-node template tree, run as a process, loads none of the
libraries it does not use, and no more modules than it did when this was last made faster
(bench/startup.py times it; issue 18 item 4)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from bench.startup import ONE_NODE  # the tree bench/startup.py times
from genarun import cli, regex_programs, regex_programs_data

# networkx: only rerun/--only/graph build the DiGraph; httpx: only a fetch or an API model;
# rich: only a terminal; the model libraries: only a local model; SQLAlchemy: only commands
# that read runs (a run writes with sqlite3); numpy: only vectors; multiprocessing: only CPU
# work (genarun/run/cpu_processes.py); the other commands' and node kinds' modules: only when
# used.
NOT_NEEDED = (
    "networkx",
    "httpx",
    "rich",
    "torch",
    "diffusers",
    "transformers",
    "open_clip",
    "sqlalchemy",
    "numpy",
    "multiprocessing",
    "genarun.cli.runs",
    "genarun.cli.experiments",
    "genarun.cli.examples",  # the commands' help examples: only when help is printed
    "genarun.server",
    # the Ray executor's modules: only --executor ray; the model providers' modules: only a
    # tree that names a model (the registry registers them when providers are first read)
    "genarun.run.ray_backend",
    "genarun.run.ray_models",
    "genarun.run.ray_pool",
    "genarun.models.catalog",
    "genarun.models.openai",
    "genarun.models.diffusers",
    "genarun.models.weights",
    # Jinja and its sandbox: only a tree with Jinja syntax (`{{`, `{%`, `{#`); a string without
    # it is its own rendering (genarun/tree/template_core.py)
    "jinja2",
    "markupsafe",
    "genarun.tree.sandbox",
    "genarun.tree.template_env",
    "genarun.tree.templates",
    "genarun.tree.limits",
    # What only a kind that yields effects, names a model, or searches needs: the effects and
    # hooks (genarun.nodes.base re-exports them lazily), the I/O and CPU pools and their worker
    # processes (the executor starts them with the first Call or Compute), the models' base
    # classes, progressive retrieval
    "genarun.nodes.effects",
    "genarun.nodes.hooks",
    "genarun.run.effect_pool",
    "genarun.run.cpu_processes",
    "pickle",
    "genarun.models.base",
    "genarun.retrieval.progressive",
    # importlib.metadata (with email, zipfile, csv): pydantic's plugin loader imports it only
    # to scan, and is told there is nothing to find (genarun.plugins._no_pydantic_plugins);
    # socket: the run's claim names the host by os.uname (store.processes.host_name)
    "importlib.metadata",
    "email",
    "zipfile",
    "socket",
    # logging (with concurrent.futures, which imports it): only the HTTP client's logger and
    # the model batches' thread pool (run.batching makes it with the first batch)
    "logging",
    "concurrent.futures",
    # what only a message needs: the trees in a folder named as TREE, a rendered value's
    # wrong type
    "genarun.tree.discover",
    "genarun.run.rendered_types",
)

# Modules loaded by the one-node run, when this was last measured, plus a little room:
# a change that imports a library a run does not need at top level shows up here.
MAX_MODULES = 320

# The hook that counts compiled regular expressions goes in first, and genarun (which seeds re's
# cache) before json, whose patterns compile at import: the order of a `genarun run` process.
PROBE = """\
from re import _compiler
regexes = []
_compile = _compiler.compile
def _recording(pattern, flags=0):
    regexes.append(repr(pattern)[:80])
    return _compile(pattern, flags)
_compiler.compile = _recording
import genarun
import json, runpy, sys
sys.argv = ["genarun", "run", "one.yaml", "--db", "one.db"]
try:
    runpy.run_module("genarun", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    assert not exc.code, exc.code
tokenize = sys.modules.get("tokenize")
compiled = tokenize._compile.cache_info().currsize if tokenize else 0
frozen = __import__("gc").get_freeze_count()
print(json.dumps([sorted(m for m in {names!r} if m in sys.modules), len(sys.modules), compiled, frozen, regexes]))
"""


def test_a_one_node_run_imports_only_what_it_uses(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(ONE_NODE)
    probe = subprocess.run(
        [sys.executable, "-c", PROBE.format(names=NOT_NEEDED)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    unneeded, modules, tokenizer_patterns, frozen, regexes = json.loads(
        probe.stdout.splitlines()[-1]
    )
    assert unneeded == []
    # pydantic reads a default_factory's signature; a builtin's (`dict`) is parsed with
    # tokenize, whose pattern takes 30-40 ms to compile: factories are Python functions.
    assert tokenizer_patterns == 0
    # Every regular expression the run needs comes compiled (genarun/regex_programs.py): PyYAML's
    # reader pattern alone took 7 % of the run to compile.
    if regex_programs.interpreter() == regex_programs_data.MADE_WITH:
        assert regexes == [], (
            "a one-node run compiled these regular expressions; store them with "
            f"`python -m genarun.regex_programs_write`: {regexes}"
        )
    assert modules <= MAX_MODULES, (
        f"a one-node run loaded {modules} modules (at most {MAX_MODULES})"
    )
    assert (tmp_path / "one" / "latest" / "output.json").exists()
    # The process ends with everything frozen: the interpreter's finalization does not search
    # the modules, classes and schemas for cycles (cli._LazyGroup.__call__).
    assert frozen > 10_000


def test_each_command_loads_from_the_module_that_registers_it() -> None:
    """cli.COMMANDS (what `genarun NAME` imports) names the module of every command that is
    not a group; a group (which other modules extend) loads every module."""
    group = click.Group("all")
    added: dict[str, tuple[str, ...]] = {}
    for name in cli.MODULES:
        before = set(group.commands)
        importlib.import_module(f"genarun.cli.{name}").register(group)
        for command in set(group.commands) - before:
            added[command] = (name,)
    added["watch"] = ("experiments", "publish")  # publish's register looks up `export`
    plain = {k: v for k, v in added.items() if not isinstance(group.commands[k], click.Group)}
    assert plain == cli.COMMANDS
    assert sorted(cli.main.list_commands(click.Context(cli.main))) == sorted(added)
    # Every subcommand of every group, whichever module added it, is found through the CLI.
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found = cli.main.get_command(click.Context(cli.main), name)
            assert isinstance(found, click.Group)
            assert sorted(found.commands) == sorted(command.commands), name


def test_a_run_keeps_the_start_up_objects_out_of_the_collector_and_gives_them_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While `genarun run` executes, the objects of start-up (modules, classes) are frozen, so
    the collections of a long run do not walk them; afterwards the process collects as before."""
    import gc

    from click.testing import CliRunner

    import genarun.run.runner as runner

    frozen_during: list[int] = []
    real_run_tree = runner.run_tree

    def run_tree(*args: Any, **kwargs: Any) -> Any:
        frozen_during.append(gc.get_freeze_count())
        return real_run_tree(*args, **kwargs)

    monkeypatch.setattr(runner, "run_tree", run_tree)
    (tmp_path / "one.yaml").write_text(ONE_NODE)
    result = CliRunner().invoke(
        cli.main,
        ["run", str(tmp_path / "one.yaml"), "--db", str(tmp_path / "g.db")],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert frozen_during and frozen_during[0] > 10_000
    assert gc.get_freeze_count() == 0


def test_collection_is_paused_while_modules_load_and_resumes_as_it_was() -> None:
    import gc

    assert gc.isenabled()
    with cli.collection_paused():
        assert not gc.isenabled()
        with cli.collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with cli.collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_what_nodes_base_loads_lazily_is_what_the_modules_define() -> None:
    """Kinds import the effects and hooks from genarun.nodes.base; they load on first use and
    are the defining modules' classes."""
    from genarun.nodes import base, effects, hooks

    for name in ("Call", "Compute", "Effect", "Invoke", "Wait"):
        assert getattr(base, name) is getattr(effects, name)
    for name in ("Adoption", "FieldProblem", "ModelRef"):
        assert getattr(base, name) is getattr(hooks, name)
    assert set(base.__all__) >= {"Call", "Compute", "Effect", "Invoke", "Wait", "ModelRef"}
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        base.Nothing  # noqa: B018


def test_the_host_a_run_claims_from_is_the_socket_modules_host_name() -> None:
    import socket

    from genarun.store.processes import host_name

    assert host_name() == socket.gethostname()


def test_in_the_genarun_process_what_modules_make_while_loading_is_frozen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In the genarun process (cli._LazyGroup.__call__), what a command's modules make while
    they load lives as long as the process: frozen when they have loaded, no collection walks it
    (each one that a later allocation set off did, once for every object). A caller of `main`
    (CliRunner, these tests) keeps collecting as before."""
    import gc

    assert gc.get_freeze_count() == 0
    made: list[list[int]] = []
    with cli.collection_paused():
        made += [[] for _ in range(1000)]
    assert gc.get_freeze_count() == 0  # not the genarun process
    monkeypatch.setattr(cli, "_process_entry", True)
    try:
        with cli.collection_paused():
            made += [[] for _ in range(1000)]
        assert gc.get_freeze_count() >= len(made)
    finally:
        gc.unfreeze()
