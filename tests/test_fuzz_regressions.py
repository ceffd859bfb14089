"""One test per class of crash the fuzzer (tests/test_fuzz.py) found in `genarun validate`:
each made it exit 1 with an internal error; each must be a located message and exit 2."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.helpers import genarun_subprocess

NODE = "  - id: a\n    kind: template\n    text: hi\n"


def _tree(body: str, nodes: str = NODE) -> str:
    return f"genarun: 1\nname: t\n{body}nodes:\n{nodes}"


def _refused(cli: Callable[..., Result], path: Path, *expected: str) -> str:
    result = cli("validate", path)
    assert result.exit_code == 2, result.output
    assert "internal error" not in result.output, result.output
    for text in expected:
        assert text in result.output, result.output
    return result.output


@pytest.mark.parametrize("kind", ["[template]", "{name: template}", "3", "true", "[]", "{}"])
def test_a_kind_that_is_not_a_name(cli: Callable[..., Result], workdir: Path, kind: str) -> None:
    path = workdir / "t.yaml"
    path.write_text(_tree("", f"  - id: a\n    kind: {kind}\n    text: hi\n"))
    _refused(cli, path, "t.yaml:5 node 'a': field 'kind': expected the name of a node kind")


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ("3", "a model is a name"),
        ("[dummy]", "a model is a name"),
        ("{provider: [dummy], id: dummy}", "'provider' must be text"),
        ("{provider: {a: 1}, id: dummy}", "'provider' must be text"),
        ("{provider: dummy, id: [x]}", "'id' must be text"),
        ("{provider: dummy, id: dummy, options: fast}", "'options' must be a mapping"),
        ("{provider: dummy, id: dummy, options: [[x]]}", "'options' must be a mapping"),
        ("{provider: dummy, id: dummy, revision: [1]}", "'revision' must be text"),
        ("{provider: dummy}", "needs an 'id'"),
        ("{provider: dummy, id: dummy, steps: 3}", "unknown field(s) 'steps'"),
    ],
)
def test_a_model_of_the_wrong_type(
    cli: Callable[..., Result], workdir: Path, model: str, field: str
) -> None:
    """In `models:` (checked with the tree, used or not), in a node, in a cycle's network."""
    path = workdir / "alias.yaml"
    path.write_text(_tree(f"models:\n  m: {model}\n"))
    _refused(cli, path, "alias.yaml:", "model 'm': ", field)
    path = workdir / "node.yaml"
    path.write_text(
        _tree("", f"  - id: a\n    kind: generate\n    model: {model}\n    prompt: x\n")
    )
    _refused(cli, path, "node.yaml:", "node 'a'")
    path = workdir / "cycle.yaml"
    network = f"[dummy-t2i, {model}]"
    path.write_text(
        _tree("", f"  - id: a\n    kind: cycle\n    network: {network}\n    start: x\n")
    )
    _refused(cli, path, "cycle.yaml:", "node 'a'")


def test_a_model_from_a_matrix_value_of_the_wrong_type(
    cli: Callable[..., Result], workdir: Path
) -> None:
    """A template's value reaches the model resolver unchecked by the format."""
    path = workdir / "t.yaml"
    path.write_text(
        _tree(
            "matrix:\n  net: [[dummy-t2i, dummy-i2t], [dummy-t2i, 7], true]\n",
            "  - id: a\n    kind: cycle\n    network: '{{ net }}'\n    start: x\n    steps: 2\n",
        )
    )
    _refused(cli, path, "node 'a'")


@pytest.mark.parametrize("name", ["x" * 300, "a/" * 200 + "b", "m" * 5000, "nul\x00byte"])
def test_a_model_name_no_file_system_takes(
    cli: Callable[..., Result], workdir: Path, name: str
) -> None:
    path = workdir / "t.json"
    tree = {
        "genarun": 1,
        "name": "t",
        "nodes": [{"id": "a", "kind": "generate", "model": name, "prompt": "x"}],
    }
    path.write_text(json.dumps(tree))
    output = _refused(cli, path, "t.json:1 node 'a'")
    assert "File name too long" not in output and "null byte" not in output


@pytest.mark.parametrize("key", ["a[0]", "[", "kind[", "[a | b]", "int", "function-after[x]"])
def test_an_unknown_key_that_looks_like_a_type_tag(
    cli: Callable[..., Result], workdir: Path, key: str
) -> None:
    """Pydantic's union branches add tags such as 'function-after[...]' to an error's place;
    a key of the tree that looks like one is still reported as the unknown field it is."""
    path = workdir / "top.json"
    tree = {"genarun": 1, "name": "t", key: 1, "nodes": [{"id": "a", "kind": "template"}]}
    path.write_text(json.dumps(tree))
    _refused(cli, path, f"unknown field '{key}'")
    tree = {"genarun": 1, "name": "t", "nodes": [{"id": "a", "kind": "template", key: 1}]}
    path.write_text(json.dumps(tree))
    _refused(cli, path, f"node 'a': unknown field '{key}'")


@pytest.mark.parametrize("depth", [101, 400, 5000])
@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_values_nested_too_deeply(
    cli: Callable[..., Result], workdir: Path, depth: int, fmt: str
) -> None:
    value = "[" * depth + "]" * depth
    path = workdir / f"t.{fmt}"
    if fmt == "yaml":
        path.write_text(_tree(f"vars:\n  x: {value}\n"))
    else:
        path.write_text(
            '{"genarun": 1, "name": "t", "vars": {"x": ' + value + '}, "nodes": '
            '[{"id": "a", "kind": "template", "text": "hi"}]}'
        )
    _refused(cli, path, "values nest more than 100 levels deep")


def test_nodes_nested_too_deeply(cli: Callable[..., Result], workdir: Path) -> None:
    node: dict = {"id": "leaf", "kind": "template", "text": "x"}
    for i in range(300):
        node = {"id": f"n{i}", "kind": "group", "children": [node]}
    path = workdir / "t.json"
    path.write_text(json.dumps({"genarun": 1, "name": "t", "nodes": [node]}))
    _refused(cli, path, "t.json:", "values nest more than 100 levels deep")


def test_nesting_within_the_limit_is_valid(cli: Callable[..., Result], workdir: Path) -> None:
    node: dict = {"id": "leaf", "kind": "template", "text": "[" * 49 + "a | b" + "]" * 49}
    for i in range(45):
        node = {"id": f"n{i}", "kind": "group", "children": [node]}
    path = workdir / "t.json"
    path.write_text(
        json.dumps({"genarun": 1, "name": "t", "vars": {"x": [[[1]]]}, "nodes": [node]})
    )
    result = cli("validate", path)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "template",
    [
        "{{ " + "(" * 2000 + "1" + ")" * 2000 + " }}",
        "{{ " + "[" * 2000 + "1" + "]" * 2000 + " }}",
        "{{ 1" + " + 1" * 3000 + " }}",
        "{{ " + "not " * 3000 + "1 }}",
        "{{ x" + " | upper" * 3000 + " }}",
        "{% if 1 %}" * 2000 + "{% endif %}" * 2000,
    ],
)
@pytest.mark.parametrize("field", ["text", "when"])
def test_a_template_nested_too_deeply(
    cli: Callable[..., Result], workdir: Path, template: str, field: str
) -> None:
    if field == "when" and "{%" in template:
        template = "{{ 1 }}" + template
    path = workdir / "t.json"
    node = {"id": "a", "kind": "template", "text": "x", field: template}
    path.write_text(json.dumps({"genarun": 1, "name": "t", "vars": {"x": "v"}, "nodes": [node]}))
    _refused(cli, path, "t.json:1 node 'a'", "nests too deeply")


@pytest.mark.parametrize(
    "template",
    ["[" * 3000 + "a | b" + "]" * 3000, "[a | " * 1000 + "b" + "]" * 1000, "[" * 51 + "]" * 51],
)
def test_picks_nested_too_deeply(cli: Callable[..., Result], workdir: Path, template: str) -> None:
    path = workdir / "t.json"
    tree = {
        "genarun": 1,
        "name": "t",
        "vars": {"v": template},
        "nodes": [{"id": "a", "kind": "template", "text": template}],
    }
    path.write_text(json.dumps(tree))
    _refused(cli, path, "brackets nest more than 50 levels deep")


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_a_number_past_the_digit_limit(cli: Callable[..., Result], workdir: Path, fmt: str) -> None:
    digits = "1" + "0" * 5000
    path = workdir / f"t.{fmt}"
    if fmt == "yaml":
        path.write_text(_tree(f"vars:\n  x: {digits}\n"))
        line = "t.yaml:4"
    else:
        path.write_text(
            '{"genarun": 1, "name": "t",\n"vars": {"x": ' + digits + '}, "nodes": '
            '[{"id": "a", "kind": "template", "text": "hi"}]}'
        )
        line = "t.json:2"
    _refused(cli, path, line, "a number of 5001 digits is too long to read")


def test_a_template_number_past_the_digit_limit(cli: Callable[..., Result], workdir: Path) -> None:
    path = workdir / "t.yaml"
    path.write_text(
        _tree("", f"  - id: a\n    kind: template\n    text: '{{{{ 1{'0' * 5000} }}}}'\n")
    )
    _refused(cli, path, "node 'a'", "too many digits")


def test_every_class_in_a_real_process(workdir: Path) -> None:
    """The same payloads through `python -m genarun validate`, all trees at once: each is
    reported, none is a traceback, and the process exits 2."""
    payloads = {
        "kind.yaml": _tree("", "  - id: a\n    kind: {name: template}\n"),
        "model.yaml": _tree("models:\n  m: {provider: [x], id: y, options: 3}\n"),
        "long.yaml": _tree("", f"  - id: a\n    kind: generate\n    model: {'x' * 300}\n"),
        "key.json": json.dumps({"genarun": 1, "name": "t", "a[0]": 1, "nodes": []}),
        "deep.yaml": _tree(f"vars:\n  x: {'[' * 3000}{']' * 3000}\n"),
        "jinja.yaml": _tree(
            "", f"  - id: a\n    kind: template\n    text: '{{{{ {'(' * 3000}1{')' * 3000} }}}}'\n"
        ),
        "picks.yaml": _tree("vars:\n  v: '" + "[a | " * 2000 + "b" + "]" * 2000 + "'\n"),
        "digits.yaml": _tree(f"vars:\n  x: {'9' * 5000}\n"),
    }
    for name, text in payloads.items():
        (workdir / name).write_text(text)
    proc = genarun_subprocess("validate", *payloads, cwd=workdir)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    for name in payloads:
        assert f"error: {name}:" in proc.stderr, (name, proc.stderr)


def test_a_network_text_nested_too_deeply(cli: Callable[..., Result], workdir: Path) -> None:
    """A network given as text that starts with '[' is read as a JSON list when it is one."""
    path = workdir / "t.json"
    network = "[" * 5000 + "]" * 5000
    tree = {
        "genarun": 1,
        "name": "t",
        "matrix": {"net": [network, '["dummy-t2i", ' + "1" * 5000 + "]"]},
        "nodes": [{"id": "a", "kind": "cycle", "network": "{{ net }}", "start": "x", "steps": 2}],
    }
    path.write_text(json.dumps(tree))
    _refused(cli, path, "t.json:1 node 'a'")


@pytest.mark.parametrize(
    "value",
    [
        "1" + "0" * 5000,
        "[" * 3000,
        "[" * 3000 + "]" * 3000,
        "&a [*a, *a]",
        "&a [&b [*b, *b, *b, *b], *a]",
        "!!python/object/apply:os.system [ls]",
    ],
)
@pytest.mark.parametrize("name", ["v", "m", "seed"])
def test_a_set_value_yaml_does_not_read(
    cli: Callable[..., Result], workdir: Path, value: str, name: str
) -> None:
    """`--set` values are read by the tree's YAML rules (bounded depth and digits, no tags,
    no recursive aliases); what those rules do not read is text, never a crash."""
    path = workdir / "t.yaml"
    path.write_text(_tree("vars:\n  v: x\nmatrix:\n  m: [a, b]\n"))
    result = cli("validate", path, "--set", f"{name}={value}")
    assert result.exit_code in (0, 2), result.output
    assert "internal error" not in result.output, result.output


def test_set_values_read_as_in_a_tree() -> None:
    from genarun.cli.common import parse_set

    values = parse_set(("a=42", "b=no", "c=2024-01-01", "d=[a | b]", "e=", "f=[1, 2]", "g=1e999"))
    assert values == {
        "a": 42,
        "b": "no",
        "c": "2024-01-01",
        "d": "[a | b]",
        "e": "",
        "f": [1, 2],
        "g": "1e999",
    }


@pytest.mark.parametrize("marker", ["run.json", "experiment.json"])
def test_a_planted_marker_file_nested_too_deeply(
    cli: Callable[..., Result], workdir: Path, marker: str
) -> None:
    """Folders are checked for a run's marker file before their trees are read; anyone can
    write one, so one json cannot read is no marker, never a crash."""
    folder = workdir / "trees"
    folder.mkdir()
    (folder / "t.yaml").write_text(_tree(""))
    (folder / marker).write_text("[" * 100_000 + "]" * 100_000)
    result = cli("validate", folder)
    assert result.exit_code == 0, result.output
    assert "t.yaml: valid" in result.output
