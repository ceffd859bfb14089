"""Decoding under a JSON Schema (genarun.models.structured) with the tiny random-weight GPT-2:
whatever the seed and temperature, the answer parses and satisfies the schema, and a batch
gives what its rows give alone."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from genarun.errors import ModelError
from genarun.models.base import Invocation
from genarun.models.catalog import resolve_model
from genarun.models.structured import closed_objects
from genarun.models.transformers import CausalLM, TransformersProvider

SCHEMAS: dict[str, dict[str, Any]] = {
    "plan": {
        "type": "array",
        "minItems": 2,
        "maxItems": 4,
        "items": {
            "type": "object",
            "properties": {
                "title": {"type": "string", "minLength": 3, "maxLength": 30},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
            },
            "required": ["title", "tags"],
        },
    },
    "enum_and_bounded_integer": {
        "type": "object",
        "properties": {
            "mood": {"enum": ["happy", "sad", "calm"]},
            "rating": {"type": "integer", "minimum": 3, "maximum": 17},
        },
        "required": ["mood", "rating"],
    },
    "nested": {
        "type": "object",
        "properties": {
            "place": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "coords": {"type": "array", "items": {"type": "number"}, "minItems": 2,
                               "maxItems": 2},
                    "open": {"type": "boolean"},
                },
                "required": ["name", "coords", "open"],
            },
            "note": {"type": ["string", "null"]},
        },
        "required": ["place"],
        "additionalProperties": False,
    },
    "pattern_and_ref": {
        "$defs": {"slug": {"type": "string", "pattern": "^[a-z]{2,8}(-[a-z]{2,8})?$"}},
        "type": "object",
        "properties": {"slug": {"$ref": "#/$defs/slug"}, "id": {"type": "integer", "minimum": 0}},
        "required": ["slug", "id"],
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def model() -> CausalLM:
    loaded = TransformersProvider().load(resolve_model("tiny-gpt2", {}), "cpu")
    assert isinstance(loaded, CausalLM)
    return loaded


def _ask(model: CausalLM, schema: dict[str, Any], seeds: range, **settings: Any) -> list[str]:
    batch = [
        Invocation("generate", "Plan a blog about geckos.", seed, {"schema": schema, **settings})
        for seed in seeds
    ]
    return [str(text) for text in model.run("generate", batch)]


def _check_seeds(model: CausalLM, name: str, seeds: range, max_tokens: int) -> None:
    schema = SCHEMAS[name]
    answers = _ask(model, schema, seeds, temperature=1.0, max_tokens=max_tokens)
    for answer in answers:
        jsonschema.validate(json.loads(answer), schema)
    assert len(set(answers)) > 1  # the seeds matter: sampling, not one canned answer


@pytest.mark.parametrize("name", ["plan", "enum_and_bounded_integer"])
def test_seeds_give_valid_json(model: CausalLM, name: str) -> None:
    _check_seeds(model, name, range(2), max_tokens=56)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_many_seeds_give_valid_json(model: CausalLM, name: str) -> None:
    _check_seeds(model, name, range(100, 124), max_tokens=96)


def test_greedy_and_short_budgets_still_close_the_value(model: CausalLM) -> None:
    """A random model at temperature 0 repeats one token (inside a string, forever): the
    budget's closing path ends the value in time, even when the budget barely holds it."""
    for name, budget in (("plan", 56), ("enum_and_bounded_integer", 20)):
        schema = SCHEMAS[name]
        for answer in _ask(model, schema, range(1), temperature=0.0, max_tokens=budget):
            jsonschema.validate(json.loads(answer), schema)


def test_batched_rows_equal_rows_alone(model: CausalLM) -> None:
    schema = SCHEMAS["enum_and_bounded_integer"]
    together = _ask(model, schema, range(3), temperature=0.9, max_tokens=32)
    alone = [_ask(model, schema, range(seed, seed + 1), temperature=0.9, max_tokens=32)[0]
             for seed in range(3)]  # fmt: skip
    assert together == alone


def test_answers_only_use_named_properties_where_the_schema_is_open() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "object", "properties": {}}}}
    closed = closed_objects(schema)
    assert closed["additionalProperties"] is False
    assert closed["properties"]["a"]["additionalProperties"] is False
    # An allOf's branches are left open (closing one would contradict another), and data is data.
    combined = {"allOf": [{"properties": {"x": {}}}], "enum": [{"properties": {}}]}
    assert closed_objects(combined) == combined


def test_a_schema_the_grammar_cannot_hold_is_a_clear_model_error(model: CausalLM) -> None:
    with pytest.raises(ModelError, match="schema: cannot be used for constrained decoding"):
        _ask(model, {"type": "string", "pattern": "(?<=a)b"}, range(1))
