"""`export db` reads a database file someone may have sent: its table and column names are
its author's. They never become SQL (genarun/store/identifiers.py): a table whose columns are
not genarun's schema is refused with a message naming it, before the target file is made."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.helpers import query

TREE = "genarun: 1\nname: picks\nnodes:\n  - id: word\n    kind: template\n    text: '[x | y]'\n"
# A column list that ends early and starts a query of its own: before, it copied every
# experiment of the file (not the one asked for) with an output folder of its choosing.
ALL_EXPERIMENTS = (
    "out_dir) SELECT id, name, tree_path, tree_hash, matrix, created, '/home/victim' "
    "FROM main.experiments WHERE ? NOT NULL --"
)


@pytest.fixture
def two_experiments(workdir: Path, cli: Callable[..., Result]) -> tuple[Path, list[str]]:
    (workdir / "picks.yaml").write_text(TREE)
    for _ in range(2):
        assert cli("run", workdir / "picks.yaml").exit_code == 0
    db = workdir / "genarun.db"
    ids = [row["id"] for row in query(db, "SELECT id FROM experiments ORDER BY created")]
    return db, ids


def _add_column(db: Path, table: str, extra: str) -> None:
    """Add a column named `extra` to `table`."""
    conn = sqlite3.connect(db)
    with conn:
        quoted = '"' + extra.replace('"', '""') + '"'
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {quoted} TEXT")
    conn.close()


def _replace_last_column(db: Path, table: str, name: str) -> None:
    """Rename `table`'s last column to `name` (a table the file's author wrote by hand)."""
    conn = sqlite3.connect(db)
    with conn:
        last = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")][-1]
        quoted = '"' + name.replace('"', '""') + '"'
        conn.execute(f"ALTER TABLE {table} RENAME COLUMN {last} TO {quoted}")
    conn.close()


@pytest.mark.parametrize(
    ("table", "name"),
    [
        ("experiments", ALL_EXPERIMENTS),
        ("runs", 'x"y'),  # a quote: the statement broke as an internal error
        ("executions", "note) SELECT 1 --"),
        ("logs", "x]; DROP TABLE runs; --"),
        ("logs", "comment"),  # harmless, but not genarun's: the file was not written by it
    ],
)
def test_a_column_genarun_does_not_define_is_refused_and_nothing_is_written(
    two_experiments: tuple[Path, list[str]],
    cli: Callable[..., Result],
    workdir: Path,
    table: str,
    name: str,
) -> None:
    db, ids = two_experiments
    if name == ALL_EXPERIMENTS:
        _replace_last_column(db, table, name)
    else:
        _add_column(db, table, name)
    out = workdir / "copy.db"
    result = cli("export", "db", ids[1][:8], "--out", out)
    assert result.exit_code == 2, result.output
    assert f"its table '{table}' has a column genarun's schema does not define" in result.output
    assert ascii(name)[:20] in result.output
    assert "nothing was copied" in result.output and "Traceback" not in result.output
    assert not out.exists()
    assert len(query(db, "SELECT id FROM experiments")) == 2  # the source is left as it was


def test_a_table_name_that_is_sql_is_only_a_name(
    two_experiments: tuple[Path, list[str]], cli: Callable[..., Result], workdir: Path
) -> None:
    """Tables genarun does not know are not copied; their names never reach a statement
    (opening the file once called it damaged: 'You can only execute one statement')."""
    db, ids = two_experiments
    conn = sqlite3.connect(db)
    with conn:
        conn.execute('CREATE TABLE "a); SELECT (1" (x)')
        conn.execute('CREATE TABLE "runs""; --" (x)')
    conn.close()
    out = workdir / "copy.db"
    result = cli("export", "db", ids[1][:8], "--out", out)
    assert result.exit_code == 0, result.output
    assert [row["id"] for row in query(out, "SELECT id FROM experiments")] == [ids[1]]
    assert cli("runs", "list").exit_code == 0
