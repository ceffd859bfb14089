"""`genarun experiments prune`: a tree's older experiments go, with their rows and folders."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

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
