"""`generate` with `schema:` end to end: the dummy answers under the schema, an API model gets
`response_format`, answers are validated and parsed, and bad schemas are caught before the run."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import jsonschema
import pytest
from click.testing import Result

from tests.helpers import query

try:
    from tests.providers_server import FakeOpenAIServer
except ImportError:
    from providers_server import FakeOpenAIServer  # type: ignore[no-redef]

PLAN_SCHEMA = {
    "type": "array",
    "minItems": 2,
    "maxItems": 5,
    "items": {
        "type": "object",
        "properties": {
            "title": {"type": "string", "maxLength": 60},
            "tags": {"type": "array", "items": {"enum": ["care", "food", "habitat"]}},
        },
        "required": ["title", "tags"],
    },
}


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as running:
        yield running


def _tree(workdir: Path, body: str) -> Path:
    path = workdir / "plan.yaml"
    path.write_text("genarun: 1\nname: plan\nseed: 5\n" + body)
    return path


def _output(workdir: Path) -> dict:
    return json.loads((workdir / "plan" / "latest" / "output.json").read_text())


def test_dummy_plans_a_site_under_a_schema_file(cli: Callable[..., Result], workdir: Path) -> None:
    (workdir / "plan.schema.json").write_text(json.dumps(PLAN_SCHEMA))
    tree = _tree(
        workdir,
        "nodes:\n"
        "  - id: plan\n    kind: generate\n    model: dummy\n"
        "    prompt: Plan 4 articles about geckos.\n    schema: plan.schema.json\n"
        "    children:\n"
        "      - id: article\n        kind: generate\n        foreach: plan\n        as: entry\n"
        "        model: dummy\n        prompt: 'Write {{ entry.title }} ({{ entry.tags | join(\",\") }})'\n"
        "        schema: {type: object, properties: {words: {type: integer, minimum: 50,"
        " maximum: 60}, mood: {enum: [calm, bold]}}, required: [words, mood]}\n",
    )
    result = cli("run", tree)
    assert result.exit_code == 0, result.output
    out = _output(workdir)["plan"]
    jsonschema.validate(out["value"], PLAN_SCHEMA)
    assert len(out["value"]) == 4  # the prompt's number, within the schema's bounds
    for entry in out["article"]:
        assert 50 <= entry["value"]["words"] <= 60 and entry["value"]["mood"] in ("calm", "bold")


def test_api_model_gets_response_format_and_its_answer_is_parsed(
    cli: Callable[..., Result], workdir: Path, server: FakeOpenAIServer
) -> None:
    closed = {
        "title": "Gecko plan",
        "type": "object",
        "properties": {"title": {"type": "string"}, "n": {"type": "integer", "maximum": 9}},
        "required": ["title", "n"],
        "additionalProperties": False,
    }
    tree = _tree(
        workdir,
        f"models:\n  api: {{provider: openai, id: fake-model, options: {{base_url: '{server.base_url}',"
        " api_key_env: GENARUN_TEST_NO_KEY}}\n"
        "nodes:\n"
        f"  - id: strict\n    kind: generate\n    model: api\n    prompt: One plan.\n"
        f"    schema: {json.dumps(closed)}\n"
        f"  - id: loose\n    kind: generate\n    model: api\n    prompt: Some plans.\n"
        f"    schema: {json.dumps(PLAN_SCHEMA)}\n",
    )
    result = cli("run", tree)
    assert result.exit_code == 0, result.output
    out = _output(workdir)
    jsonschema.validate(out["strict"], closed)
    jsonschema.validate(out["loose"], PLAN_SCHEMA)
    formats = {
        r.body["messages"][-1]["content"]: r.body["response_format"] for r in server.requests
    }
    assert formats["One plan."] == {
        "type": "json_schema",
        "json_schema": {"name": "Gecko_plan", "schema": closed, "strict": True},
    }
    # Strict mode would refuse an open object schema: it is sent without strict, then validated.
    assert formats["Some plans."]["json_schema"] == {
        "name": "answer",
        "schema": PLAN_SCHEMA,
        "strict": False,
    }


def test_answer_failing_the_schema_after_retries_is_kept_with_a_clear_message(
    cli: Callable[..., Result], workdir: Path, server: FakeOpenAIServer
) -> None:
    server.reply_text('{"title": 5}')
    tree = _tree(
        workdir,
        f"models:\n  api: {{provider: openai, id: fake-model, options: {{base_url: '{server.base_url}',"
        " api_key_env: GENARUN_TEST_NO_KEY}}\n"
        "nodes:\n"
        "  - id: plan\n    kind: generate\n    model: api\n    prompt: A plan.\n    retries: 2\n"
        "    schema: {type: object, properties: {title: {type: string}}, required: [title]}\n",
    )
    result = cli("run", tree)
    assert result.exit_code == 1
    assert "node 'plan' failed: output does not match the schema at $.title: 5 is not of type" in (
        result.output
    )
    assert "raise retries" in result.output and "its text is kept" in result.output
    row = query(workdir / "genarun.db", "SELECT attempts, raw_output FROM executions")[0]
    assert row["attempts"] == 3 and json.loads(row["raw_output"]) == '{"title": 5}'
    # Each retry sampled with another seed: retrying the same seed gives the same answer.
    seeds = [r.body["seed"] for r in server.requests]
    assert len(seeds) == 3 and len(set(seeds)) == 3


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (
            "missing.schema.json",
            "plan.yaml:9 node 'plan': field 'schema': schema file 'missing.schema.json' does"
            " not exist in",
        ),
        (
            "{type: objekt}",
            "plan.yaml:9 node 'plan': field 'schema': not a valid JSON Schema: at type:",
        ),
        ("plan.txt", "is not a schema file name: give a mapping, or a file ending in .json"),
        ("../outside.json", "must be inside the tree's folder"),
    ],
)
def test_bad_schema_is_a_validation_error_before_anything_runs(
    cli: Callable[..., Result], workdir: Path, schema: str, expected: str
) -> None:
    (workdir.parent / "outside.json").write_text("{}")
    tree = _tree(
        workdir,
        "nodes:\n  - id: plan\n    kind: generate\n    model: dummy\n    prompt: x\n"
        f"    schema: {schema}\n",
    )
    result = cli("run", tree)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output
    assert not (workdir / "plan").exists() and not (workdir / "genarun.db").exists()


def test_schema_file_that_is_not_json_names_the_line(
    cli: Callable[..., Result], workdir: Path
) -> None:
    (workdir / "plan.schema.json").write_text('{"type": "object",\n  "properties": }')
    tree = _tree(
        workdir,
        "nodes:\n  - id: plan\n    kind: generate\n    model: dummy\n    prompt: x\n"
        "    schema: plan.schema.json\n",
    )
    result = cli("validate", tree)
    assert result.exit_code == 2
    assert "schema file 'plan.schema.json' is not valid JSON: Expecting value at line 2" in (
        result.output
    )


PERSON = "{type: object, properties: {name: {type: string}, age: {type: integer}}, required: [name, age]}"


def test_a_key_the_schema_does_not_have_is_a_validation_error_with_did_you_mean(
    cli: Callable[..., Result], workdir: Path
) -> None:
    (workdir / "person.schema.json").write_text(
        json.dumps({"type": "object", "properties": {"city": {"type": "string"}}})
    )
    tree = _tree(
        workdir,
        "nodes:\n"
        f"  - id: who\n    kind: generate\n    model: dummy\n    prompt: x\n    schema: {PERSON}\n"
        "    children:\n"
        "      - id: line\n        kind: template\n        text: '{{ who.nam }} ({{ who.age }})'\n"
        "  - id: where\n    kind: generate\n    model: dummy\n    prompt: x\n"
        "    schema: person.schema.json\n"
        "  - id: card\n    kind: template\n"
        "    text: \"{{ who['agee'] }} in {{ where.cty }}, {{ who.items() | list | length }}\"\n",
    )
    result = cli("validate", tree)
    assert result.exit_code == 2, result.output
    assert (
        "plan.yaml:13 node 'line': field 'text': 'who' has no field 'nam' (did you mean 'name'?"
        " its schema's properties: age, name)"
    ) in result.stderr
    assert (
        "plan.yaml:21 node 'card': field 'text': 'who' has no field 'agee' (did you mean 'age'?"
        in (result.stderr)
    )
    assert "'where' has no field 'cty' (did you mean 'city'?" in result.stderr
    assert "items" not in result.stderr  # a mapping's method, not a key
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "schema",
    [
        # Other keys allowed, or keys the schema does not list at its top level.
        "{type: object, properties: {name: {type: string}}, additionalProperties: true}",
        "{type: object, properties: {name: {type: string}}, patternProperties: {'^n': {}}}",
        "{type: object, anyOf: [{properties: {nam: {type: string}}}]}",
        "'{{ \"plan.schema.json\" }}'",
    ],
)
def test_keys_are_not_judged_where_the_schema_allows_others(
    cli: Callable[..., Result], workdir: Path, schema: str
) -> None:
    tree = _tree(
        workdir,
        f"nodes:\n  - id: who\n    kind: generate\n    model: dummy\n    prompt: x\n"
        f"    schema: {schema}\n"
        "  - id: line\n    kind: template\n    text: '{{ who.nam | default(\"\") }}'\n",
    )
    result = cli("validate", tree)
    assert "has no field" not in result.output, result.output


def test_keys_the_schema_has_validate_and_run(cli: Callable[..., Result], workdir: Path) -> None:
    tree = _tree(
        workdir,
        f"nodes:\n  - id: who\n    kind: generate\n    model: dummy\n    prompt: x\n"
        f"    schema: {PERSON}\n"
        "    children:\n"
        "      - id: line\n        kind: template\n        text: '{{ who.name }} ({{ who.age }})'\n",
    )
    result = cli("run", tree)
    assert result.exit_code == 0, result.output
    assert isinstance(_output(workdir)["who"]["value"]["age"], int)
