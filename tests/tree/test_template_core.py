"""A string without Jinja syntax is compiled without Jinja (genarun/tree/template_core.py) and
gives what the Jinja path (templates.Text) gives: the same value, picks, names and errors; and
Jinja itself renders such a string unchanged."""

from __future__ import annotations

import random
from typing import Any

import pytest

from genarun.tree.template_core import (
    JINJA_MARKERS,
    Literal,
    PickText,
    TemplateProblem,
    attributes_read,
    compile_value,
    field_rng,
    has_jinja,
)
from genarun.tree.template_env import ENV
from genarun.tree.templates import Text

# Everything near Jinja's syntax that is not Jinja's syntax, and the picks' own.
ALPHABET = ["{", "}", "%", "#", "-", "+", "[", "]", "|", "\\", "a", "b", " ", "\n", "\t", "é"]
EDGES = [
    "}}",
    "%} #}",
    "{ {x}",
    "{ %",
    "{-",
    "{+",
    "#{",
    "%{",
    "{}",
    "{a|b}",
    "[a | b]",
    "\\[a|b\\]",
    "[a|[b|c]]",
    "[a|b",
    "a]",
    "[]",
    "[a|]",
    "trailing\n",
    "[x|y] and { raw %}",
    "[" * 5000 + "a" + "]" * 5000,  # past Python's recursion: the same TemplateProblem
]


def _strings() -> list[str]:
    rng = random.Random(18)
    found = list(EDGES)
    while len(found) < 3000:
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 14)))
        if not has_jinja(text):
            found.append(text)
    return found


STRINGS = _strings()


def _outcome(make: Any, source: str) -> Any:
    try:
        compiled = make(source, "prompt")
    except TemplateProblem as exc:
        return ("problem", str(exc), exc.hint)
    values = []
    for seed in (1, 2, 3):
        picks: list[Any] = []
        value = compiled.evaluate({}, field_rng(seed, "prompt"), picks)
        values.append((value, picks))
    return (compiled.names, compiled.dynamic, attributes_read(compiled, "a"), values)


def test_the_jinja_markers_are_all_the_syntax_the_sandbox_reads() -> None:
    assert ENV.line_statement_prefix is None and ENV.line_comment_prefix is None
    assert (ENV.variable_start_string, ENV.block_start_string, ENV.comment_start_string) == (
        JINJA_MARKERS
    )


def test_strings_without_jinja_compile_without_it_and_as_jinja_did() -> None:
    for source in STRINGS:
        # Strings with neither picks nor escapes were literals before and are literals now.
        literal = not any(marker in source for marker in ("[", "\\"))
        try:
            compiled = compile_value(source, "prompt")
        except TemplateProblem:
            assert not literal
        else:
            assert isinstance(compiled, Literal if literal else PickText), source
        before = (lambda s, w: Literal(s)) if literal else Text
        assert _outcome(compile_value, source) == _outcome(before, source), source


def test_jinja_renders_a_string_without_its_syntax_unchanged() -> None:
    for source in STRINGS[:-1]:  # the last edge nests past what Jinja's compiler can read
        assert ENV.from_string(source).render({}) == source, source


def test_strings_with_jinja_still_compile_with_jinja() -> None:
    for source in ["{{ a }}", "x {% if a %}y{% endif %}", "[p|q] {# note #}", "{{- a -}}"]:
        assert isinstance(compile_value(source, "prompt"), Text)


def test_a_pick_syntax_error_is_the_same_problem() -> None:
    with pytest.raises(TemplateProblem) as new:
        compile_value("[a|b", "prompt")
    with pytest.raises(TemplateProblem) as old:
        Text("[a|b", "prompt")
    assert (str(new.value), new.value.hint) == (str(old.value), old.value.hint)
