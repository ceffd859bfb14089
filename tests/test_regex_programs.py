"""The stored regex programs (genarun/regex_programs.py) are what this interpreter's compiler
makes, are used only where they were made, and never replace what re already holds."""

from __future__ import annotations

import re
from re import _compiler  # type: ignore[attr-defined]

import pytest

from genarun import regex_programs, regex_programs_data
from genarun.regex_programs_write import program, source

MADE_HERE = regex_programs.interpreter() == regex_programs_data.MADE_WITH
needs_this_interpreter = pytest.mark.skipif(
    not MADE_HERE,
    reason=f"programs made on {regex_programs_data.MADE_WITH}, this is "
    f"{regex_programs.interpreter()}: run `python -m genarun.regex_programs_write`",
)


@needs_this_interpreter
def test_each_stored_program_is_the_compilers() -> None:
    """Patterns compare equal by pattern, flags and program: each seeded Pattern is the one
    re._compiler makes from the same text and flags, and matches as it does."""
    assert len(regex_programs_data.PROGRAMS) > 20
    for stored in regex_programs_data.PROGRAMS:
        pattern, flags = stored[0], stored[1]
        # Made from the store as seed() makes it (what re's cache holds may have been evicted
        # by the time this runs: it keeps the newest 512).
        seeded = regex_programs.pattern_of(stored)
        fresh = _compiler.compile(pattern, flags)
        assert seeded == fresh, pattern
        assert (seeded.groups, seeded.groupindex) == (fresh.groups, fresh.groupindex)
        assert program(pattern, flags) == stored


@needs_this_interpreter
def test_pyyaml_reader_pattern_comes_from_the_store() -> None:
    import yaml.reader

    non_printable = yaml.reader.Reader.NON_PRINTABLE
    key = (str, non_printable.pattern, 0)
    assert any(row[:2] == key[1:] for row in regex_programs_data.PROGRAMS)
    assert non_printable == _compiler.compile(non_printable.pattern, 0)
    assert non_printable.search("ok\x07") and not non_printable.search("ok é ✓")


def test_seeding_keeps_what_re_holds_and_nothing_on_another_interpreter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache: dict[object, object] = {}
    monkeypatch.setattr(re, "_cache", cache)
    mine = object()
    if regex_programs_data.PROGRAMS:
        first = regex_programs_data.PROGRAMS[0]
        cache[type(first[0]), first[0], first[1]] = mine
    added = regex_programs.seed()
    assert added == (len(regex_programs_data.PROGRAMS) - 1 if MADE_HERE else 0)
    if regex_programs_data.PROGRAMS:
        assert cache[type(first[0]), first[0], first[1]] is mine
    cache.clear()
    monkeypatch.setattr(regex_programs_data, "MADE_WITH", ((3, 0, 0), 0, 4, "little"))
    assert regex_programs.seed() == 0
    assert cache == {}


def test_the_written_module_reads_back_as_the_programs() -> None:
    patterns: list[tuple[str | bytes, int]] = [
        ("(?P<word>[a-z]+)-(\\d+)", 0),
        (b"[^\\x00-\\x1f]+", 0),
        ("x  # a comment\n y", re.VERBOSE),
    ]
    namespace: dict[str, object] = {}
    exec(source(patterns), namespace)
    stored = namespace["PROGRAMS"]
    assert stored == tuple(program(p, f) for p, f in patterns)
    assert namespace["MADE_WITH"] == regex_programs.interpreter()
