"""The regular expressions a run's start compiles, kept compiled, as .pyc files keep modules.

Python's regex compiler (re._compiler) is pure Python. PyYAML's reader compiles NON_PRINTABLE
at import, a negated class spanning almost all of Unicode, and the compiler walks its 63,000
code points one by one: 57 M instructions, 7 % of a one-node `genarun run`, paid by every
process that reads YAML (libyaml's binding imports the reader too). With PyYAML's resolver,
click's platform and textwrap, and genarun's own patterns, compiling regular expressions was
about 12 % of a one-node run (issue 18 item 4, eighth pass in bench/RESULTS.md).

`python -m genarun.regex_programs_write` runs a one-node tree, records every pattern it
compiles, and writes the programs the compiler made for them (what `re._compiler.compile`
hands to `_sre.compile`) to genarun/regex_programs_data.py. `seed()` (genarun/__init__.py) puts them in
re's own cache, keyed as `re` keys what it compiled, before anything asks for them: a
`re.compile` of one of those patterns then returns the same Pattern its compiler would have
made (Patterns compare equal by flags and program; tests/test_regex_programs.py checks each).
The programs are used only on the interpreter that made them (version, `_sre.MAGIC`, code size,
byte order); anywhere else nothing is seeded and patterns compile as usual.
"""

from __future__ import annotations

import re
import sys
from typing import Any


def interpreter() -> tuple[Any, ...]:
    """What a stored program depends on: the interpreter and its regex engine."""
    import _sre

    return (tuple(sys.version_info[:3]), _sre.MAGIC, _sre.CODESIZE, sys.byteorder)


def seed() -> int:
    """Put the stored programs in re's cache; how many were added (0 on another interpreter)."""
    cache = getattr(re, "_cache", None)
    if not isinstance(cache, dict):
        return 0

    from genarun import regex_programs_data as data

    if interpreter() != data.MADE_WITH:
        return 0
    added = 0
    for stored in data.PROGRAMS:
        key = (type(stored[0]), stored[0], stored[1])
        if key not in cache:
            cache[key] = pattern_of(stored)
            added += 1
    return added


def pattern_of(stored: tuple[Any, ...]) -> re.Pattern[Any]:
    """The Pattern of a stored program, made as re._compiler.compile makes it."""
    import _sre

    pattern, _flags, final_flags, groups, groupindex, indexgroup, program = stored
    code = memoryview(bytes.fromhex(program)).cast("I" if _sre.CODESIZE == 4 else "H")
    compiled: re.Pattern[Any] = _sre.compile(
        pattern, final_flags, code.tolist(), groups, groupindex, indexgroup
    )
    return compiled
