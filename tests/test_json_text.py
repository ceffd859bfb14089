"""output.json, logs.json and run.json are written through store.folders.json_text: orjson for
plain JSON values, json's own encoder for everything else, with the same parsed content (and,
but for how some floats are spelled, the same text) as `json.dumps(indent=2, default=str)`."""

from __future__ import annotations

import datetime
import enum
import json
import math
import uuid
from collections import OrderedDict, namedtuple
from pathlib import Path
from typing import Any

import pytest

from genarun.store.folders import json_text, write_json


class Colour(enum.Enum):
    RED = "red"


class Size(enum.IntEnum):
    BIG = 3


class Name(str):
    pass


Point = namedtuple("Point", "x y")


def reference(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def same_parsed(a: str, b: str) -> bool:
    # NaN is not equal to itself: compare the texts json writes back from each.
    return json.dumps(json.loads(a), sort_keys=False) == json.dumps(json.loads(b), sort_keys=False)


PLAIN = [
    {"a": 1, "b": [1.5, -0.0, 1e-05, 1e16, 0.1], "c": {"d": None, "e": True, "f": False}},
    ["é ünïcode ✓ 🙂", '\x00\x1f\x7f\u2028 "quoted" back\\slash /slash \n\t\b\f\r'],
    {"empty": {}, "list": [], "nested": [[], {}, [[]]]},
    {"big": 2**63 - 1, "neg": -(2**63), "tuple": (1, 2), "name": Name("x"), "size": Size.BIG},
    OrderedDict([("z", 1), ("a", 2)]),
    "text",
    3,
    None,
]
ODD = [
    {"nan": math.nan, "inf": [math.inf, -math.inf]},
    {"when": datetime.datetime(2026, 12, 7, 2, 10), "day": datetime.date(2026, 12, 7)},
    {"colour": Colour.RED, "id": uuid.UUID(int=5), "set": {1}},
    {"huge": 2**64 + 1, "neg": -(2**70)},
    {1: "int key", 1.5: "float key", False: "bool", None: "none"},
    {"point": Point(1, 2), "bytes": b"x", "path": Path("a/b")},
    ["lone \ud800 surrogate"],
]


@pytest.mark.parametrize("value", PLAIN + ODD)
def test_json_text_parses_back_as_json_dumps_does(value: Any) -> None:
    assert same_parsed(json_text(value), reference(value))


@pytest.mark.parametrize("value", PLAIN)
def test_plain_values_are_written_with_the_same_text_but_float_spelling(value: Any) -> None:
    assert json_text(value).replace("0.00001", "1e-05") == reference(value)


@pytest.mark.parametrize("value", ODD)
def test_other_values_take_json_s_own_route(value: Any) -> None:
    assert json_text(value) == reference(value)


def test_nesting_past_orjson_s_limit_is_written_as_json_does() -> None:
    deep: Any = []
    for _ in range(400):
        deep = [deep]
    assert json_text(deep) == reference(deep)


def test_errors_are_json_s() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="Circular reference"):
        json_text(cycle)
    with pytest.raises(TypeError, match="keys must be"):
        json_text({(1, 2): "tuple key"})


def test_write_json_writes_the_same_content(tmp_path: Path) -> None:
    value = {"outputs": PLAIN, "odd": {"nan": math.nan}}
    write_json(tmp_path / "output.json", value, outputs=True)
    text = (tmp_path / "output.json").read_text()
    assert text.endswith("}\n")
    assert same_parsed(text, reference(value))
