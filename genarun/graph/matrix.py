"""The tree's matrix: its run count (refused over a limit) and `--set` values for its keys."""

from __future__ import annotations

import itertools
import json
import math
from typing import TYPE_CHECKING, Any

from genarun.errors import Problem, TreeError, did_you_mean
from genarun.tree.schema import seed_problem
from genarun.tree.validate import LoadedTree

if TYPE_CHECKING:
    from genarun.graph.compiled import CompiledTree

# The most runs a matrix may expand into unless `--max-runs` says more: a cross product grows
# fast (7 keys of 10 values: 10,000,000 runs), and is refused before it is expanded.
MAX_RUNS = 10_000


def matrix_size_problems(
    loaded: LoadedTree, matrix: dict[str, list[Any]], max_runs: int
) -> list[Problem]:
    """The matrix's run count, refused when over `max_runs` (counted, not expanded)."""
    runs = math.prod(len(values) for values in matrix.values())
    if runs <= max_runs:
        return []
    sizes = " x ".join(f"{len(values)} {key}" for key, values in matrix.items())
    return [
        Problem(
            f"matrix: {sizes} make {runs:,} runs, over the limit of {max_runs:,}",
            str(loaded.path),
            loaded.line(("matrix",)),
            hint=f"fix keys to one value with --set KEY=VALUE, or pass --max-runs {runs} "
            "if you mean to run them all",
        )
    ]


def check_matrix_sets(loaded: LoadedTree, overrides: dict[str, Any]) -> dict[str, Any]:
    """`--set KEY=VALUE` for matrix keys, as a user typed them: a value written as one of the
    key's values (`--set n=3` for "3") becomes that value; a seed must be one; a value that
    looks like a misspelling of one (`Photo` for `photo`) is an error. Any other value runs
    as given: a new prompt, a new network (a list), a new number. Returns the overrides to
    compile with."""
    file = str(loaded.path)
    out = dict(overrides)
    problems: list[Problem] = []
    for name, value in overrides.items():
        values = loaded.spec.matrix.get(name)
        if values is None:
            continue
        line = loaded.line(("matrix", name))
        if name == "seed" and seed_problem(value):
            problems.append(Problem(f"--set seed={value}: {seed_problem(value)}", file, line))
            continue
        canon = json.dumps(value, sort_keys=True, default=str)
        if any(json.dumps(v, sort_keys=True, default=str) == canon for v in values):
            continue
        same_text = [v for v in values if str(v) == str(value)]
        if same_text:
            out[name] = same_text[0]
            continue
        if not isinstance(value, str):  # a list, a number, a mapping: plainly a new value
            continue
        # Only a string can be a misspelling, and only of one of the key's string values
        # (`--set 'network=[painter, writer]'` is a new network, not a typo of another).
        texts = [v for v in values if isinstance(v, str)]
        close = [t for t in texts if t.casefold() == value.casefold()]
        hint = f"did you mean '{close[0]}'?" if close else did_you_mean(value, texts)
        if hint:
            problems.append(
                Problem(
                    f"--set {name}={value}: '{value}' is not a value of matrix key '{name}'",
                    file,
                    line,
                    hint=f"{hint} values: {', '.join(map(str, values))}",
                )
            )
    if problems:
        raise TreeError(problems)
    return out


def matrix_bindings(compiled: CompiledTree) -> list[dict[str, Any]]:
    """The values of each run of the matrix: one dict per combination ([{}] without one)."""
    keys = list(compiled.matrix)
    if not keys:
        return [{}]
    return [
        dict(zip(keys, combo, strict=True))
        for combo in itertools.product(*(compiled.matrix[k] for k in keys))
    ]
