"""Random picks: syntax, weights, escapes, Jinja regions, seeded reproducibility, errors."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from genarun.tree.picks import PickRecord, PickSyntaxError, Template, expand_picks, parse_picks


def outcomes(text: str, draws: int = 400, seed: int = 0) -> Counter[str]:
    """How often each rendered text comes out over many draws from one seeded rng."""
    rng = random.Random(seed)
    template = parse_picks(text)
    return Counter(template.render(rng)[0] for _ in range(draws))


# --- plain text --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "plain text", "a | b", "{{ x | upper }}", "item [1]", "a::b", "{ not jinja }", "50%"],
)
def test_text_without_picks_renders_unchanged(text: str) -> None:
    template = parse_picks(text)
    assert not template.has_picks
    assert template.render(random.Random(0)) == (text, [])


def test_text_without_special_characters_returns_the_same_object() -> None:
    text = "Write a short article about lizards."
    assert parse_picks(text).render(random.Random())[0] is text


def test_rendering_without_picks_does_not_touch_the_rng() -> None:
    rng = random.Random(5)
    state = rng.getstate()
    parse_picks(r"item [1] \[x\] {{ a | b }}").render(rng)
    assert rng.getstate() == state


# --- picks -------------------------------------------------------------------------------


def test_pick_chooses_each_alternative() -> None:
    assert set(outcomes("[a | b | c]")) == {"a", "b", "c"}


def test_alternatives_are_trimmed_and_surrounding_text_kept() -> None:
    assert set(outcomes("I like [  red   |blue ] cars.")) == {
        "I like red cars.",
        "I like blue cars.",
    }


def test_empty_alternatives_are_allowed() -> None:
    assert set(outcomes("x[ | !]")) == {"x", "x!"}


def test_pick_record_describes_the_choice() -> None:
    text, records = parse_picks("[a | b c | d]").render(random.Random(3))
    assert len(records) == 1
    record = records[0]
    assert record.alternatives == ["a", "b c", "d"]
    assert record.weights == [1.0, 1.0, 1.0]
    assert record.alternatives[record.chosen] == text == record.value


def test_pick_record_to_json() -> None:
    record = PickRecord(alternatives=["a", "b"], weights=[3.0, 1.0], chosen=1, value="b")
    assert record.to_json() == {
        "alternatives": ["a", "b"],
        "weights": [3.0, 1.0],
        "chosen": 1,
        "value": "b",
    }


def test_several_picks_are_recorded_in_order() -> None:
    text, records = parse_picks("[a | b]-[c | d]").render(random.Random(1))
    assert [r.alternatives for r in records] == [["a", "b"], ["c", "d"]]
    assert text == f"{records[0].value}-{records[1].value}"


# --- nesting -----------------------------------------------------------------------------


def test_nested_picks() -> None:
    assert set(outcomes("[a [big | small] dog | a cat]")) == {"a big dog", "a small dog", "a cat"}


def test_nested_pick_is_drawn_only_when_its_alternative_is_chosen() -> None:
    rng = random.Random(0)
    template = parse_picks("[a [big | small] dog | a cat]")
    for _ in range(50):
        text, records = template.render(rng)
        outer = records[0]
        assert outer.alternatives == ["a [big | small] dog", "a cat"]
        if outer.chosen == 1:
            assert text == "a cat" and len(records) == 1
        else:
            # The outer pick is recorded before the inner one and its value includes it.
            assert len(records) == 2 and records[1].alternatives == ["big", "small"]
            assert outer.value == text == f"a {records[1].value} dog"


def test_deep_nesting() -> None:
    assert set(outcomes("[[[a | b] | c] | d]", draws=600)) == {"a", "b", "c", "d"}


# --- weights -----------------------------------------------------------------------------


def test_weights_are_parsed_and_stripped() -> None:
    _, records = parse_picks("[3::common | rare | 0.5:: odd]").render(random.Random(0))
    assert records[0].weights == [3.0, 1.0, 0.5]
    assert records[0].alternatives == ["common", "rare", "odd"]


def test_weight_frequencies_follow_the_weights() -> None:
    counts = outcomes("[3::common | rare]", draws=20_000, seed=1234)
    assert 0.73 < counts["common"] / 20_000 < 0.77
    assert counts.keys() == {"common", "rare"}


def test_float_weights_frequencies() -> None:
    counts = outcomes("[0.5::a | 1.5::b | 2::c]", draws=20_000, seed=7)
    assert 0.105 < counts["a"] / 20_000 < 0.145
    assert 0.355 < counts["b"] / 20_000 < 0.395
    assert 0.48 < counts["c"] / 20_000 < 0.52


def test_weight_zero_is_never_chosen() -> None:
    for text in ("[0::never | always]", "[always | 0::never]", "[0::x | always | 0::y]"):
        assert set(outcomes(text, draws=2000)) == {"always"}


def test_weights_apply_inside_nested_picks() -> None:
    counts = outcomes("[x [0::a | b] | 0::y]", draws=300)
    assert set(counts) == {"x b"}


def test_weight_prefix_in_literal_group_is_text() -> None:
    assert parse_picks("[3::x]").render(random.Random(0))[0] == "[3::x]"


def test_all_zero_weights_is_an_error() -> None:
    with pytest.raises(PickSyntaxError) as info:
        parse_picks("pick [0::a | 0::b] now")
    assert info.value.position == 5
    assert "weight > 0" in str(info.value)


def test_negative_weight_is_an_error() -> None:
    with pytest.raises(PickSyntaxError) as info:
        parse_picks("[a | -2::b]")
    assert info.value.position == 5
    assert ">= 0" in str(info.value)


# --- escapes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"\[not a pick\]", "[not a pick]"),
        (r"a \| b", "a | b"),
        (r"back\\slash", "back\\slash"),
        (r"keep \n and \d", r"keep \n and \d"),
        ("trailing \\", "trailing \\"),
        (r"\\[a]", "\\[a]"),  # an escaped backslash, then a literal group
    ],
)
def test_escapes(text: str, expected: str) -> None:
    template = parse_picks(text)
    assert template.render(random.Random(0)) == (expected, [])
    assert not template.has_picks


def test_escapes_inside_alternatives() -> None:
    assert set(outcomes(r"[a\|b | \[c\] | d\\]")) == {"a|b", "[c]", "d\\"}
    _, records = parse_picks(r"[a\|b | c]").render(random.Random(0))
    assert records[0].alternatives == [r"a\|b", "c"]  # the source text, as written


def test_escaped_bracket_does_not_open_or_close() -> None:
    assert set(outcomes(r"[a\] | b\[]")) == {"a]", "b["}


# --- literal bracket groups --------------------------------------------------------------


@pytest.mark.parametrize("text", ["item [1]", "[]", "list[0] and [x]", "[ spaced ]", "[[nested]]"])
def test_group_without_pipe_is_literal(text: str) -> None:
    template = parse_picks(text)
    assert not template.has_picks
    assert template.render(random.Random(0))[0] == text


def test_pick_inside_literal_group_is_drawn() -> None:
    assert set(outcomes("[x [a|b]]")) == {"[x a]", "[x b]"}


def test_literal_group_inside_alternative() -> None:
    assert set(outcomes("[item [1] | item [2]]")) == {"item [1]", "item [2]"}


# --- Jinja regions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "{{ x | upper }}",
        "{{ items[0] }}",
        "{% if a | length > 1 %}x{% endif %}",
        "{% set pair = [1, 2] %}{{ pair[0] }}",
        "{# a [comment | here #}",
        "{{ {'k': [1, 2]}['k'][0] }}",
        "{{ '}}' | trim }}",
        "{{- x | default('[') -}}",
        "{{ x",  # unclosed: left for Jinja to report
    ],
)
def test_jinja_regions_are_opaque(text: str) -> None:
    template = parse_picks(text)
    assert not template.has_picks
    assert template.render(random.Random(0))[0] == text


def test_jinja_region_inside_alternative_is_copied_verbatim() -> None:
    assert set(outcomes("[{{ a | upper }} | b]")) == {"{{ a | upper }}", "b"}


def test_jinja_next_to_picks() -> None:
    counts = outcomes("{{ items[0] }}: [x | {% if y %}z{% endif %}] {{ a | b }}")
    assert set(counts) == {
        "{{ items[0] }}: x {{ a | b }}",
        "{{ items[0] }}: {% if y %}z{% endif %} {{ a | b }}",
    }


def test_escapes_are_not_processed_inside_jinja() -> None:
    assert parse_picks(r"{{ '\[' }}").render(random.Random(0))[0] == r"{{ '\[' }}"


def test_single_brace_is_text() -> None:
    assert set(outcomes("{[a | b]}")) == {"{a}", "{b}"}


def test_nested_escape_and_jinja_combination() -> None:
    text = r"[2::\[{{ t | upper }}\] [big | small] | 0::never | plain \| {{ x[1] }}]"
    counts = outcomes(text, draws=600)
    assert set(counts) == {
        "[{{ t | upper }}] big",
        "[{{ t | upper }}] small",
        "plain | {{ x[1] }}",
    }


# --- syntax errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("[a | b", 0),
        ("abc [a | b", 4),
        ("a ] b", 2),
        ("[a | b]]", 7),
        ("[x [a | b]", 0),
        ("x [a [b | c]", 2),
        ("{{ x }} [", 8),
        ("[a | {{ b ]", 0),  # the `]` is inside an (unclosed) Jinja region
    ],
)
def test_unbalanced_brackets(text: str, position: int) -> None:
    with pytest.raises(PickSyntaxError) as info:
        parse_picks(text)
    assert info.value.position == position
    assert info.value.text == text
    message = str(info.value)
    assert "\\[" in message or "\\]" in message  # says how to write the literal character


def test_pick_syntax_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unbalanced"):
        parse_picks("oops [")


# --- reproducibility and the rng contract ------------------------------------------------


def test_same_seed_same_picks() -> None:
    text = "[a [b | c] | d] [1::x | 2::y | 3::z] [p | q]"
    first = [parse_picks(text).render(random.Random(99)) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    rng_a, rng_b = random.Random(42), random.Random(42)
    assert [expand_picks(text, rng_a) for _ in range(30)] == [
        expand_picks(text, rng_b) for _ in range(30)
    ]


def test_different_seeds_differ() -> None:
    text = "[a | b | c | d | e | f | g | h]" * 4
    assert len({expand_picks(text, random.Random(seed))[0] for seed in range(20)}) > 1


def test_draws_use_only_the_given_rng() -> None:
    random.seed(0)
    before = random.getstate()
    expand_picks("[a | b]", random.Random(1))
    assert random.getstate() == before


def test_one_random_call_per_pick_drawn() -> None:
    class CountingRandom(random.Random):
        calls = 0

        def random(self) -> float:
            self.calls += 1
            return super().random()

    rng = CountingRandom(0)
    _, records = parse_picks("[a | b] [c [d | e] | f]").render(rng)
    assert rng.calls == len(records)


# --- the Template value and the cache ----------------------------------------------------


def test_template_is_immutable_and_hashable() -> None:
    template = parse_picks("[a | b]")
    assert isinstance(template, Template)
    assert template.has_picks and template.source == "[a | b]"
    with pytest.raises(AttributeError):
        template.source = "x"  # type: ignore[misc]
    assert hash(template) == hash(parse_picks("[a | b]"))


def test_expand_picks_matches_parse_and_render() -> None:
    text = "[a | b] and [c | d]"
    assert expand_picks(text, random.Random(8)) == parse_picks(text).render(random.Random(8))


def test_expand_picks_raises_every_time_for_bad_text() -> None:
    for _ in range(2):
        with pytest.raises(PickSyntaxError):
            expand_picks("[a | b", random.Random(0))
