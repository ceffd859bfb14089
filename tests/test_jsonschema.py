"""`genarun schema` is a valid JSON Schema that accepts every tree genarun accepts.

Checked with the `jsonschema` package (an independent implementation, the one editors' schema
support follows): the schema against its draft 2020-12 meta-schema, then every example, starter
and valid scenario tree against the schema.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from genarun.errors import TreeError
from genarun.tree.jsonschema import tree_json_schema
from genarun.tree.load import load_document, load_text
from genarun.tree.validate import read_tree, validate_document
from tests.helpers import TREES

REPO = Path(__file__).resolve().parents[1]
# The trees people start from. Only a tree's own folder: a run's folder below it holds a copy of
# the tree and JSON outputs, which are not trees.
EXAMPLES = sorted(
    [
        *REPO.glob("examples/*/*.yaml"),
        *REPO.glob("examples/*/*.json"),
        *REPO.glob("templates/*.yaml"),
    ]
)
SCENARIOS = sorted(TREES.glob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(json.dumps(tree_json_schema()))  # exactly what `genarun schema` prints
    jsonschema.Draft202012Validator.check_schema(schema)  # against the draft 2020-12 meta-schema
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def test_the_schema_is_valid_against_its_meta_schema() -> None:
    schema = tree_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.validators.validator_for(schema).check_schema(schema)


def _errors(validator: jsonschema.Draft202012Validator, data: object) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)
    ]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_example_tree_is_valid_against_the_schema(
    path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    read_tree(path)  # genarun accepts it ...
    assert _errors(validator, load_document(path).data) == []  # ... and so does the schema


def test_the_examples_are_found() -> None:
    names = {str(p.relative_to(REPO)) for p in EXAMPLES}
    assert {"examples/story/tree.yaml", "examples/panic/tree.yaml"} <= names


def test_no_tree_that_genarun_accepts_is_flagged_by_the_schema(
    validator: jsonschema.Draft202012Validator,
) -> None:
    accepted = flagged = 0
    problems = {}
    for path in SCENARIOS:
        try:
            read_tree(path)
        except TreeError:
            continue  # a scenario of bad input
        accepted += 1
        errors = _errors(validator, load_document(path).data)
        if errors:
            flagged += 1
            problems[path.name] = errors
    assert accepted > 30 and flagged == 0, problems


NODE = "  - id: pic\n    kind: image\n    model: dummy\n    prompt: a cat\n"
GEN = "  - id: text\n    kind: generate\n    model: dummy\n    prompt: hello\n"


def _tree(nodes: str, name: str = "t", extra: str = "") -> str:
    return f"genarun: 1\nname: {name}\n{extra}nodes:\n{nodes}"


# Mistakes that editors (through the schema) and `genarun validate` both flag, and their fix.
MISTAKES = {
    "steps: many": (_tree(NODE + "    steps: many\n"), "field 'steps'"),
    "width: wide": (_tree(NODE + "    width: wide\n"), "field 'width'"),
    "temperature: hot": (_tree(GEN + "    temperature: hot\n"), "field 'temperature'"),
    "steps: 0": (_tree(NODE + "    steps: 0\n"), "must be at least 1, got 0"),
    "width: -64": (_tree(NODE + "    width: -64\n"), "must be at least 1, got -64"),
    "height: 0": (_tree(NODE + "    height: 0\n"), "field 'height'"),
    "guidance: -1": (_tree(NODE + "    guidance: -1\n"), "field 'guidance'"),
    "max_tokens: 0": (_tree(GEN + "    max_tokens: 0\n"), "field 'max_tokens'"),
    "enabled: yes": (_tree(NODE + "    enabled: yes\n"), "write true, unquoted"),
    "retries: '3'": (_tree(NODE + '    retries: "3"\n'), "write 3, without quotes"),
    "seed: '7'": (_tree(NODE, extra='seed: "7"\n'), "field 'seed'"),
    "name: my blog": (_tree(NODE, name="my blog"), "tree name 'my blog'"),
    "id: my-pic": (_tree(NODE.replace("id: pic", "id: my-pic")), "not an identifier"),
    "id: seed": (_tree(NODE.replace("id: pic", "id: seed")), "reserved"),
    "as: a-b": (
        _tree(NODE + "    foreach: [1, 2]\n    as: a-b\n"),
        "'as: a-b' is not an identifier",
    ),
    "matrix key": (_tree(NODE, extra="matrix:\n  a-b: [1]\n"), "matrix key 'a-b'"),
    "empty matrix": (_tree(NODE, extra="matrix:\n  style: []\n"), "has no values"),
}
# The same fields written correctly: neither flags them.
CORRECT = {
    "typed values": _tree(NODE + "    steps: 4\n    width: 64\n    guidance: 0\n"),
    "templates": _tree(
        NODE + "    steps: '{{ n }}'\n    width: '{% if true %}64{% endif %}'\n",
        extra="vars:\n  n: 3\n",
    ),
    "booleans and numbers": _tree(GEN + "    enabled: true\n    retries: 3\n    temperature: 1\n"),
    "names": _tree(NODE.replace("id: pic", "id: _pic2"), name="my-blog_2"),
}


@pytest.mark.parametrize("case", MISTAKES)
def test_editors_and_the_validator_flag_the_same_mistakes(
    case: str, validator: jsonschema.Draft202012Validator
) -> None:
    text, message = MISTAKES[case]
    doc = load_text(text, "tree.yaml", "yaml")
    assert _errors(validator, doc.data), f"the schema accepts {case}"
    with pytest.raises(TreeError) as info:
        validate_document(doc)
    assert message in str(info.value)
    assert "tree.yaml:" in str(info.value)  # located


@pytest.mark.parametrize("case", CORRECT)
def test_editors_and_the_validator_accept_the_same_values(
    case: str, validator: jsonschema.Draft202012Validator
) -> None:
    doc = load_text(CORRECT[case], "tree.yaml", "yaml")
    assert _errors(validator, doc.data) == []
    validate_document(doc)


def test_hover_titles_are_for_people() -> None:
    text = json.dumps(tree_json_schema())
    assert "TreeSpec" not in text
    schema = tree_json_schema()
    assert schema["title"] == "genarun tree (format 1)"
    steps = schema["$defs"]["image_node"]["properties"]["steps"]
    assert steps["title"] == "steps (image node)"
    assert all("title" not in branch for branch in steps["anyOf"])
    assert schema["properties"]["name"]["title"] == "name (tree)"
