"""Mistakes of a first hour with genarun, each told once, in the right place, with the fix:
a --set value's mistake is the option's (not the var's line in the file), a misspelt required
field is one message, a script or README given as the tree is named as such, a folder of
examples names the trees in its sub-folders, and `serve --help` says what it serves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from tests.helpers import app_client

TREE = """\
genarun: 1
name: first
seed: 1
models:
  writer: {provider: dummy, id: w}
vars:
  topic: "[cats | dogs]"
nodes:
  - id: article
    kind: generate
    model: writer
    prompt: "Write about {{ topic }}."
"""


def _nothing_written(workdir: Path) -> None:
    assert not (workdir / "genarun.db").exists()
    assert not (workdir / "first").exists()


def test_a_set_value_mistake_is_the_options_not_the_files_line(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    (workdir / "tree.yaml").write_text(TREE)
    for value, says in [
        ("topic={{ topc }}", "--set topic: undefined name 'topc'"),
        ("topic={{ topic", "--set topic: template syntax"),
        ("topic=[cats | dogs", "--set topic: random pick syntax"),
    ]:
        for command in ("validate", "run"):
            result = cli(command, "tree.yaml", "--set", value)
            assert result.exit_code == 2, result.output
            assert f"error: tree.yaml: {says}" in result.stderr, result.stderr
            # line 7 holds the var's valid value: pointing there sent the reader to the file
            assert "tree.yaml:7" not in result.stderr and "vars.topic" not in result.stderr
            assert "Traceback" not in result.output
    _nothing_written(workdir)
    # a mistake in the file itself is still at its line
    (workdir / "tree.yaml").write_text(TREE.replace("[cats | dogs]", "{{ topc }}"))
    result = cli("validate", "tree.yaml")
    assert "tree.yaml:7: vars.topic: undefined name 'topc'" in result.stderr


def test_a_misspelt_required_field_is_one_message(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    (workdir / "tree.yaml").write_text(TREE.replace("    prompt:", "    promt:"))
    (workdir / "tree.json").write_text(
        '{"genarun": 1, "name": "first", "nodes": [{"id": "a", "kind": "template",\n "txt": "hi"}]}'
    )
    for name, line, wrong, right in [
        ("tree.yaml", 12, "promt", "prompt"),
        ("tree.json", 2, "txt", "text"),
    ]:
        result = cli("validate", name)
        assert result.exit_code == 2
        lines = result.stderr.strip().splitlines()
        assert lines == [
            f"error: {name}:{line} node '{lines[0].split(chr(39))[1]}': unknown field '{wrong}'"
            f" (did you mean '{right}'?)"
        ], lines
    # a required field that is simply missing is still reported
    (workdir / "tree.yaml").write_text(TREE.replace('    prompt: "Write about {{ topic }}."\n', ""))
    assert "missing required field 'prompt'" in cli("validate", "tree.yaml").stderr


def test_a_file_that_is_not_a_tree_is_named_as_such(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    (workdir / "offline.py").write_text(
        'import sys\nif __name__ == "__main__":\n    print("serve: %s" % sys.argv)\n'
    )
    (workdir / "README.md").write_text("# Weather\n\nRun it: `python offline.py`\n")
    for command in ("run", "validate"):
        result = cli(command, "offline.py")
        assert result.exit_code == 2
        assert result.stderr.strip() == (
            "error: offline.py: not a tree file (a Python script runs with: python offline.py)"
        )
        result = cli(command, "README.md")
        assert result.exit_code == 2
        assert "README.md: not a tree file (name a tree file: a .yaml, .yml or .json" in (
            result.stderr
        )
    assert not (workdir / "genarun.db").exists()
    # a tree under another name still runs
    (workdir / "tree.txt").write_text(TREE)
    assert cli("validate", "tree.txt").exit_code == 0


def test_a_folder_of_example_folders_names_their_trees(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    for name in ("blog", "story"):
        (workdir / "examples" / name).mkdir(parents=True)
        (workdir / "examples" / name / "tree.yaml").write_text(TREE)
    result = cli("validate", "examples")
    assert result.exit_code == 2
    assert "its sub-folders hold 2 trees (examples/blog/tree.yaml, examples/story/tree.yaml)" in (
        result.stderr
    )
    assert "name them: examples/*/tree.yaml" in result.stderr
    result = cli("run", "examples")
    assert result.exit_code == 2
    assert "name one: examples/blog/tree.yaml" in result.stderr
    # the fix it names works
    trees = sorted((workdir / "examples").glob("*/tree.yaml"))
    assert cli("validate", *trees).exit_code == 0
    _nothing_written(workdir)


def test_serve_help_names_what_it_serves_and_the_server_has_it(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    text = cli("serve", "--help").output
    pages = ["/runs", "/inbox", "/start", "/trees", "/experiments"]
    for route in [*pages, "/api/v1", "/api/v1/openapi.json", "/hook"]:
        assert route in text, route
    client = app_client(workdir / "genarun.db", trees=workdir)  # serve --trees, default .
    for route in [*pages, "/api/v1/runs", "/api/v1/openapi.json"]:
        assert client.get(route).status_code == 200, route


def test_resume_latest_of_a_completed_run_speaks_of_the_run(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    (workdir / "tree.yaml").write_text(TREE)
    assert cli("run", "tree.yaml").exit_code == 0
    run = cli("runs", "list").output.splitlines()[1].split()[0]
    result = cli("resume", "latest")
    assert result.exit_code == 2
    # it said "experiment 1a2b3c4d: all 1 runs completed" of a tree without a matrix
    assert result.stderr.strip() == (
        f"error: run {run} is completed: nothing to resume (to run nodes again: genarun rerun"
        f" {run} --node ID)"
    )
