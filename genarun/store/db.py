"""SQLite storage: experiments, runs, executions, logs, embeddings.

Every finished execution is committed at once (WAL mode), so a crash, kill or Ctrl-C never loses
finished work, and two genarun processes can write one database at the same time.

A Store holds one sqlite3 connection. What a run does (create the schema, insert experiments,
runs, executions and logs, read back its own rows and cached executions) goes through it with
plain SQL from genarun/store/schema_sql.py, so a run never imports SQLAlchemy (a third of a
small run's start-up). Reading commands query the SQLAlchemy tables of genarun/store/tables.py
through `Store.conn`: a SQLAlchemy connection made on first use over the same sqlite3
connection, so both share its transactions. The tables are attributes of this module, loaded on
first access (`from genarun.store.db import runs` still works).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import operator
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genarun.errors import StoreError, did_you_mean
from genarun.redaction import redact_row, rows_left_as_they_are
from genarun.store import opening
from genarun.store.schema_sql import COLUMNS, DEFAULTS

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.engine import Connection, Engine

    from genarun.store.tables import document_vectors as document_vectors
    from genarun.store.tables import embeddings as embeddings
    from genarun.store.tables import executions as executions
    from genarun.store.tables import experiments as experiments
    from genarun.store.tables import logs as logs
    from genarun.store.tables import metadata as metadata
    from genarun.store.tables import persistence as persistence
    from genarun.store.tables import responses as responses
    from genarun.store.tables import runs as runs
    from genarun.store.tables import trajectories as trajectories
    from genarun.store.tables import trajectory_steps as trajectory_steps


def __getattr__(name: str) -> Any:
    """The SQLAlchemy tables (and their `metadata`), imported on first use."""
    if name.startswith("__"):
        raise AttributeError(name)
    from genarun.store import tables

    try:
        return getattr(tables, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


# Every column but the id, in the order record_executions writes them.
_COLUMNS = tuple(c for c in COLUMNS["executions"] if c != "id")
# Every column of a table, for SELECTs: the columns this genarun knows, never a newer one's.
_RUNS = ", ".join(COLUMNS["runs"])
_EXECUTIONS = ", ".join(COLUMNS["executions"])


_NONES = (None,) * len(_COLUMNS)


def _present(row: tuple[Any, ...]) -> tuple[bool, ...]:
    """Which of an execution row's values are not NULL."""
    return tuple(map(operator.is_not, row, _NONES))


@functools.lru_cache(maxsize=256)
def _insert_execution(present: tuple[bool, ...]) -> str:
    """The INSERT of an execution row with the columns marked present."""
    columns = list(itertools.compress(_COLUMNS, present))
    return f"INSERT INTO executions ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


DEFAULT_DB = "genarun.db"


def default_db_path() -> Path:
    """The database of a command without --db: $GENARUN_DB; else the project's, the nearest
    genarun.db in this folder or a folder above it (found as git finds its repository: a tree
    run from `trees/` or `examples/story/` uses the root's database, never a second one); else
    genarun.db here, which the first run creates."""
    named = os.environ.get("GENARUN_DB")
    if named:
        return Path(named)
    found = _database_above(Path(DEFAULT_DB), here_too=True)
    return Path(found) if found else Path(DEFAULT_DB)


def found_above(path: Path) -> bool:
    """Whether `path`, a database a command uses, was found in a folder above this one."""
    return not path.is_absolute() and len(path.parts) > 1 and path.parts[0] == ".."


def _database_above(path: Path, *, here_too: bool = False) -> str | None:
    """The nearest file named like `path` (relative) in a folder above this one (or this one,
    `here_too`), as a path from here. The search stops at a repository's root (a folder with
    .git: the project ends there) and never looks in the home folder or the file system's root,
    whose genarun.db would otherwise collect the runs of every project below it."""
    here = Path.cwd()
    stops = {Path.home(), Path(here.anchor)} if here != Path.home() else {Path(here.anchor)}
    for folder in (here, *here.parents):
        if folder in stops and folder != here:
            break
        candidate = folder / path
        if (here_too or folder != here) and candidate.is_file():
            return os.path.relpath(candidate, here)
        if (folder / ".git").exists():
            break
    return None


def new_id() -> str:
    return uuid.uuid4().hex


def now() -> float:
    return time.time()


def iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def path_key(path: Sequence[int]) -> str:
    return json.dumps(list(path))


class Store:
    """One SQLite database. Methods commit their own writes."""

    def __init__(self, db_path: Path | str | None = None, *, writing: bool = False):
        """Open (or create) a database; `writing`: the command will write to it, so a
        read-only one is refused at once, before any other effect."""
        self.path = Path(db_path) if db_path else default_db_path()
        memory = str(self.path) == ":memory:"
        # Read with the standard library first: damage and a newer schema are reported before
        # anything is written to the file.
        found = opening.inspect(self.path, COLUMNS) if not memory else None
        self.read_only = bool(found and found.read_only)
        if found and found.read_only and found.missing:
            raise opening.read_only_error(
                self.path, "written by an older genarun: open it once writable to upgrade it"
            )
        db: sqlite3.Connection | None = None
        try:
            if not memory and not found:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            db = opening.connect(self.path, found.mode if found else None)
            if not self.read_only:
                opening.sqlite_pragmas(db)
                opening.create_schema(db, missing=found.missing if found and found.exists else None)
                opening.record_version(db)
        except BaseException as exc:
            # No connection may outlive a failed open: one left open holds its locks for as
            # long as the process lives.
            if db is not None:
                db.close()
            if isinstance(exc, sqlite3.Error | UnicodeDecodeError):
                typed = opening.typed_error(self.path, self.read_only, exc)
                if typed is not None:
                    raise typed from None
            elif not isinstance(exc, OSError):
                raise
            reason = exc.strerror if isinstance(exc, OSError) else opening.reason(exc)
            if isinstance(exc, FileExistsError | NotADirectoryError):
                reason = "a folder on its path is a file"
            raise StoreError(
                f"cannot open the database {self.path}: {reason} "
                "(name another with --db or $GENARUN_DB)"
            ) from None
        self._db: sqlite3.Connection | None = db
        self._mode = found.mode if found else None
        if not memory:
            opening.remember(self.path, self)
        if writing and self.read_only:
            db.close()
            raise opening.read_only_error(self.path)
        self._engine: Engine | None = None
        self._conn: Connection | None = None
        self._grouped = False  # inside transaction(): writes wait for its commit
        # Rows that belong to an execution (a fetch's response), written with the next
        # executions in one commit: a commit per row cost more than the request (bench/fetch.py).
        self._deferred: list[tuple[str, dict[str, Any]]] = []

    @classmethod
    def existing(cls, db_path: Path | str | None = None, *, writing: bool = False) -> Store:
        """The store of a database that must exist already (commands that read runs, and
        those that continue one: rerun, resume): a missing file is a message, not a new empty
        database left in the current folder."""
        path = Path(db_path) if db_path else default_db_path()
        if str(path) != ":memory:" and not path.is_file():
            where = "" if path.is_absolute() else f" (in {Path.cwd()})"
            found = None if path.is_absolute() else _database_above(path)
            fix = (
                f"the nearest is {found}, in a folder above: add --db {found}"
                if found
                else "run a tree first, or point at one with --db or $GENARUN_DB"
            )
            raise StoreError(f"no database at {path}{where}: {fix}")
        return cls(path, writing=writing)

    @property
    def db(self) -> sqlite3.Connection:
        """The store's sqlite3 connection; opened again when used after `close()` (as the
        SQLAlchemy engine this replaced reconnected)."""
        if self._db is None:
            self._db = opening.connect(self.path, self._mode)
            if not self.read_only:
                opening.sqlite_pragmas(self._db)
        return self._db

    @property
    def engine(self) -> Engine:
        """A SQLAlchemy engine over this store's one sqlite3 connection (made on first use)."""
        if self._engine is None:
            from sqlalchemy import create_engine, event
            from sqlalchemy.pool import StaticPool

            db = self.db
            # One connection for both: SQL written here and SQLAlchemy's statements share its
            # transactions (a second connection would wait on this one's write lock). Returning
            # it to the pool must not roll back what the plain SQL left uncommitted.
            self._engine = create_engine(
                "sqlite://", creator=lambda: db, poolclass=StaticPool, pool_reset_on_return=None
            )
            event.listen(self._engine, "handle_error", opening.translate(self.path, self.read_only))
        return self._engine

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            self._conn = self.engine.connect()
        return self._conn

    def connect_another(self) -> sqlite3.Connection:
        """A second connection to the file, for another thread (the heartbeat's)."""
        other = opening.connect(self.path, None)
        opening.sqlite_pragmas(other)
        return other

    def close(self) -> None:
        if self._deferred and not self.read_only:
            with contextlib.suppress(Exception):
                self._write_deferred()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.rollback()  # what was not committed is dropped, as the pool did
            self._db.close()
            self._db = None

    # --- plain SQL on the store's connection ------------------------------------------------
    @contextlib.contextmanager
    def _typed(self) -> Iterator[None]:
        """SQLite's errors about the file (damage, read-only, disk full) become typed errors
        naming it."""
        try:
            yield
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            typed = opening.typed_error(self.path, self.read_only, exc)
            if typed is not None:
                raise typed from None
            raise

    def _sql(self, sql: str, params: Sequence[Any] = (), *, many: bool = False) -> sqlite3.Cursor:
        with self._typed():
            if many:
                return self.db.executemany(sql, params)
            return self.db.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a plain SQL SELECT, as dicts."""
        cursor = self.db.cursor()
        try:
            with self._typed():
                cursor.execute(sql, params)
                names = [d[0] for d in cursor.description]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            # A read that failed half-way (a damaged page) would otherwise keep its statement,
            # and with it a shared lock on the file, for as long as the error is referenced.
            cursor.close()

    def _commit(self) -> None:
        if self._conn is not None and self._conn.in_transaction():
            self._conn.commit()
        self.db.commit()

    def _rollback(self) -> None:
        if self._conn is not None and self._conn.in_transaction():
            self._conn.rollback()
        self.db.rollback()

    def _insert(self, table: str, rows: Sequence[dict[str, Any]]) -> sqlite3.Cursor:
        """INSERT rows into `table` (keys: its columns; SQLAlchemy's scalar defaults filled
        in), grouped by their key sets."""
        known, defaults = COLUMNS[table], DEFAULTS.get(table, {})
        cursor: sqlite3.Cursor | None = None
        full: list[dict[str, Any]] = [{**defaults, **row} for row in rows]
        names: tuple[str, ...]
        for names, group in itertools.groupby(full, key=_keys):
            unknown = [n for n in names if n not in known]
            if unknown:
                raise ValueError(f"{table} has no column {', '.join(unknown)}")
            sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
            cursor = self._write(sql, [tuple(row.values()) for row in group])
        assert cursor is not None, "rows to insert"
        return cursor

    # --- writes -------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Writes inside commit together (one commit, all or nothing) instead of one by one."""
        if self._grouped:
            yield
            return
        self._grouped = True
        try:
            yield
            self._commit()
        except BaseException:
            self._rollback()
            raise
        finally:
            self._grouped = False

    def _write(self, stmt: Any, rows: Any = None) -> Any:
        try:
            if isinstance(stmt, str):  # plain SQL: positional rows (a list: one per row)
                if isinstance(rows, list):
                    result: Any = self._sql(stmt, rows, many=True)
                else:
                    result = self._sql(stmt, rows or ())
            elif rows is not None:
                result = self.conn.execute(stmt, rows)
            else:
                result = self.conn.execute(stmt)
            if not self._grouped:
                self._commit()
        except BaseException:
            # Ctrl-C between insert and commit: roll back, so writing the rows again (the
            # executor flushes once more) cannot store them twice.
            self._rollback()
            raise
        return result

    def create_experiment(self, **values: Any) -> str:
        values.setdefault("id", new_id())
        values.setdefault("created", now())
        self._insert("experiments", [values])
        return str(values["id"])

    def create_run(self, **values: Any) -> str:
        values.setdefault("id", new_id())
        values.setdefault("started", now())
        values.setdefault("status", "running")
        self._insert("runs", [values])
        return str(values["id"])

    def update_run(self, run_id: str, **values: Any) -> None:
        # Secrets and their echoes are masked in every text written here (errors, summaries).
        values = redact_row(values)
        unknown = [n for n in values if n not in COLUMNS["runs"]]
        if unknown:
            raise ValueError(f"runs has no column {', '.join(unknown)}")
        if values:
            sets = ", ".join(f"{name} = ?" for name in values)
            self._write(f"UPDATE runs SET {sets} WHERE id = ?", (*values.values(), run_id))

    def record_executions(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert finished executions and commit them together."""
        # The hot write path (one row per execution): plain SQL with positional tuples goes
        # straight to sqlite3's executemany. Missing keys are NULL, as before.
        if not rows and not self._deferred:
            return
        with self.transaction():
            self._write_deferred()
            if rows:
                values = [tuple(map(row.get, _COLUMNS)) for row in rows]
                if not rows_left_as_they_are(_COLUMNS, values):  # one scan for the batch
                    values = [tuple(map(redact_row(row).get, _COLUMNS)) for row in rows]
                # NULL columns are left out of the INSERT (they are NULL all the same, no
                # executions column has a default): sqlite3 binds None only after looking for
                # an adapter, a failed attribute lookup each, and a row has half a dozen. Runs
                # of rows with the same NULLs go together, in order (row ids are unchanged).
                for present, group in itertools.groupby(values, key=_present):
                    self._write(
                        _insert_execution(present),
                        [tuple(itertools.compress(row, present)) for row in group],
                    )

    def defer_row(self, table: Table | str, row: dict[str, Any]) -> None:
        """Write `row` (already redacted) into `table` with the next executions, in their
        commit."""
        self._deferred.append((table if isinstance(table, str) else table.name, row))

    def _write_deferred(self) -> None:
        deferred, self._deferred = self._deferred, []
        for table, group in itertools.groupby(deferred, key=lambda item: item[0]):
            self._insert(table, [row for _table, row in group])

    def add_logs(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self._insert("logs", [redact_row(row) for row in rows])

    def add_embeddings(self, rows: Sequence[dict[str, Any]]) -> list[int]:
        # A NaN or zero vector is refused here, where every vector is written, rather than
        # found later by a distance that is NaN or a diagram that is wrong (`genarun doctor`
        # finds those written before this check).
        from genarun.store.vectors import check_vector

        for row in rows:
            check_vector(row)
        ids = []
        try:
            for row in rows:
                full = {**DEFAULTS["embeddings"], **row}
                names = ", ".join(full)
                cursor = self._sql(
                    f"INSERT INTO embeddings ({names}) VALUES ({', '.join('?' * len(full))})",
                    tuple(full.values()),
                )
                assert cursor.lastrowid is not None, "an INSERT of one row has a row id"
                ids.append(cursor.lastrowid)
            if not self._grouped:
                self._commit()
        except BaseException:
            if not self._grouped:
                self._rollback()
            raise
        return ids

    def copy_embeddings(
        self, ids: Iterable[int], *, run_id: str, node_id: str, path: str
    ) -> dict[int, int]:
        """Copy the embedding rows `ids` that belong to other runs to (run, node, path), in one
        transaction; returns each copy's new id by its old one (rows already the run's are
        left as they are)."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        rows = self.query(
            f"SELECT {', '.join(COLUMNS['embeddings'])} FROM embeddings "
            f"WHERE id IN ({', '.join('?' * len(wanted))}) AND run_id != ? ORDER BY id",
            (*wanted, run_id),
        )
        if not rows:
            return {}
        copies = [
            {
                **{k: v for k, v in r.items() if k != "id"},
                "run_id": run_id,
                "node_id": node_id,
                "path": path,
            }
            for r in rows
        ]
        with self.transaction():
            new_ids = self.add_embeddings(copies)
        return dict(zip((r["id"] for r in rows), new_ids, strict=True))

    # --- reads --------------------------------------------------------------------------
    def resolve_run(self, ref: str) -> dict[str, Any]:
        """A run by id, unique id prefix, `latest`, or its output folder (the one holding its
        run.json, as `genarun run` prints it)."""
        where = str(self.path)
        if where == DEFAULT_DB and not os.environ.get("GENARUN_DB"):  # perhaps the wrong folder
            where += " in this folder (--db or $GENARUN_DB name another database)"
        if ref.strip().lower() == "latest":
            latest = self.query(f"SELECT {_RUNS} FROM runs ORDER BY started DESC LIMIT 1")
            if not latest:
                raise StoreError(f"no runs in {where}")
            return latest[0]
        prefix = ref.strip().lower()
        run_json = Path(ref) / "run.json"
        if not re.fullmatch(r"[0-9a-f]+", prefix) and run_json.is_file():
            with contextlib.suppress(ValueError, AttributeError):
                prefix = str(json.loads(run_json.read_text()).get("run", ""))
        # Ids are hex: anything else (an empty string, LIKE's % and _) would match other runs.
        if not re.fullmatch(r"[0-9a-f]+", prefix):
            hint = " (did you mean `latest`?)" if did_you_mean(prefix, ["latest"]) else ""
            raise StoreError(
                f"'{ref}' is not a run{hint}: give `latest`, a run id or its first characters, or its output folder (see `genarun runs list`)"
            )
        rows = self.query(f"SELECT {_RUNS} FROM runs WHERE id LIKE ? LIMIT 6", (prefix + "%",))
        if not rows:
            raise StoreError(f"no run matches '{ref}' in {where} (see `genarun runs list`)")
        if len(rows) > 1:
            shown = ", ".join(r["id"][:12] for r in rows[:5])
            raise StoreError(
                f"'{ref}' matches several runs ({shown}...): give more characters of the id"
            )
        return rows[0]

    def list_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest runs with their execution counts and `paused` (when, or None)."""
        columns = ", ".join(f"runs.{name}" for name in COLUMNS["runs"])
        return self.query(
            f"SELECT {columns}, counts.executions, run_pauses.paused FROM runs LEFT OUTER JOIN "
            "(SELECT run_id, count(*) AS executions FROM executions GROUP BY run_id) AS counts "
            "ON counts.run_id = runs.id "
            "LEFT OUTER JOIN run_pauses ON run_pauses.run_id = runs.id "
            "ORDER BY runs.started DESC LIMIT ?",
            (limit,),
        )

    def run_executions(self, run_id: str) -> list[dict[str, Any]]:
        return self.query(
            f"SELECT {_EXECUTIONS} FROM executions WHERE run_id = ? ORDER BY id", (run_id,)
        )

    def run_logs(self, run_id: str) -> list[dict[str, Any]]:
        columns = ", ".join(COLUMNS["logs"])
        return self.query(f"SELECT {columns} FROM logs WHERE run_id = ? ORDER BY id", (run_id,))

    def runs_of_experiment(self, experiment_id: str) -> list[dict[str, Any]]:
        return self.query(
            f"SELECT {_RUNS} FROM runs WHERE experiment_id = ? ORDER BY started", (experiment_id,)
        )

    def embedding_vectors(self, ids: Iterable[int]) -> dict[int, Any]:
        import numpy as np

        ids = list(ids)
        rows = self.query(
            f"SELECT id, vector FROM embeddings WHERE id IN ({', '.join('?' * len(ids))})", ids
        )
        return {row["id"]: np.frombuffer(row["vector"], dtype="<f4") for row in rows}


def _keys(row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(row)
