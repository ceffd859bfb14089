"""Every table holding rows of runs is found from the schema (genarun/store/run_rows.py), and
deleting an experiment, copying one (`export db`) and `doctor`'s orphans all go through it:
a run that asked a person (human requests and answers) and was paused once is deleted whole,
copied whole, and its rows are found as orphans when its run row is gone."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from genarun.store.run_rows import run_tables
from tests.helpers import query

GENARUN = Path(__file__).resolve().parent.parent / "genarun"

TREE = """\
genarun: 1
name: asks
seed: 4
nodes:
  - id: words
    kind: generate
    model: dummy
    prompt: "a word"
  - id: pick
    kind: human
    ask: choice
    question: "which?"
    options: [a, b]
"""


def test_every_table_defined_anywhere_is_in_the_metadata() -> None:
    """store/tables.py imports the modules that define tables of their own: a new one that it
    does not import would be missing from every database and from run_tables()."""
    from genarun.store.tables import metadata

    defined = {
        name
        for path in GENARUN.rglob("*.py")
        for name in re.findall(r'= Table\(\s*"(\w+)"', path.read_text())
    }
    assert len(defined) > 15 and defined == set(metadata.tables)


def test_the_tables_of_runs_are_all_that_hold_a_run_id_or_hang_on_one() -> None:
    names = [entry.table.name for entry in run_tables()]
    for table in (
        "executions",
        "logs",
        "embeddings",
        "trajectories",
        "trajectory_steps",
        "persistence",
        "responses",
        "assembled_requests",
        "human_requests",
        "run_pauses",
        "cluster_labels",
    ):
        assert table in names
    # A request's answers have no run_id: they belong to its run through the request.
    assert names.index("human_answers") > names.index("human_requests")
    assert "runs" not in names and "experiments" not in names


def _rows_of(db: Path, run_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in run_tables():
        sql = f"SELECT count(*) FROM {entry.table.name} WHERE {entry.where_sql('?')}"
        counts[entry.table.name] = query(db, sql, run_id)[0][0]
    return {name: n for name, n in counts.items() if n}


def _asked(workdir: Path, cli: Callable[..., Result]) -> tuple[Path, str]:
    (workdir / "tree.yaml").write_text(TREE)
    assert cli("run", "tree.yaml").exit_code == 0
    db = workdir / "genarun.db"
    (run_id,) = (row[0] for row in query(db, "SELECT id FROM runs"))
    assert cli("answer", run_id[:8], "pick", "a").exit_code == 0
    conn = sqlite3.connect(db)  # a pause row, as a paused run that was then stopped keeps
    with conn:
        conn.execute(
            "INSERT INTO run_pauses (run_id, paused, by) VALUES (?, 1.0, 'cli')", (run_id,)
        )
    conn.close()
    rows = _rows_of(db, run_id)
    assert {"human_requests", "human_answers", "run_pauses", "executions"} <= set(rows)
    return db, run_id


def test_deleting_an_experiment_removes_every_row_of_its_runs(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    db, run_id = _asked(workdir, cli)
    result = cli("experiments", "delete", "latest", "--yes")
    assert result.exit_code == 0, result.output  # was an internal error (a foreign key)
    assert _rows_of(db, run_id) == {}
    assert query(db, "SELECT count(*) FROM runs")[0][0] == 0


def test_export_db_copies_every_row_of_its_runs(workdir: Path, cli: Callable[..., Result]) -> None:
    db, run_id = _asked(workdir, cli)
    result = cli("export", "db", "latest", "--out", workdir / "copy.db")
    assert result.exit_code == 0, result.output
    assert _rows_of(workdir / "copy.db", run_id) == _rows_of(db, run_id)


def test_doctor_finds_and_removes_rows_of_a_run_that_is_gone(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    db, run_id = _asked(workdir, cli)
    conn = sqlite3.connect(db)  # foreign keys are off here: a run row lost to damage
    with conn:
        conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
    conn.close()
    found = cli("doctor")
    assert found.exit_code == 1
    for table in ("human_requests", "run_pauses", "executions"):
        assert (
            f" {table}: " in found.output
            and f"of run {run_id[:8]}, which is not in" in found.output
        )
    fixed = cli("doctor", "--fix")
    assert _rows_of(db, run_id) == {}, fixed.output
    assert cli("doctor").exit_code == 0
    assert "and 1 human_answers row hanging on them" in found.output  # a person's answer
    assert "removed 1 orphan human_requests row and 1 human_answers row" in fixed.output


def _foreign_keys_off(db: Path, sql: str, *args: object) -> None:
    conn = sqlite3.connect(db)  # as an older tool or the sqlite3 shell would
    with conn:
        conn.execute(sql, args)
    conn.close()


def test_doctor_finds_and_removes_answers_whose_request_is_not_there(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    db, run_id = _asked(workdir, cli)
    (request_id,) = query(db, "SELECT id FROM human_requests")[0]
    _foreign_keys_off(db, "DELETE FROM human_requests")
    found = cli("doctor", "--json")
    assert found.exit_code == 1, found.output  # was 0: answers of no request went unseen
    (finding,) = json.loads(found.output)["findings"]
    assert finding["check"] == "orphan" and finding["where"] == "human_answers"
    assert finding["message"] == (
        f"1 row of 1 human_requests row (request_id {request_id}) that is not in the database"
    )
    fixed = cli("doctor", "--fix")
    assert fixed.exit_code == 0, fixed.output
    assert "human_answers: removed 1 orphan human_answers row" in fixed.output
    assert query(db, "SELECT count(*) FROM human_answers")[0][0] == 0
    assert {"executions", "run_pauses"} <= set(_rows_of(db, run_id))  # the rest stays


def test_doctor_finds_and_removes_requests_for_a_node_the_tree_does_not_have(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    db, run_id = _asked(workdir, cli)
    assert cli("doctor").exit_code == 0  # a request for a node of the tree is none
    _foreign_keys_off(db, "UPDATE human_requests SET node_id = 'gone'")
    found = cli("doctor")
    assert found.exit_code == 1, found.output  # was 0
    assert (
        f"run {run_id[:8]} gone: 1 human_requests row for node 'gone', which the run's tree "
        "does not have, and 1 human_answers row hanging on them" in found.output
    )
    fixed = cli("doctor", "--fix")
    assert "removed 1 orphan human_requests row and 1 human_answers row" in fixed.output
    rows = _rows_of(db, run_id)
    assert "human_requests" not in rows and "human_answers" not in rows
    assert rows["executions"] == 2 and cli("doctor").exit_code == 0
