"""Compiling a tree into a DAG: scope errors, dependency edges, cycles, and `genarun graph`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import networkx as nx
import pytest
from click.testing import Result

from genarun.errors import TreeError
from genarun.graph.compile import compile_tree
from genarun.graph.compiled import CompiledTree
from genarun.tree.validate import read_tree
from tests.helpers import TREES


def compiled(name: str, overrides: dict[str, object] | None = None) -> CompiledTree:
    return compile_tree(read_tree(TREES / name), overrides)


def compile_error(path: Path, overrides: dict[str, object] | None = None) -> TreeError:
    with pytest.raises(TreeError) as info:
        compile_tree(read_tree(path), overrides)
    return info.value


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tree.yaml"
    path.write_text("genarun: 1\nname: t\n" + text)
    return path


def test_undefined_name_lists_the_names_in_scope(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "vars:\n"
        "  topic: lizards\n"
        "nodes:\n"
        "  - id: plan\n"
        "    kind: template\n"
        "    text: '[1, 2]'\n"
        "    parse: json\n"
        "    vars:\n"
        "      mood: calm\n"
        "    children:\n"
        "      - id: article\n"
        "        kind: template\n"
        "        foreach: plan\n"
        "        as: title\n"
        "        text: '{{ titel }} {{ mood }}'\n"
        "  - id: other\n"
        "    kind: template\n"
        "    text: x\n",
    )
    (problem,) = compile_error(path).problems
    assert problem.line == 17
    assert problem.node == "article"
    assert problem.message == "field 'text': undefined name 'titel'"
    # Everything visible from inside the foreach: tree vars, built-ins, ancestors, their vars,
    # the item and its index, and other nodes (naming one adds a dependency).
    assert problem.hint == (
        "did you mean 'title'? names in scope: index, mood, other, plan, run, seed, title, topic"
    )


def test_tree_vars_see_only_earlier_vars(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "vars:\n  first: '{{ second }}'\n  second: b\nnodes:\n  - id: a\n    kind: group\n",
    )
    (problem,) = compile_error(path).problems
    assert problem.line == 4
    assert "vars.first: undefined name 'second'" in problem.message
    assert "tree vars see only the matrix, seed, run and earlier vars" in str(problem)


def test_cycle_is_shown_with_every_member_and_line() -> None:
    (problem,) = compile_error(TREES / "invalid" / "cycle.yaml").problems
    assert problem.message.startswith("dependency cycle: a -> c -> b -> a")
    assert "('a' line 5, 'c' line 11, 'b' line 8)" in problem.message


def test_cycle_through_a_subtree(tmp_path: Path) -> None:
    # `b`'s child reads `a`; `a` reads `b`'s child: a cycle through the parent/child edge.
    path = write(
        tmp_path,
        "nodes:\n"
        "  - id: a\n"
        "    kind: template\n"
        "    text: '{{ b_child }}'\n"
        "  - id: b\n"
        "    kind: template\n"
        "    text: '{{ a }}'\n"
        "    children:\n"
        "      - id: b_child\n"
        "        kind: template\n"
        "        text: x\n",
    )
    (problem,) = compile_error(path).problems
    assert "dependency cycle:" in problem.message
    for name in ("a", "b", "b_child"):
        assert f"'{name}' line" in problem.message


def test_reference_to_own_descendant_is_rejected() -> None:
    (problem,) = compile_error(TREES / "invalid" / "own_descendant.yaml").problems
    assert problem.node == "plan"
    assert "'grandchild', a node inside this node's own subtree" in problem.message


def test_self_reference_is_rejected_even_in_when(tmp_path: Path) -> None:
    path = write(tmp_path, "nodes:\n  - id: a\n    kind: template\n    when: a\n    text: x\n")
    (problem,) = compile_error(path).problems
    assert problem.message == "when refers to the node's own output 'a'"
    assert problem.line == 6


def test_foreach_over_a_non_ancestor_adds_a_dependency_edge() -> None:
    tree = compiled("references.yaml")
    graph = tree.graph
    assert graph.edges["topics", "per_item"]["edge"] == "ref"
    assert graph.edges["section", "per_item"]["edge"] == "child"
    assert graph.edges["notes", "report"]["edge"] == "ref"
    assert graph.edges["per_item", "report"]["edge"] == "ref"
    assert tree.nodes["per_item"].deps == frozenset({"topics"})
    assert tree.nodes["report"].deps == frozenset({"notes", "per_item"})
    order = list(nx.topological_sort(graph))
    assert order.index("topics") < order.index("per_item") < order.index("report")
    assert nx.is_directed_acyclic_graph(graph)


def test_ancestor_reference_adds_no_edge() -> None:
    tree = compiled("blog.yaml")
    assert tree.nodes["cover"].deps == frozenset()
    assert tree.nodes["alt_text"].deps == frozenset({"cover"})
    assert tree.nodes["cover"].loops == ("article",)
    assert tree.nodes["index_page"].deps == frozenset({"article", "plan", "cover"})


def test_set_of_an_unknown_var_is_an_error() -> None:
    (problem,) = compile_error(TREES / "blog.yaml", {"topc": "x"}).problems
    assert problem.message == "--set topc: the tree has no var or matrix key 'topc'"
    assert problem.hint == "did you mean 'topic'?"


def test_set_of_the_seed_points_at_the_seed_option() -> None:
    (problem,) = compile_error(TREES / "blog.yaml", {"seed": 7}).problems
    assert problem.message == "--set seed: the tree has no var or matrix key 'seed'"
    assert problem.hint == "the run seed is set with --seed 7"


def test_set_fixes_a_matrix_key_and_overrides_a_var() -> None:
    tree = compiled("matrix.yaml", {"style": "ink", "subject": "plain"})
    assert tree.matrix == {"style": ["ink"], "animal": ["gecko", "bearded dragon"]}
    ((name, value),) = tree.tree_vars
    assert name == "subject"
    assert value.evaluate({}, None, []) == "plain"


def test_graph_text_and_mermaid(cli: Callable[..., Result]) -> None:
    result = cli("graph", TREES / "blog.yaml", "--format", "text")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "blog",
        "  - plan (generate)",
        "    - article (generate)  foreach plan as title",
        "      - cover (image)",
        "      - alt_text (caption)  needs cover",
        "  - index_page (template)  needs article, cover, plan",
    ]
    result = cli("graph", TREES / "blog.yaml", "--format", "mermaid")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "flowchart TD"
    assert '  article[["article: generate (foreach)"]]' in lines
    assert '  plan["plan: generate"]' in lines
    assert "  plan --> article" in lines
    assert "  article --> cover" in lines
    assert "  cover -.-> alt_text" in lines
    assert "  cover -.-> index_page" in lines


def test_graph_shows_matrix_and_skipped_nodes(cli: Callable[..., Result]) -> None:
    result = cli("graph", TREES / "matrix.yaml", "--format", "text")
    assert "matrix: style x2, animal x2" in result.stdout
    result = cli("graph", TREES / "conditions.yaml", "--format", "text")
    assert '- final_only (template)  when mode == "final"' in result.stdout
    assert "- switched_off (template)  disabled (enabled: false)" in result.stdout
    assert "- under_switched_off (template)  parent 'switched_off' is not run" in result.stdout


def test_graph_of_an_invalid_tree_exits_2(cli: Callable[..., Result]) -> None:
    result = cli("graph", TREES / "invalid" / "cycle.yaml")
    assert result.exit_code == 2
    assert "dependency cycle" in result.stderr
    assert result.stdout == ""
