"""Template fast paths (bare names, shared parses, flat globals, prebuilt JSON encoders) give
what the general Jinja and json paths give."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from genarun.store.db import Store
from genarun.tree.template_env import ENV, RenderError, TemplateProblem
from genarun.tree.templates import Expression, Text, field_rng, render_jinja
from genarun.values import dumps, json_text

SCOPE: dict[str, Any] = {"ideas": ["a", "b"], "count": 3, "range": "shadowed", "nothing": None}


@pytest.mark.parametrize("source", ["ideas", " count ", "nothing", "range", "lipsum", "dict"])
def test_a_bare_name_is_what_jinja_evaluates(source: str) -> None:
    expected = ENV.compile_expression(source.strip(), undefined_to_none=False)(**SCOPE)
    assert Expression(source).evaluate(SCOPE, None, []) == expected


def test_a_bare_name_reads_globals_when_the_scope_lacks_it() -> None:
    assert Expression("range").evaluate({}, None, []) is ENV.globals["range"]


@pytest.mark.parametrize("source", ["missing", "missing | length"])
def test_an_undefined_expression_fails_as_before(source: str) -> None:
    with pytest.raises(RenderError, match="undefined"):
        Expression(source).evaluate(SCOPE, None, [])


def test_a_failed_lookup_in_an_expression_says_what_the_value_is() -> None:
    with pytest.raises(RenderError) as info:
        Expression("ideas.nope").evaluate(SCOPE, None, [])
    assert str(info.value) == "ideas is a list of 2 items, not an object, so it has no 'nope'"


@pytest.mark.parametrize(
    ("source", "names"),
    [
        ("ideas", {"ideas"}),
        ("range", set()),
        ("true", set()),
        ("ideas[count] ~ x", {"ideas", "count", "x"}),
    ],
)
def test_expression_names(source: str, names: set[str]) -> None:
    assert Expression(source).names == names


def test_keywords_stay_jinja_constants() -> None:
    assert Expression("true").evaluate({}, None, []) is True
    assert Expression("none").evaluate({}, None, []) is None


def test_repeated_templates_share_a_parse_and_errors_repeat() -> None:
    source = "Item {{ n }} of {{ topic }}: a [red | green] thing"
    first, second = Text(source), Text(source)
    assert first.names == second.names == {"n", "topic"}
    rng_a, rng_b = field_rng(7, "text"), field_rng(7, "text")
    assert first.evaluate({"n": 1, "topic": "t"}, rng_a, []) == second.evaluate(
        {"n": 1, "topic": "t"}, rng_b, []
    )
    for _ in range(2):
        with pytest.raises(TemplateProblem, match="template syntax"):
            Text("{{ broken ")


def test_rendered_templates_see_globals_and_filters() -> None:
    assert render_jinja("{{ range(3) | list | json }} {{ dict(a=1) }}", {}) == "[0, 1, 2] {'a': 1}"
    assert render_jinja("{{ range(n) | list }}", {"n": 2}) == [0, 1]


@pytest.mark.parametrize("value", ["plain", 'é "quoted"', {"b": [1, 2.5], "a": None}, [True, "x"]])
def test_json_helpers_match_json_dumps(value: Any) -> None:
    assert dumps(value) == json.dumps(value, ensure_ascii=False)
    assert json_text(value, sort_keys=True) == json.dumps(value, ensure_ascii=False, sort_keys=True)


def test_record_executions_stores_missing_columns_as_null(tmp_path: Path) -> None:
    store = Store(tmp_path / "g.db")
    run_id = store.create_run(name="t")
    full = {
        "run_id": run_id,
        "node_id": "a",
        "path": "[0]",
        "kind": "template",
        "status": "done",
        "attempts": 2,
        "output": '"x"',
    }
    skipped = {
        "run_id": run_id,
        "node_id": "b",
        "path": "[]",
        "kind": "template",
        "status": "skipped",
        "error": "off",
    }
    store.record_executions([full, skipped])
    store.record_executions([])
    rows = store.run_executions(run_id)
    store.close()
    assert [
        (r["node_id"], r["status"], r["attempts"], r["output"], r["error"], r["seed"]) for r in rows
    ] == [
        ("a", "done", 2, '"x"', None, None),
        ("b", "skipped", None, None, "off", None),
    ]


NAMES_SCOPE: dict[str, Any] = {
    "n": 7,
    "topic": "newts",
    "items": [1, "a", None],
    "plan": {"b": 2.5, "a": True},
    "none": None,
    "range": "shadowed",
    "self": "a node called self",
    "nl": "x\r\ny",
}


@pytest.mark.parametrize(
    "source",
    [
        "Item {{ n }} of {{ topic }}: a red thing",
        "{{ n }}{{ items }}{{ plan }}{{ none }}",
        "{{ range }} and {{ self }}",  # a shadowed global, and a name Jinja binds itself
        "a\r\nb {{- nl -}} \n c {# note #}\n",
        "{% raw %}{{ n }}{% endraw %} {{ n }}}",
        "{{ n }} {{ missing }}",  # not in the scope: Jinja's path and its error
        "{{ n }} {{ topic | upper }} {{ plan.a }}",  # anything else: Jinja's path
    ],
)
def test_a_template_that_only_prints_names_renders_as_jinja_does(source: str) -> None:
    from jinja2 import UndefinedError

    try:
        expected: Any = ENV.from_string(source).render(NAMES_SCOPE)
    except UndefinedError:
        with pytest.raises(RenderError, match="missing"):
            render_jinja(source, NAMES_SCOPE)
        return
    assert render_jinja(source, NAMES_SCOPE) == expected


def test_printed_names_are_bounded_as_in_jinja() -> None:
    huge = {"big": "x" * 2_000_001}
    with pytest.raises(RenderError) as fast:
        render_jinja("a {{ big }}", huge)
    with pytest.raises(RenderError) as jinja:  # the same print, in a template Jinja renders
        render_jinja("a {{ big }}{% if false %}{% endif %}", huge)
    assert "the printed value" in str(fast.value)
    assert str(fast.value) == str(jinja.value)


@pytest.mark.parametrize("seed", [0, 1, 2**31 - 1])
@pytest.mark.parametrize("name", ["text", "vars.topic", "é ✓"])
def test_a_field_rng_draws_what_random_seeded_with_its_key_draws(seed: int, name: str) -> None:
    import random

    expected, rng = random.Random(f"{seed}:{name}"), field_rng(seed, name)
    assert [rng.random() for _ in range(3)] == [expected.random() for _ in range(3)]
    assert rng.getstate() == expected.getstate()


@pytest.mark.parametrize(
    "source",
    ["a [red | green | blue] b", '[2:: x | 0.5:: y [é "q" | z] | 0:: w]', "[1 | 2 | 3e2:: 3]"],
)
def test_stored_picks_are_the_json_of_their_records(source: str) -> None:
    from genarun.tree.picks import PickRecord, expand_picks, picks_json

    for seed in range(20):
        _text, records = expand_picks(source, field_rng(seed, "text"))
        assert picks_json(records) == json.dumps([r.to_json() for r in records], ensure_ascii=False)
    made = [PickRecord(alternatives=["a"], weights=[1], chosen=0, value="a")]  # not by a Pick
    assert picks_json(made) == json.dumps([r.to_json() for r in made], ensure_ascii=False)
