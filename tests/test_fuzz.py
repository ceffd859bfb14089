"""The fuzzer: hostile edits of the example and scenario trees never crash `genarun validate`.

Each case mutates a real tree (tests/fuzzing.py says how), writes it as YAML or JSON and runs
`genarun validate` on it in-process. Whatever the tree holds, validate must end with exit 0
(valid) or 2 (a message naming the problem), never an internal error, and within a time limit.

The default run is seeded (derandomized) and small. For a longer hunt:

    GENARUN_FUZZ_EXAMPLES=5000 GENARUN_FUZZ_SEED=7 pytest -q tests/test_fuzz.py

(GENARUN_FUZZ_SEED=random draws a fresh seed; hypothesis prints it with any failure.)
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from genarun.cli import main
from tests.fuzzing import corpus, mangled_texts, mutated_trees, set_args, tree_text
from tests.helpers import genarun_subprocess

EXAMPLES = int(os.environ.get("GENARUN_FUZZ_EXAMPLES", "60"))
SEED = os.environ.get("GENARUN_FUZZ_SEED", "")
# Validating a tree takes milliseconds (seconds on a loaded machine); past this it has hung.
TIME_LIMIT_S = 30.0
DEADLINE = timedelta(seconds=TIME_LIMIT_S)


class TimeLimitExceeded(BaseException):
    """Raised into a case that ran too long: a BaseException, so that the CLI's handler of
    internal errors does not turn it into an exit code."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise TimeLimitExceeded(f"validate ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _fuzz_settings(examples: int, deadline: timedelta | None = DEADLINE) -> settings:
    return settings(
        max_examples=examples,
        derandomize=not SEED,
        database=None,
        deadline=deadline,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
        print_blob=True,
    )


def _seeded(test):  # type: ignore[no-untyped-def]
    if SEED and SEED != "random":
        return seed(int(SEED))(test)
    return test


def check_validate(folder: Path, name: str, text: str, fmt: str, sets: list[str]) -> None:
    """`genarun validate` on this tree text: exit 0 or 2, no internal error, in time."""
    path = folder / f"{Path(name).stem}.{fmt}"
    path.write_text(text, encoding="utf-8")
    shown = text if len(text) < 3000 else text[:3000] + f"... ({len(text)} characters)"
    started = time.monotonic()
    try:
        with time_limit(TIME_LIMIT_S):
            result = CliRunner().invoke(main, ["validate", str(path), *sets])
    except TimeLimitExceeded:
        # Ends the test at once (no shrinking through more hangs); pytest shows this output.
        print(f"validate hung on a mutation of {name}, arguments {sets}:\n{shown}")
        raise
    elapsed = time.monotonic() - started
    assert result.exit_code in (0, 2), (
        f"validate exited {result.exit_code} on a mutation of {name}:\n{result.output}\n"
        f"exception: {result.exception!r}\narguments: {sets}\n--- tree ---\n{shown}"
    )
    assert "internal error" not in result.output and "Traceback" not in result.output, result.output
    if result.exit_code == 2:
        assert result.output.strip().startswith("error:"), result.output
    elif not sets:  # a valid tree also compiles and renders for `genarun graph` (no --set)
        with time_limit(TIME_LIMIT_S):
            graph = CliRunner().invoke(main, ["graph", str(path)])
        assert graph.exit_code == 0, f"{graph.output}\n{graph.exception!r}\n--- tree ---\n{shown}"
    assert elapsed < TIME_LIMIT_S, f"validate took {elapsed:.1f} s on a mutation of {name}"


@pytest.fixture
def fuzz_folder(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    monkeypatch.chdir(folder)
    monkeypatch.setenv("GENARUN_DB", str(folder / "genarun.db"))
    monkeypatch.setenv("GENARUN_HOME", str(folder / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("GENARUN_DEBUG", raising=False)
    return folder


def test_the_corpus_is_the_example_and_scenario_trees() -> None:
    names = set(corpus())
    assert "examples/blog/tree.yaml" in names and "tests/trees/picks.yaml" in names
    assert len(names) >= 30


@_seeded
@_fuzz_settings(EXAMPLES)
@given(case=mutated_trees(), fmt=st.sampled_from(["yaml", "json"]), data=st.data())
def test_validate_never_crashes_on_a_mutated_tree(
    fuzz_folder: Path, case: tuple[str, object], fmt: str, data: st.DataObject
) -> None:
    name, tree = case
    sets = data.draw(set_args(tree), label="--set")
    check_validate(fuzz_folder, name, tree_text(tree, fmt), fmt, sets)


@_seeded
@_fuzz_settings(EXAMPLES // 2)
@given(case=mangled_texts())
def test_validate_never_crashes_on_mangled_text(
    fuzz_folder: Path, case: tuple[str, str, str]
) -> None:
    """Character-level edits: syntax errors for the YAML and JSON readers and their messages."""
    name, text, fmt = case
    check_validate(fuzz_folder, name, text, fmt, [])


# No hypothesis deadline: the process's own timeout below is the limit. Starting a process and
# validating 12 trees took over the 30 s meant for one tree in-process on a slow, busy machine,
# and hypothesis then failed the run (reporting it as a RecursionError, the trees' repr).
@_seeded
@_fuzz_settings(max(1, EXAMPLES // 30), deadline=None)
@given(cases=st.lists(mutated_trees(), min_size=12, max_size=12))
def test_a_real_process_validates_mutated_trees(
    fuzz_folder: Path, cases: list[tuple[str, object]]
) -> None:
    """Mutated trees, all given to one `python -m genarun validate` process: it ends in time
    (each tree the in-process tests' limit) with 0 or 2 and no traceback (nothing in-process,
    such as click's runner, hides a crash)."""
    paths = []
    for i, (name, tree) in enumerate(cases):
        fmt = "json" if i % 2 else "yaml"
        path = fuzz_folder / f"{i}-{Path(name).stem}.{fmt}"
        path.write_text(tree_text(tree, fmt), encoding="utf-8")
        paths.append(path.name)
    timeout = TIME_LIMIT_S * len(paths)
    proc = genarun_subprocess("validate", *paths, cwd=fuzz_folder, timeout=timeout)
    assert proc.returncode in (0, 2), proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
