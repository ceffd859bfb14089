"""The schema a run writes with sqlite3 alone (genarun/store/schema_sql.py) is the schema of
the SQLAlchemy tables (genarun/store/tables.py): same tables, columns, indexes and defaults, so
files written either way read the same by old and new code."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, select

from genarun.store import schema_sql, tables
from genarun.store.db import Store


def test_the_generated_schema_matches_the_tables() -> None:
    expected = tables.schema()
    for name in ("COLUMNS", "TYPES", "DEFAULTS", "DDL"):
        assert getattr(schema_sql, name) == expected[name], (
            f"genarun/store/schema_sql.py is out of date with genarun/store/tables.py: run "
            f"`python -m genarun.store.tables` ({name} differs)"
        )


def _master(db: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        conn.close()
    return [(kind, name, sql) for kind, name, sql in rows]


def test_a_new_file_is_the_one_sqlalchemy_made(tmp_path: Path) -> None:
    """Byte for byte the same CREATE statements as `metadata.create_all` (the code before)."""
    by_sqlalchemy = tmp_path / "sa.db"
    engine = create_engine(f"sqlite:///{by_sqlalchemy}")
    tables.metadata.create_all(engine)
    engine.dispose()
    Store(tmp_path / "plain.db").close()
    assert _master(tmp_path / "plain.db") == _master(by_sqlalchemy)


def test_rows_written_without_sqlalchemy_read_back_through_it(tmp_path: Path) -> None:
    """A run's plain-SQL rows (defaults included) are what SQLAlchemy's reads return; rows
    SQLAlchemy inserted are what the plain reads return."""
    store = Store(tmp_path / "g.db")
    experiment = store.create_experiment(name="e")
    run = store.create_run(experiment_id=experiment, name="r", seed=3)
    store.record_executions(
        [{"run_id": run, "node_id": "n", "path": "[]", "kind": "template", "status": "done"}]
    )
    store.update_run(run, status="completed", summary='{"done": 1}')
    store.add_logs([{"run_id": run, "time": 1.0, "level": "info", "message": "hi"}])
    [embedding] = store.add_embeddings(
        [{"run_id": run, "model": "m", "dim": 1, "vector": b"\x00\x00\x80?"}]
    )
    sa = store.conn
    row = sa.execute(select(tables.runs).where(tables.runs.c.id == run)).mappings().one()
    assert (row["status"], row["seed"], row["summary"]) == ("completed", 3, '{"done": 1}')
    execution = sa.execute(select(tables.executions)).mappings().one()
    assert (execution["node_id"], execution["attempts"]) == ("n", None)  # as record_executions did
    assert sa.execute(select(tables.embeddings.c.item)).scalar_one() == 0
    # SQLAlchemy and plain SQL share one connection, so one transaction.
    with store.transaction():
        store._write(insert(tables.logs).values(run_id=run, time=2.0, level="info", message="x"))
        store.add_logs([{"run_id": run, "time": 3.0, "level": "info", "message": "y"}])
    assert [r["message"] for r in store.run_logs(run)] == ["hi", "x", "y"]
    assert store.run_executions(run)[0]["status"] == "done"
    assert store.embedding_vectors([embedding])[embedding].tolist() == [1.0]
    assert store.resolve_run(run[:6])["id"] == run
    assert store.list_runs()[0]["executions"] == 1
    store.close()


def test_a_failed_group_rolls_back_both_kinds_of_write(tmp_path: Path) -> None:
    store = Store(tmp_path / "g.db")
    run = store.create_run(name="r")
    with pytest.raises(RuntimeError), store.transaction():
        store._write(insert(tables.logs).values(run_id=run, time=2.0, level="info", message="x"))
        store.add_logs([{"run_id": run, "time": 3.0, "level": "info", "message": "y"}])
        raise RuntimeError("stop")
    assert store.run_logs(run) == []
    store.close()


def test_an_unknown_column_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "g.db")
    with pytest.raises(ValueError, match="runs has no column colour"):
        store.update_run("x", colour="red")
    with pytest.raises(ValueError, match="runs has no column colour"):
        store.create_run(name="r", colour="red")
    store.close()
