"""Loading tree files: YAML and JSON data, line numbers for every key and item, and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genarun.errors import Problem, TreeError
from genarun.tree import yaml_reader
from genarun.tree.load import Document, load_document, load_text

BLOCK_YAML = """\
genarun: 1
name: lizard-blog
vars:
  topic: "[pet lizard care | keeping geckos]"
nodes:
  - id: plan
    kind: generate
    prompt: >
      List five titles
      about {{ topic }}.
    children:
      - id: article
        kind: generate
      - id: cover
        promt: typo here
        size: [512, 512]
  -
    id: later
    kind: group
"""

FLOW_YAML = """\
{genarun: 1, name: flow,
 nodes: [
   {id: plan, kind: generate,
    children: [{id: a, kind: x},
               {id: b,
                promt: typo}]},
   {id: c, kind: group}
 ]}
"""

JSON_TREE = """\
{
  "genarun": 1,
  "name": "json-tree",
  "nodes": [
    {
      "id": "plan",
      "children": [
        {"id": "a"}, {"id": "b",
          "promt": "typo", "n": [1, 2.5, -3e2, true, false, null, "\\u00e9"]}
      ]
    },
    {"id": "c"}
  ]
}
"""


def problem_of(error: pytest.ExceptionInfo[TreeError], index: int = 0) -> Problem:
    return error.value.problems[index]


def yaml_error(text: str) -> pytest.ExceptionInfo[TreeError]:
    with pytest.raises(TreeError) as info:
        load_text(text, "tree.yaml", "yaml")
    return info


def json_error(text: str) -> pytest.ExceptionInfo[TreeError]:
    with pytest.raises(TreeError) as info:
        load_text(text, "tree.json", "json")
    return info


# --- data --------------------------------------------------------------------------------


def test_block_yaml_data() -> None:
    doc = load_text(BLOCK_YAML, "tree.yaml", "yaml")
    assert isinstance(doc, Document)
    assert doc.text == BLOCK_YAML and doc.path == Path("tree.yaml")
    assert doc.data["vars"] == {"topic": "[pet lizard care | keeping geckos]"}
    plan = doc.data["nodes"][0]
    assert plan["prompt"] == "List five titles about {{ topic }}.\n"
    assert plan["children"][1] == {"id": "cover", "promt": "typo here", "size": [512, 512]}
    assert doc.data["nodes"][1] == {"id": "later", "kind": "group"}


def test_json_data_matches_the_json_module() -> None:
    doc = load_text(JSON_TREE, "tree.json", "json")
    assert doc.data == json.loads(JSON_TREE)
    assert doc.data["nodes"][0]["children"][1]["n"] == [1, 2.5, -300.0, True, False, None, "é"]
    assert type(doc.data["nodes"][0]["children"][1]["n"][0]) is int


def test_yaml_and_json_give_the_same_data() -> None:
    yaml_doc = load_text(FLOW_YAML, "t.yaml", "yaml")
    as_json = json.dumps(yaml_doc.data, indent=1)
    assert load_text(as_json, "t.json", "json").data == yaml_doc.data


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("42", 42),
        ("-7", -7),
        ("010", 10),
        ("0o17", 15),
        ("0x1F", 31),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        (".5", 0.5),
        ("true", True),
        ("False", False),
        ("null", None),
        ("~", None),
        ("", None),
        # YAML 1.1 surprises stay text under the YAML 1.2 core schema.
        ("no", "no"),
        ("on", "on"),
        ("NO", "NO"),
        ("1:30", "1:30"),
        ("2024-01-01", "2024-01-01"),
        ("2024-01-01 10:00:00", "2024-01-01 10:00:00"),
        ("'42'", "42"),
        ('"true"', "true"),
        ("!!str 42", "42"),
        ("!!int '7'", 7),
        ("!!float 2", 2.0),
        ("!!bool 'true'", True),
        ("!!null ''", None),
        ("!!timestamp 2001-12-14", "2001-12-14"),
    ],
)
def test_yaml_scalars_are_json_types(value: str, expected: object) -> None:
    data = load_text(f"key: {value}\n", "t.yaml", "yaml").data
    assert data == {"key": expected}
    assert type(data["key"]) is type(expected)


def test_yaml_keys_are_text_as_written() -> None:
    data = load_text("1: a\ntrue: b\nnull: c\n'q': d\n", "t.yaml", "yaml").data
    assert data == {"1": "a", "true": "b", "null": "c", "q": "d"}


def test_yaml_anchors_aliases_and_merge_keys() -> None:
    text = """\
base: &base
  model: writer
  options: {steps: 1, size: 64}
copy: *base
merged:
  <<: *base
  options: {steps: 4}
  extra: 1
many:
  <<: [{a: 1, b: 1}, {b: 2, c: 2}]
"""
    data = load_text(text, "t.yaml", "yaml").data
    assert data["copy"] == data["base"]
    assert data["copy"] is not data["base"]  # plain trees: no shared objects
    assert data["merged"] == {"model": "writer", "options": {"steps": 4}, "extra": 1}
    assert data["many"] == {"a": 1, "b": 1, "c": 2}  # earlier merge sources win


def test_load_text_without_mapping_requirement() -> None:
    assert load_text("[1, 2]", "--set x", "yaml", require_mapping=False).data == [1, 2]
    assert load_text("cats", "--set x", "yaml", require_mapping=False).data == "cats"
    assert load_text("", "--set x", "yaml", require_mapping=False).data is None
    assert load_text('"a"', "--set x", "json", require_mapping=False).data == "a"


def test_load_text_rejects_an_unknown_format() -> None:
    with pytest.raises(ValueError):
        load_text("a: 1", "x", "toml")  # type: ignore[arg-type]


# --- line numbers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ((), 1),
        (("genarun",), 1),
        (("vars", "topic"), 4),
        (("nodes",), 5),
        (("nodes", 0), 6),
        (("nodes", 0, "kind"), 7),
        (("nodes", 0, "prompt"), 8),
        (("nodes", 0, "children"), 11),
        (("nodes", 0, "children", 0), 12),
        (("nodes", 0, "children", 1), 14),
        (("nodes", 0, "children", 1, "promt"), 15),
        (("nodes", 0, "children", 1, "size", 1), 16),
        (("nodes", 1, "kind"), 19),
    ],
)
def test_block_yaml_lines(path: tuple[str | int, ...], line: int) -> None:
    assert load_text(BLOCK_YAML, "t.yaml", "yaml").line(path) == line


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ((), 1),
        (("name",), 1),
        (("nodes",), 2),
        (("nodes", 0), 3),
        (("nodes", 0, "children"), 4),
        (("nodes", 0, "children", 0), 4),
        (("nodes", 0, "children", 0, "kind"), 4),
        (("nodes", 0, "children", 1), 5),
        (("nodes", 0, "children", 1, "promt"), 6),
        (("nodes", 1), 7),
    ],
)
def test_flow_yaml_lines(path: tuple[str | int, ...], line: int) -> None:
    assert load_text(FLOW_YAML, "t.yaml", "yaml").line(path) == line


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ((), 1),
        (("genarun",), 2),
        (("nodes",), 4),
        (("nodes", 0), 5),
        (("nodes", 0, "children"), 7),
        (("nodes", 0, "children", 0), 8),
        (("nodes", 0, "children", 1), 8),
        (("nodes", 0, "children", 1, "promt"), 9),
        (("nodes", 0, "children", 1, "n", 6), 9),
        (("nodes", 1), 12),
        (("nodes", 1, "id"), 12),
    ],
)
def test_json_lines(path: tuple[str | int, ...], line: int) -> None:
    assert load_text(JSON_TREE, "t.json", "json").line(path) == line


@pytest.mark.parametrize(
    ("fmt", "text"), [("yaml", BLOCK_YAML), ("yaml", FLOW_YAML), ("json", JSON_TREE)]
)
def test_missing_paths_give_the_nearest_ancestor(fmt: str, text: str) -> None:
    doc = load_text(text, "t", fmt)  # type: ignore[arg-type]
    assert doc.line(("nodes", 0, "children", 1, "nope", 3)) == doc.line(("nodes", 0, "children", 1))
    assert doc.line(("nodes", 99)) == doc.line(("nodes",))
    assert doc.line(("absent",)) == doc.line(()) == 1


def test_line_numbers_of_aliases_point_at_their_use() -> None:
    text = "base: &b {model: x}\n\nlist:\n  - *b\n  - <<: *b\n    extra: 1\n"
    doc = load_text(text, "t.yaml", "yaml")
    assert doc.line(("list", 0)) == 4
    assert doc.line(("list", 1)) == 5
    assert doc.line(("list", 1, "extra")) == 6
    assert doc.line(("list", 1, "model")) == 1  # merged from the anchor


def test_overridden_merge_keys_leave_no_stale_lines() -> None:
    text = "base: &b\n  opts: {a: 1, b: 2}\nnode:\n  <<: *b\n  opts: {a: 3}\n"
    doc = load_text(text, "t.yaml", "yaml")
    assert doc.data["node"] == {"opts": {"a": 3}}
    assert doc.line(("node", "opts", "b")) == 5  # its nearest existing ancestor


def test_lines_after_comments_and_blank_lines() -> None:
    text = "# a comment\n\ngenarun: 1  # trailing\n\n\nnodes:\n  # inside\n  - id: x\n"
    doc = load_text(text, "t.yaml", "yaml")
    assert doc.line(("genarun",)) == 3
    assert doc.line(("nodes", 0, "id")) == 8


def test_minified_json_is_all_line_one() -> None:
    doc = load_text(json.dumps(json.loads(JSON_TREE)), "t.json", "json")
    assert doc.line(("nodes", 1, "id")) == 1


# --- files -------------------------------------------------------------------------------


def test_load_document_by_extension(tmp_path: Path) -> None:
    for name, text in [("a.yaml", BLOCK_YAML), ("b.yml", FLOW_YAML), ("c.json", JSON_TREE)]:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        doc = load_document(path)
        assert doc.path == path and doc.text == text and doc.data["genarun"] == 1


def test_other_extensions_are_read_as_yaml(tmp_path: Path) -> None:
    path = tmp_path / "tree.txt"
    path.write_text("genarun: 1\nname: t\n", encoding="utf-8")
    assert load_document(path).data == {"genarun": 1, "name": "t"}


def test_json_extension_is_strict_json(tmp_path: Path) -> None:
    path = tmp_path / "tree.JSON"
    path.write_text("genarun: 1\n", encoding="utf-8")
    with pytest.raises(TreeError, match="JSON syntax error"):
        load_document(path)


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "tree.json"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"genarun": 1}')
    assert load_document(path).data == {"genarun": 1}


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(TreeError) as info:
        load_document(path)
    assert str(path) in str(info.value)
    assert problem_of(info).file == str(path)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(TreeError, match="directory"):
        load_document(tmp_path)


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "tree.yaml"
    path.write_bytes(b"genarun: 1\nname: caf\xe9\n")
    with pytest.raises(TreeError) as info:
        load_document(path)
    assert problem_of(info).line == 2
    assert "UTF-8" in str(info.value)


def test_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tree.yaml"
    path.write_text("a: 1\na: 2\n", encoding="utf-8")
    with pytest.raises(TreeError) as info:
        load_document(path)
    assert str(info.value).startswith(f"{path}:2: ")


# --- document-level errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "text"),
    [("yaml", ""), ("yaml", "\n# only a comment\n"), ("yaml", "---\n"), ("json", "  \n")],
)
def test_empty_document(fmt: str, text: str) -> None:
    with pytest.raises(TreeError, match="empty") as info:
        load_text(text, "t", fmt)  # type: ignore[arg-type]
    assert "genarun: 1" in (problem_of(info).hint or "")


@pytest.mark.parametrize(
    ("fmt", "text", "kind", "line"),
    [
        ("yaml", "- a\n- b\n", "a list", 1),
        ("yaml", "\n\njust text\n", "text", 3),
        ("yaml", "null\n", "null", 1),
        ("json", "[1]", "a list", 1),
        ("json", "\n3", "a number", 2),
    ],
)
def test_top_level_must_be_a_mapping(fmt: str, text: str, kind: str, line: int) -> None:
    with pytest.raises(TreeError) as info:
        load_text(text, "t", fmt)  # type: ignore[arg-type]
    problem = problem_of(info)
    assert f"must be a mapping of keys to values, not {kind}" in problem.message
    assert problem.line == line


# --- YAML errors -------------------------------------------------------------------------


def test_yaml_duplicate_keys_name_both_lines() -> None:
    problem = problem_of(yaml_error("genarun: 1\nnodes:\n  - id: a\n    kind: x\n    id: b\n"))
    assert problem.line == 5
    assert "duplicate key 'id'" in problem.message
    assert "line 3" in problem.message and "line 5" in problem.message


def test_yaml_duplicate_keys_in_flow_style() -> None:
    problem = problem_of(yaml_error("a: {x: 1,\n  x: 2}\n"))
    assert problem.line == 2 and "first at line 1" in problem.message


def test_every_duplicate_is_reported() -> None:
    info = yaml_error("a: 1\na: 2\nb: {c: 1, c: 2}\n")
    assert [p.line for p in info.value.problems] == [2, 3]


@pytest.mark.parametrize(
    ("text", "line", "column", "hint"),
    [
        ("a:\n\t- b\n", 2, 1, "spaces, not tabs"),
        ("a: b: c\n", 1, 5, "quote"),
        # Unclosed quotes and brackets are reported where they open, not where YAML gives up.
        ("a: 'unclosed\nb: 2\n", 1, 4, "end the value with ' on this line"),
        ('a: "unclosed\nb: 2\nc: "x"\n', 1, 4, 'end the value with " on this line'),
        ("a: [1, 2\nb: 3\n", 1, 4, "close it with ']'"),
        ("a: {x: 1\nb: 3\n", 1, 4, "close it with '}'"),
        ('a: "say "hi" now"\n', 1, 10, "quote the whole value"),
        ("a:\n  b: 1\n  c\n", 3, 3, "add ':' after the key"),
        ("a:\n  - b\n c: 1\n", 3, 2, None),
        ("a: *missing\n", 1, 4, "anchor"),
        ("a: 1\n---\nb: 2\n", 2, 1, "one document"),
    ],
)
def test_yaml_syntax_errors(text: str, line: int, column: int, hint: str | None) -> None:
    problem = problem_of(yaml_error(text))
    assert problem.file == "tree.yaml"
    assert problem.line == line
    assert f"YAML syntax error at line {line}, column {column}" in problem.message
    if hint:
        assert hint in (problem.hint or "")


def test_unquoted_pick_is_not_read_as_a_list() -> None:
    # `text: [a | b]` is valid YAML for the list ['a | b']: never what a tree means.
    problem = problem_of(yaml_error("genarun: 1\n\ntext: [a | b]\nok: [1, 2]\n"))
    assert problem.line == 3
    assert "[a | b] without quotes is a YAML list, not a random pick" in problem.message
    assert problem.hint == "quote the whole value: '[a | b]'"


def test_unquoted_jinja_template_gets_a_hint() -> None:
    problem = problem_of(yaml_error("genarun: 1\nprompt: {{ topic }}\n"))
    assert problem.line == 2
    assert "quote" in (problem.hint or "")


@pytest.mark.parametrize(
    "value", ["!!binary aGk=", "!custom x", "!!python/object:os.system x", "!!set {a: null}"]
)
def test_unsupported_yaml_tags_are_rejected(value: str) -> None:
    problem = problem_of(yaml_error(f"genarun: 1\nkey: {value}\n"))
    assert problem.line == 2 and "unsupported YAML tag" in problem.message


@pytest.mark.parametrize("value", [".inf", "-.Inf", ".nan", "1e400", "!!float .inf"])
def test_yaml_non_finite_numbers_are_rejected(value: str) -> None:
    problem = problem_of(yaml_error(f"genarun: 1\n\nkey: {value}\n"))
    assert problem.line == 3 and "not a finite number" in problem.message


@pytest.mark.parametrize("value", ["!!int 1.5", "!!int abc", "!!bool yes", "!!float x"])
def test_yaml_tagged_values_must_match_their_tag(value: str) -> None:
    assert "is not a valid" in problem_of(yaml_error(f"key: {value}\n")).message


def test_yaml_complex_keys_are_rejected() -> None:
    problem = problem_of(yaml_error("a: 1\n? [x, y]\n: 2\n"))
    assert problem.line == 2 and "key must be text" in problem.message


def test_recursive_alias_is_rejected() -> None:
    assert "contains it" in problem_of(yaml_error("a: &x [1, *x]\n")).message


def test_alias_bomb_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yaml_reader, "_MAX_VALUES", 10_000)  # the real cap, reached sooner
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    problem = problem_of(yaml_error("\n".join(lines) + "\n"))
    assert "aliases expand" in problem.message


def test_bad_merge_value_is_rejected() -> None:
    assert "'<<' merges a mapping" in problem_of(yaml_error("a:\n  <<: [1]\n")).message


def test_unreadable_character_is_a_tree_error() -> None:
    problem = problem_of(yaml_error("a: 1\nb: \x00\n"))
    assert problem.line == 2


# --- JSON errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column", "hint"),
    [
        ('{\n  "a": 1,\n}', 3, 1, "trailing comma"),
        ("{'a': 1}", 1, 2, "double quotes"),
        ('{\n  "a": 1\n  "b": 2\n}', 3, 3, "comma is missing"),
        ('{"a" 1}', 1, 6, "':'"),
        ('{"a": [1, 2,]}', 1, 13, "trailing commas"),
        ('{"a": 1}\n{"b": 2}', 2, 1, "one top-level value"),
        ('{"a": "x', 1, 7, "close the string"),
        ('{"a": "tab\there"}', 1, 11, "\\t"),
        ('{"a": tru}', 1, 7, None),
        ('{"a": "\\q"}', 1, 8, "backslash"),
    ],
)
def test_json_syntax_errors_are_exact(text: str, line: int, column: int, hint: str | None) -> None:
    with pytest.raises(json.JSONDecodeError) as reference:
        json.loads(text)
    assert (reference.value.lineno, reference.value.colno) == (line, column)
    problem = problem_of(json_error(text))
    assert problem.file == "tree.json"
    assert problem.line == line
    assert f"JSON syntax error at line {line}, column {column}" in problem.message
    if hint:
        assert hint in (problem.hint or "")


def test_json_duplicate_keys_name_both_lines() -> None:
    problem = problem_of(json_error('{\n  "nodes": [{"id": "a",\n\n    "id": "b"}]\n}'))
    assert problem.line == 4
    assert "duplicate key 'id'" in problem.message and "first at line 2" in problem.message


def test_json_duplicate_top_level_keys() -> None:
    info = json_error('{"a": 1,\n "b": 2,\n "a": 3,\n "b": 4}')
    assert [p.line for p in info.value.problems] == [3, 4]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_json_non_finite_numbers_are_rejected(value: str) -> None:
    problem = problem_of(json_error(f'{{\n "a": {value}}}'))
    assert problem.line == 2 and "not a finite number" in problem.message


def test_json_escaped_keys_and_strings() -> None:
    doc = load_text('{"a\\"b": "\\ud83d\\ude00", "c\\u0041": "\\n"}', "t.json", "json")
    assert doc.data == {'a"b': "😀", "cA": "\n"}
    assert doc.line(("cA",)) == 1


def test_json_integer_too_long_is_a_tree_error() -> None:
    problem = problem_of(json_error('{\n"a": ' + "1" * 5000 + "}"))
    assert problem.message == "a number of 5000 digits is too long to read" and problem.line == 2


def test_deeply_nested_json_is_a_tree_error() -> None:
    for depth in (101, 100_000):
        message = problem_of(json_error('{"a": ' + "[" * depth + "]" * depth + "}")).message
        assert "values nest more than 100 levels deep" in message


def test_valid_json_always_loads() -> None:
    # A grab bag of legal but unusual JSON: whitespace everywhere, empty containers, exponents.
    text = ' \r\n\t{ "a" :\t[ ] , "b":{ } ,"c" : [ 0 , -0.0 , 1E+2 , 2e-2 , "" ] ,"d":"\\/"}\n '
    assert load_text(text, "t.json", "json").data == json.loads(text)
