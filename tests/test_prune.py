"""`genarun experiments prune`: a tree's older experiments go, with their rows and folders."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.helpers import query

TREE = """genarun: 1
name: daily
seed: 1
nodes:
  - id: note
    kind: template
    text: "[a | b | c] {{ run.id }}"
"""

WAITING = """genarun: 1
name: daily
nodes:
  - id: ok
    kind: human
    ask: approve
    question: Publish?
"""


def test_prune_keeps_the_newest_the_waiting_and_deletes_the_rest(
    cli: Callable[..., Result], workdir: Path
) -> None:
    tree = workdir / "daily.yaml"
    tree.write_text(WAITING)
    assert cli("run", tree).exit_code == 0  # the oldest: waits for an answer
    tree.write_text(TREE)
    for _ in range(4):
        assert cli("run", tree).exit_code == 0
    other = workdir / "other.yaml"
    other.write_text(TREE.replace("name: daily", "name: other"))
    assert cli("run", other).exit_code == 0
    # A tree of the same name in another folder is another project: it keeps its own newest.
    (workdir / "sub").mkdir()
    (workdir / "sub" / "daily.yaml").write_text(TREE)
    assert cli("run", workdir / "sub" / "daily.yaml").exit_code == 0
    db = workdir / "genarun.db"
    before = query(
        db,
        "SELECT id, out_dir FROM experiments WHERE name = 'daily' AND tree_path = ? "
        "ORDER BY created",
        str(tree.resolve()),
    )
    assert len(before) == 5
    result = cli("experiments", "prune", "daily", "--keep", "2", "--yes")
    assert result.exit_code == 0, result.output
    left = [
        r["id"]
        for r in query(db, "SELECT id FROM experiments WHERE tree_path = ?", str(tree.resolve()))
    ]
    # the two newest, and the waiting one; the two between them are gone with their folders
    assert sorted(left) == sorted([before[0]["id"], before[3]["id"], before[4]["id"]])
    assert (workdir / "sub" / "daily" / "latest").is_dir()
    assert len(query(db, "SELECT id FROM experiments WHERE name = 'daily'")) == 4
    assert (
        f"keep    {before[0]['id'][:8]}" in result.output and "waits for a person" in result.output
    )
    for gone in before[1:3]:
        assert f"delete  {gone['id'][:8]}" in result.output
        assert not Path(gone["out_dir"]).exists()
        assert not query(db, "SELECT id FROM runs WHERE experiment_id = ?", gone["id"])
    assert "deleted 2 experiments of 'daily': 2 runs" in result.output
    assert all(Path(r["out_dir"]).is_dir() for r in (before[0], before[3], before[4]))
    assert (workdir / "daily" / "latest" / "output.json").is_file()
    assert len(query(db, "SELECT id FROM experiments WHERE name = 'other'")) == 1
    assert json.loads(cli("runs", "list", "--json").output)  # the database still reads
    again = cli("experiments", "prune", "daily", "--keep", "2", "--yes")
    assert again.exit_code == 0 and "nothing to delete" in again.output
    # By the tree's file: only its experiments; the waiting one still stays.
    by_file = cli("experiments", "prune", tree, "--keep", "1", "--yes")
    assert by_file.exit_code == 0, by_file.output
    assert f"delete  {before[3]['id'][:8]}" in by_file.output
    assert "the newest\n" in by_file.output and "deleted 1 experiment of " in by_file.output
    assert "': 1 run, 1 execution, " in by_file.output
    assert len(query(db, "SELECT id FROM experiments WHERE name = 'daily'")) == 3


def test_prune_asks_first_and_names_unknown_trees(
    cli: Callable[..., Result], workdir: Path
) -> None:
    tree = workdir / "daily.yaml"
    tree.write_text(TREE)
    for _ in range(2):
        assert cli("run", tree).exit_code == 0
    from click.testing import CliRunner

    from genarun.cli import main

    declined = CliRunner().invoke(
        main, ["experiments", "prune", "daily", "--keep", "1"], input="n\n"
    )
    assert declined.exit_code == 0 and "nothing was deleted" in declined.output
    assert len(query(workdir / "genarun.db", "SELECT id FROM experiments")) == 2
    unknown = cli("experiments", "prune", "dialy", "--keep", "1", "--yes")
    assert unknown.exit_code == 2 and "did you mean 'daily'?" in unknown.output
    assert cli("experiments", "prune", "daily", "--keep", "0").exit_code == 2


def _age(db: Path, experiment_id: str, days: float) -> None:
    """Make an experiment look `days` old (its created time moved back)."""
    import sqlite3
    import time

    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "UPDATE experiments SET created = ? WHERE id = ?",
            (time.time() - days * 86400, experiment_id),
        )
    conn.close()


def test_prune_older_than_keeps_the_young_and_the_newest_completed(
    cli: Callable[..., Result], workdir: Path
) -> None:
    tree = workdir / "daily.yaml"
    tree.write_text(WAITING)
    assert cli("run", tree).exit_code == 0  # waits for an answer, however old
    tree.write_text(TREE)
    for _ in range(4):
        assert cli("run", tree).exit_code == 0
    db = workdir / "genarun.db"
    ids = [r["id"] for r in query(db, "SELECT id FROM experiments ORDER BY created")]
    for experiment_id, days in zip(ids, (90, 60, 40, 20, 1), strict=True):
        _age(db, experiment_id, days)
    result = cli("experiments", "prune", "daily", "--older-than", "30d", "--yes")
    assert result.exit_code == 0, result.output
    left = {r["id"] for r in query(db, "SELECT id FROM experiments")}
    assert left == {ids[0], ids[3], ids[4]}  # the waiting one and the two younger than 30 days
    assert f"keep    {ids[3][:8]}" in result.output and "newer than 30d" in result.output
    assert "deleted 2 experiments of 'daily'" in result.output
    # Everything older than a week: the newest completed one stays all the same (latest/).
    for experiment_id in ids[3:]:
        _age(db, experiment_id, 10)
    result = cli("experiments", "prune", "daily", "--older-than", "1w", "--yes")
    assert result.exit_code == 0, result.output
    assert {r["id"] for r in query(db, "SELECT id FROM experiments")} == {ids[0], ids[4]}
    assert "the newest completed (latest/ copies it)" in result.output
    assert (workdir / "daily" / "latest" / "output.json").is_file()


def test_prune_with_keep_and_older_than_keeps_what_either_keeps(
    cli: Callable[..., Result], workdir: Path
) -> None:
    tree = workdir / "daily.yaml"
    tree.write_text(TREE)
    for _ in range(4):
        assert cli("run", tree).exit_code == 0
    db = workdir / "genarun.db"
    ids = [r["id"] for r in query(db, "SELECT id FROM experiments ORDER BY created")]
    for experiment_id, hours in zip(ids, (72, 48, 30, 2), strict=True):
        _age(db, experiment_id, hours / 24)
    result = cli("experiments", "prune", "daily", "--keep", "1", "--older-than", "36h", "--yes")
    assert result.exit_code == 0, result.output
    # the newest by count, the one 30 hours old by age; 48 and 72 hours old go
    assert {r["id"] for r in query(db, "SELECT id FROM experiments")} == set(ids[2:])
    assert "newer than 36h" in result.output
    # Both left are older than an hour, but both are among the two newest: nothing goes.
    result = cli("experiments", "prune", "daily", "--keep", "2", "--older-than", "1h", "--yes")
    assert result.exit_code == 0 and "nothing to delete" in result.output, result.output
    assert {r["id"] for r in query(db, "SELECT id FROM experiments")} == set(ids[2:])


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("30", "is not a duration; write a positive number and a unit"),
        ("30x", "is not a duration"),
        ("-2d", "is not a duration"),
        ("0d", "is not a duration"),
        ("d", "is not a duration"),
        ("thirty days", "is not a duration"),
    ],
)
def test_a_bad_duration_is_named_and_nothing_is_deleted(
    cli: Callable[..., Result], workdir: Path, value: str, why: str
) -> None:
    tree = workdir / "daily.yaml"
    tree.write_text(TREE)
    for _ in range(2):
        assert cli("run", tree).exit_code == 0
    result = cli("experiments", "prune", "daily", "--older-than", value, "--yes")
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '--older-than': {value!r} {why}" in result.output
    assert "90m (minutes), 12h (hours), 30d (days) or 2w (weeks)" in result.output
    assert len(query(workdir / "genarun.db", "SELECT id FROM experiments")) == 2


def test_prune_needs_keep_or_older_than_and_a_closed_input_is_no(
    cli: Callable[..., Result], workdir: Path
) -> None:
    tree = workdir / "daily.yaml"
    tree.write_text(TREE)
    for _ in range(2):
        assert cli("run", tree).exit_code == 0
    neither = cli("experiments", "prune", "daily", "--yes")
    assert neither.exit_code == 2
    assert "say what to keep: --keep N, --older-than DURATION (e.g. 30d), or both" in (
        neither.output
    )
    from click.testing import CliRunner

    from genarun.cli import main

    # No answer at all (stdin closed, as in a script without --yes): a no, not a crash.
    closed = CliRunner().invoke(main, ["experiments", "prune", "daily", "--keep", "1"], input="")
    assert closed.exit_code == 1, closed.output
    assert "nothing was changed" in closed.output and "internal error" not in closed.output
    assert len(query(workdir / "genarun.db", "SELECT id FROM experiments")) == 2
