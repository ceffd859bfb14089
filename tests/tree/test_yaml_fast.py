"""libyaml's composer reads a tree only where it gives what the Python reader gives: the same
values, the same line of every value, and (through the Python reader) the same problems."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from genarun.tree import yaml_reader
from genarun.tree.yaml_reader import YamlReader
from tests.fuzzing import mangled_texts, mutated_trees, tree_text

ROOT = Path(__file__).resolve().parent.parent.parent

pytestmark = pytest.mark.skipif(
    not getattr(yaml, "__with_libyaml__", False), reason="PyYAML built without libyaml"
)


def both_ways(text: str) -> tuple[Any, Any]:
    """(the reader's result, the Python composer's result): values and lines, or the error."""
    outcomes = []
    for read in (lambda r: r.read(), lambda r: r._read_python()):
        try:
            outcomes.append(("ok", read(YamlReader(text, "t.yaml"))))
        except Exception as exc:
            outcomes.append((type(exc).__name__, str(exc)))
    return outcomes[0], outcomes[1]


def test_the_fast_path_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[str] = []
    original = YamlReader._read_fast

    def spy(self: YamlReader) -> Any:
        used.append("fast")
        return original(self)

    monkeypatch.setattr(YamlReader, "_read_fast", spy)
    value, lines = YamlReader("a: 1\nb:\n  - x\n", "t.yaml").read()
    assert used == ["fast"] and value == {"a": 1, "b": ["x"]} and lines[("b", 0)] == 3


@pytest.mark.parametrize(
    "path",
    sorted(
        str(p.relative_to(ROOT))
        for pattern in ("examples/**/*.yaml", "tests/trees/**/*.yaml", "trees/**/*.yaml")
        for p in ROOT.glob(pattern)
    ),
)
def test_every_shipped_tree_reads_the_same(path: str) -> None:
    fast, python = both_ways((ROOT / path).read_text(encoding="utf-8"))
    assert fast == python


@pytest.mark.parametrize(
    "text",
    [
        "a: &x [1, 2]\nb: *x\n",  # an alias: lines point at its use (Python path)
        "a: 1\na: 2\n",  # a duplicate key: the Python reader's message
        "a: [b | c]\n",  # a flow list that looks like a pick
        "a: 1e400\n",
        "a: !!binary aGk=\n",
        "a: 'open\n",
        "a:\n\tb: 1\n",
        "g\tenarun: 1\n",  # libyaml reads the key 'g\tenarun'; PyYAML refuses the tab
        "a: 1\r\nb: [x,\r\n  y]\r\n",
        "x: \x07\n",
        "- " * 150 + "x\n",  # deeper than trees may nest
        "\ufeffa: 1\n",
        "a: 0o17\nb: 0x1F\nc: .inf\nd: ~\ne: True\nf: 2026-01-01\ng: '1'\n",
    ],
)
def test_edge_cases_read_the_same(text: str) -> None:
    fast, python = both_ways(text)
    assert fast == python


_settings = settings(
    max_examples=int(os.environ.get("GENARUN_FUZZ_EXAMPLES", "60")),
    derandomize=os.environ.get("GENARUN_FUZZ_SEED") != "random",
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@_settings
@given(case=mangled_texts())
def test_mangled_texts_read_the_same(case: tuple[str, str, str]) -> None:
    _name, text, _fmt = case
    fast, python = both_ways(text)
    assert fast == python


@_settings
@given(case=mutated_trees())
def test_mutated_trees_read_the_same(case: tuple[str, object]) -> None:
    _name, tree = case
    fast, python = both_ways(tree_text(tree, "yaml"))
    assert fast == python


def test_without_libyaml_the_python_reader_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yaml_reader, "_CLoaderBase", None)
    assert YamlReader("a: [1, 2]\n", "t.yaml").read() == (
        {"a": [1, 2]},
        {(): 1, ("a",): 1, ("a", 0): 1, ("a", 1): 1},
    )
