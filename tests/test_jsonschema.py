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
from genarun.tree.load import load_document
from genarun.tree.validate import read_tree
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
