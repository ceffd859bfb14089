"""Writes genarun/regex_programs_data.py: `python -m genarun.regex_programs_write`.

Records the patterns a one-node run compiles and stores the programs this interpreter's regex
compiler makes for them (genarun/regex_programs.py says why and how they are used). Run it
again after adding a regular expression that a run's start compiles, or on a new interpreter;
tests/test_startup.py fails while a one-node run still compiles one.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from genarun.regex_programs import interpreter


def program(pattern: str | bytes, flags: int) -> tuple[Any, ...]:
    """What re._compiler.compile passes to _sre.compile for a pattern, as stored."""
    import _sre
    from re import _compiler, _parser  # type: ignore[attr-defined]

    flags = int(flags)  # as re keys its cache: a RegexFlag is stored as its value
    parsed = _parser.parse(pattern, flags)
    code = _compiler._code(parsed, flags)
    groupindex = dict(parsed.state.groupdict)
    indexgroup: list[str | None] = [None] * parsed.state.groups
    for name, index in groupindex.items():
        indexgroup[index] = name
    words = b"".join(word.to_bytes(_sre.CODESIZE, sys.byteorder) for word in code)
    return (
        pattern,
        flags,
        flags | parsed.state.flags,
        parsed.state.groups - 1,
        groupindex,
        tuple(indexgroup),
        words.hex(),
    )


# The tree whose start is recorded: bench/startup.py's one-node tree (a template node).
ONE_NODE = """\
genarun: 1
name: one
seed: 1
nodes:
  - id: hello
    kind: template
    text: "Hello [world | there]"
"""

# Runs the tree as `genarun run` does, with the programs already stored taken out of re's cache
# (genarun/__init__.py seeded them), and prints every pattern compiled after that.
RECORD = """\
import re, runpy, sys
import genarun
from re import _compiler
re._cache.clear()
seen = []
compile = _compiler.compile
def recording(pattern, flags=0):
    if (pattern, flags) not in seen:
        seen.append((pattern, flags))
    return compile(pattern, flags)
_compiler.compile = recording
sys.argv = ["genarun", "run", "one.yaml", "--db", "one.db"]
try:
    runpy.run_module("genarun", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    assert not exc.code, exc.code
print(repr(seen))
"""


def recorded() -> list[tuple[str | bytes, int]]:
    """The patterns (and flags) a one-node run compiles, in the order it compiles them."""
    import ast
    import subprocess
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "one.yaml").write_text(ONE_NODE)
        done = subprocess.run(
            [sys.executable, "-c", RECORD], cwd=work, capture_output=True, text=True, check=True
        )
    seen = ast.literal_eval(done.stdout.splitlines()[-1])
    return [(p, f) for p, f in seen if isinstance(p, str | bytes) and not f & re.DEBUG]


def source(patterns: list[tuple[str | bytes, int]]) -> str:
    """The text of genarun/regex_programs_data.py for these patterns."""
    lines = [
        '"""Written by `python -m genarun.regex_programs_write` (see that module): do not edit."""',
        "",
        "from typing import Any",
        "",
        f"MADE_WITH: tuple[Any, ...] = {interpreter()!r}",
        "PROGRAMS: tuple[tuple[Any, ...], ...] = (",
    ]
    for pattern, flags in patterns:
        stored = program(pattern, flags)
        lines.append("    (")
        lines.extend(f"        {field!r}," for field in stored[:-1])
        hexed = stored[-1]
        lines.append("        (")
        lines.extend(f"            {hexed[i : i + 80]!r}" for i in range(0, len(hexed), 80))
        lines.append("        ),")
        lines.append("    ),")
    lines.append(")")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Record a one-node run's patterns and write their programs beside this module."""
    from pathlib import Path

    target = Path(__file__).with_name("regex_programs_data.py")
    patterns = recorded()
    target.write_text(source(patterns))
    # In the project's format (ruff format --check runs in `make lint`), where ruff is installed.
    import importlib.util
    import subprocess

    if importlib.util.find_spec("ruff") is not None:
        subprocess.run([sys.executable, "-m", "ruff", "format", "-q", str(target)], check=True)
    print(f"{target}: {len(patterns)} patterns, made with {interpreter()}")


if __name__ == "__main__":
    main()
