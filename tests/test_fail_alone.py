"""A node that keeps failing fails alone: what does not depend on it goes on, in its own run
and in the experiment's other runs; the failure says how to go on; resume retries it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import Result

from genarun.run.runner import RunOptions, run_tree
from tests.helpers import query

# `writer` picks the model of `broken` per run: `bad` fails every call while the file FLAG
# exists. `after` is a child of `broken`, `summary` reads it: neither can run where it failed.
# `lines` and its children `more` (a second wave, started after `broken` has failed) and
# `final` (reading them all) depend on nothing that fails.
FAULT_TREE = """\
genarun: 1
name: faults
seed: 1
models:
  good: {provider: dummy, id: dummy-llm}
  bad: {provider: dummy, id: dummy-llm, options: {fail_while: "FLAG"}}
matrix:
  writer: [good, bad]
nodes:
  - id: broken
    kind: generate
    model: "{{ writer }}"
    prompt: "a title"
    children:
      - id: after
        kind: generate
        model: good
        prompt: "after {{ broken }}"
  - id: lines
    kind: generate
    model: good
    foreach: range(3)
    prompt: "line {{ item }}"
    children:
      - id: more
        kind: generate
        model: good
        prompt: "more on {{ lines }}"
  - id: final
    kind: generate
    model: good
    prompt: "{{ more | join(' ') }}"
  - id: summary
    kind: generate
    model: good
    prompt: "{{ broken }} and {{ final }}"
"""

EVERYTHING = {"broken": 1, "after": 1, "lines": 3, "more": 3, "final": 1, "summary": 1}


def fault_tree(folder: Path) -> tuple[Path, Path]:
    """FAULT_TREE in `folder`, with its flag file present (the bad model failing)."""
    flag = folder / "fault.flag"
    flag.write_text("the bad model fails while this file exists")
    tree = folder / "faults.yaml"
    tree.write_text(FAULT_TREE.replace("FLAG", str(flag)))
    return tree, flag


def done_by_node(db: Path, run_id: str) -> Counter[str]:
    rows = query(db, "SELECT node_id FROM executions WHERE run_id = ? AND status = 'done'", run_id)
    return Counter(r["node_id"] for r in rows)


def check_failed_alone(db: Path, outcome: Any, reason: str = "fail_while") -> str:
    """The bad run failed at `broken` alone (its error says `reason`); the good run completed.
    The bad run's id."""
    assert outcome.status == "failed"
    by_writer = {run.bindings["writer"]: run for run in outcome.runs}
    good, bad = by_writer["good"], by_writer["bad"]
    assert done_by_node(db, good.id) == EVERYTHING
    assert done_by_node(db, bad.id) == {"lines": 3, "more": 3, "final": 1}
    failed = query(db, "SELECT node_id, error FROM executions WHERE status = 'failed'")
    assert [r["node_id"] for r in failed] == ["broken"]
    assert reason in failed[0]["error"], failed[0]["error"]
    statuses = {r["id"]: r["status"] for r in query(db, "SELECT id, status FROM runs")}
    assert statuses == {good.id: "completed", bad.id: "failed"}
    return bad.id


def check_resumed(db: Path, run_id: str, before: list[Any]) -> None:
    """The resumed run ran what had failed and what waited on it, and kept the rest."""
    assert done_by_node(db, run_id) == EVERYTHING
    kept = query(
        db,
        "SELECT id, node_id, path FROM executions WHERE run_id = ? AND node_id IN "
        "('lines', 'more', 'final') ORDER BY id",
        run_id,
    )
    assert [tuple(r) for r in kept] == [tuple(r) for r in before]
    assert query(db, "SELECT status FROM runs WHERE id = ?", run_id)[0]["status"] == "completed"


def fails_alone_then_resumes_on_ray(
    db: Path, tree: Path, flag: Path, cli: Callable[..., Result]
) -> None:
    """A Ray run of a fault tree: its broken node fails alone; with the fault fixed, `resume
    --executor ray` completes the run and keeps what had finished."""
    bad = check_failed_alone(db, run_tree(tree, RunOptions(executor="ray")))
    before = kept_rows(db, bad)
    flag.unlink()  # the fix
    resumed = cli("resume", bad[:8], "--executor", "ray")
    assert resumed.exit_code == 0, resumed.output
    check_resumed(db, bad, before)


def kept_rows(db: Path, run_id: str) -> list[Any]:
    return query(
        db,
        "SELECT id, node_id, path FROM executions WHERE run_id = ? AND node_id IN "
        "('lines', 'more', 'final') ORDER BY id",
        run_id,
    )


def test_a_failing_node_fails_alone_and_resume_retries_it(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    tree, flag = fault_tree(workdir)
    result = cli("run", tree)
    assert result.exit_code == 1, result.output
    # Where it failed, why, and how to go on once the cause is fixed.
    assert "broken" in result.output and "fail_while" in result.output
    assert "genarun resume" in result.output
    db = workdir / "genarun.db"
    outcome_runs = query(db, "SELECT id, bindings FROM runs")
    bad_id = next(r["id"] for r in outcome_runs if '"bad"' in r["bindings"])
    done = done_by_node(db, bad_id)
    assert done == {"lines": 3, "more": 3, "final": 1}
    before = kept_rows(db, bad_id)

    flag.unlink()  # the fix
    resumed = cli("resume", bad_id[:8])
    assert resumed.exit_code == 0, resumed.output
    check_resumed(db, bad_id, before)


def test_the_outcome_of_a_run_with_a_failing_node(workdir: Path) -> None:
    tree, _flag = fault_tree(workdir)
    outcome = run_tree(tree, RunOptions())
    check_failed_alone(workdir / "genarun.db", outcome)
