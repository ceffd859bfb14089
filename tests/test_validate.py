"""Validation of tree files: every invalid scenario tree gives its precise, located message."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from genarun.errors import TreeError
from genarun.graph.compile import compile_tree
from genarun.tree.validate import read_tree
from tests.helpers import TREES, genarun_subprocess

INVALID = sorted(p for p in (TREES / "invalid").iterdir() if p.suffix in (".yaml", ".json"))


def expected_fragments(path: Path) -> list[str]:
    """`# expect: ...` lines at the top of a YAML tree, or the lines of `<tree>.expect`."""
    sidecar = path.with_name(path.name + ".expect")
    if sidecar.exists():
        return [line for line in sidecar.read_text().splitlines() if line.strip()]
    fragments = []
    for line in path.read_text().splitlines():
        if not line.startswith("# expect: "):
            break
        fragments.append(line.removeprefix("# expect: "))
    assert fragments, f"{path.name} states no expected error"
    return fragments


def tree_error(path: Path) -> TreeError:
    with pytest.raises(TreeError) as info:
        compile_tree(read_tree(path))
    return info.value


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_tree_is_rejected_with_its_message(
    path: Path, cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(path.parent)  # messages name the file as the user wrote it
    result = cli("validate", path.name)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    for fragment in expected_fragments(path):
        assert fragment in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_every_problem_is_located(path: Path) -> None:
    error = tree_error(path)
    for problem in error.problems:
        assert problem.file == str(path)
        assert problem.line is not None and problem.line >= 1, problem


def test_yaml_and_json_report_the_same_error_on_their_own_lines() -> None:
    from_yaml = tree_error(TREES / "invalid" / "misspelt_field.yaml").problems
    from_json = tree_error(TREES / "invalid" / "misspelt_field.json").problems
    assert [(p.message, p.node, p.hint) for p in from_yaml] == [
        (p.message, p.node, p.hint) for p in from_json
    ]
    assert [p.line for p in from_yaml] == [9]
    assert [p.line for p in from_json] == [11]


def test_duplicate_id_names_both_lines() -> None:
    (problem,) = tree_error(TREES / "invalid" / "duplicate_id.yaml").problems
    assert problem.line == 12
    assert "first used on line 5" in problem.message


def test_all_problems_of_a_tree_are_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text(
        "genarun: 1\n"
        "name: many\n"
        "nodes:\n"
        "  - id: a\n"
        "    kind: generate\n"
        "    model: dummy\n"
        "    promt: x\n"
        "  - id: b\n"
        "    kind: grup\n"
        "  - id: c\n"
        "    kind: template\n"
        "    text: x\n"
        "    tempature: 2\n"
    )
    text = str(tree_error(path))
    # one mistake, one message: not also "missing required field 'prompt'"
    assert "missing required field" not in text
    assert f"{path}:7 node 'a': unknown field 'promt' (did you mean 'prompt'?)" in text
    assert f"{path}:9 node 'b': unknown kind 'grup' (did you mean 'group'?)" in text
    assert f"{path}:13 node 'c': unknown field 'tempature' (allowed fields: " in text


def test_field_errors_do_not_hide_name_and_template_errors_of_other_nodes() -> None:
    """One pass reports every independent mistake, and nothing that only follows from a
    broken node: naming it, or the names its children use (they see its vars)."""
    problems = tree_error(TREES / "invalid" / "independent_errors.yaml").problems
    found = [(p.line, p.node, p.message.split(" (")[0]) for p in problems]
    assert found == [
        (15, "plan", "unknown field 'promt'"),
        # inner's own name mistake, beside its wrong retries (it was hidden until fixed)
        (19, "inner", "field 'text': undefined name 'unknown_here'"),
        (20, "inner", "field 'retries': expected a whole number, got 'x'"),
        (24, "article", "field 'prompt': undefined name 'topik'"),
        (27, "cover", "field 'text': unknown filter 'nosuchfilter'"),
        (28, "cover", "duplicate id 'cover'"),
    ]


def test_naming_a_node_that_failed_validation_in_a_node_field_is_not_reported(
    tmp_path: Path,
) -> None:
    path = tmp_path / "persist.yaml"
    path.write_text(
        "genarun: 1\n"
        "name: persist\n"
        "nodes:\n"
        "  - id: emb\n"
        "    kind: embed\n"
        "    model: dummy-embed\n"
        "    txet: x\n"
        "  - id: diagram\n"
        "    kind: persistence\n"
        "    of: emb\n"
        "  - id: other\n"
        "    kind: template\n"
        "    text: '{{ emb }} {{ missing }}'\n"
    )
    messages = [p.message for p in tree_error(path).problems]
    assert any("unknown field 'txet'" in m for m in messages), messages
    assert any("undefined name 'missing'" in m for m in messages), messages
    assert not any("'emb'" in m and "txet" not in m for m in messages), messages


def test_a_misspelt_key_in_a_nested_mapping_is_judged_against_that_mapping(
    tmp_path: Path,
) -> None:
    """`cache: {tll}` suggests ttl (not the node's fields), and `documents: {chunk_sise}` (a
    list or a mapping) names the key at its line, not 'expected a list' plus a class name."""
    path = tmp_path / "nested.yaml"
    path.write_text(
        "genarun: 1\n"
        "name: nested\n"
        "documents:\n"
        "  paths: [docs/]\n"
        "  chunk_sise: 400\n"
        "nodes:\n"
        "  - id: place\n"
        "    kind: fetch\n"
        "    url: http://127.0.0.1:9/x\n"
        "    cache: {tll: 1d}\n"
    )
    text = str(tree_error(path))
    assert f"{path}:5: unknown field 'documents.chunk_sise' (did you mean 'chunk_size'?)" in text
    assert f"{path}:10 node 'place': unknown field 'cache.tll' (did you mean 'ttl'?)" in text
    assert "expected a list" not in text
    assert "DocumentsSpec" not in text


def test_missing_version_is_reported_once(tmp_path: Path) -> None:
    path = tmp_path / "noversion.yaml"
    path.write_text("name: t\nnodes:\n  - id: a\n    kind: group\n")
    problems = tree_error(path).problems
    assert [p.message for p in problems] == ["missing 'genarun: 1' (the format version)"]


# The core runner's valid scenarios (other suites keep their own trees beside these).
VALID = [
    "blog.yaml",
    "concurrency.yaml",
    "conditions.yaml",
    "failing.yaml",
    "latest.yaml",
    "many_seeds.yaml",
    "matrix.yaml",
    "picks.yaml",
    "picks_added.yaml",
    "references.yaml",
    "scope.yaml",
    "store_writer.yaml",
    "typed.yaml",
]


@pytest.mark.parametrize("name", VALID)
def test_valid_scenario_trees_validate(name: str) -> None:
    tree = compile_tree(read_tree(TREES / name))
    assert tree.nodes


@pytest.mark.slow
def test_validate_subprocess_exit_codes(workdir: Path) -> None:
    good = genarun_subprocess("validate", TREES / "blog.yaml", cwd=workdir)
    assert good.returncode == 0, good.stderr
    assert "valid" in good.stdout

    bad = genarun_subprocess(
        "validate", TREES / "blog.yaml", TREES / "invalid" / "unknown_kind.yaml", cwd=workdir
    )
    assert bad.returncode == 2
    assert "unknown kind 'imag' (did you mean 'image'?)" in bad.stderr
    assert "Traceback" not in bad.stderr

    missing = genarun_subprocess("validate", workdir / "nowhere.yaml", cwd=workdir)
    assert missing.returncode == 2
    assert "tree file not found" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_run_reports_unknown_models_with_the_other_mistakes_and_writes_nothing(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    """`run` says every mistake at once too (models were said only once the fields were
    fixed), exits 2 and writes nothing: no database, no output folder."""
    path = TREES / "invalid" / "models_beside_other_errors.yaml"
    (workdir / "tree.yaml").write_text(path.read_text())
    result = cli("run", "tree.yaml")
    assert result.exit_code == 2, result.output
    for fragment in expected_fragments(path):
        assert fragment in result.stderr
    assert result.stderr.count("tree.yaml:") == 6
    assert "Traceback" not in result.output
    assert sorted(p.name for p in workdir.iterdir()) == ["tree.yaml"]


def test_a_tree_name_with_spaces_is_told_a_name_that_would_do(tmp_path: Path) -> None:
    path = tmp_path / "named.yaml"
    path.write_text("genarun: 1\nname: my lizard blog!\nnodes:\n  - {id: a, kind: group}\n")
    assert str(tree_error(path)) == (
        f"{path}:2: field 'name': tree name 'my lizard blog!' may hold only letters, digits, "
        "- and _ (for example name: my-lizard-blog)"
    )
