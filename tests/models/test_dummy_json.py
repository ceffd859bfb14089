"""The dummy model under `schema:`: schema-valid values, the same for the same seed."""

from __future__ import annotations

import json

import jsonschema
import pytest

from genarun.errors import ModelError
from genarun.models.base import Invocation
from genarun.models.catalog import resolve_model
from genarun.models.dummy import DummyModel
from tests.models.test_structured_decoding import SCHEMAS

EXTRA = {
    "formats_and_bounds": {
        "type": "object",
        "properties": {
            "day": {"type": "string", "format": "date"},
            "mail": {"type": "string", "format": "email"},
            "price": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "step": {"type": "integer", "multipleOf": 5, "minimum": 12, "maximum": 40},
            "code": {"type": "string", "pattern": r"^[A-Z]{3}-\d{2,4}$"},
            "either": {"anyOf": [{"type": "null"}, {"type": "boolean"}]},
            "short": {"type": "string", "minLength": 30, "maxLength": 40},
        },
        "required": ["day", "mail", "price", "step", "code", "either", "short"],
    },
    "all_of_and_unique": {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"type": "array", "items": {"enum": [1, 2]},
                                  "uniqueItems": True, "maxItems": 2}}, "required": ["b"]},
        ]
    },
}  # fmt: skip


def _answer(schema: dict, seed: int, prompt: str = "Plan 4 things.") -> str:
    model = DummyModel(resolve_model("dummy", {}))
    return model.run("generate", [Invocation("generate", prompt, seed, {"schema": schema})])[0]


@pytest.mark.parametrize("name", sorted({**SCHEMAS, **EXTRA}))
def test_answers_are_valid_and_seeded(name: str) -> None:
    schema = {**SCHEMAS, **EXTRA}[name]
    answers = [_answer(schema, seed) for seed in range(40)]
    for answer in answers:
        jsonschema.validate(json.loads(answer), schema, format_checker=jsonschema.FormatChecker())
    assert answers == [_answer(schema, seed) for seed in range(40)]
    assert len(set(answers)) > 1


def test_array_length_follows_the_prompt_within_bounds() -> None:
    assert len(json.loads(_answer(SCHEMAS["plan"], 1, "Plan 3 posts"))) == 3
    assert len(json.loads(_answer(SCHEMAS["plan"], 1, "Plan 9 posts"))) == 4  # maxItems


def test_unsatisfiable_bounds_are_a_model_error() -> None:
    with pytest.raises(ModelError, match="no integer within the schema's bounds"):
        _answer({"type": "integer", "minimum": 5, "maximum": 9, "multipleOf": 10}, 1)
