"""Opening a database file safely: its schema version, damage, and read-only files or folders.

Before a Store writes to a file, `inspect` reads it with the standard library: a file that is
not SQLite, or whose schema cannot be read, is reported as damaged, naming the file; a file
whose `PRAGMA user_version` is newer than SCHEMA_VERSION was written by a newer genarun and is
refused before anything is written to it (no table, column, WAL switch or version). A file
that cannot be opened for writing (the file or its folder is read-only) is opened read-only:
reading commands work, and the first write says why it cannot be done.

Errors that SQLite raises later, while reading a damaged page or writing to a file made
read-only, become typed errors naming the file (`typed_error`; `translate` is the same as
SQLAlchemy's `handle_error` hook).

The schema is created from genarun/store/schema_sql.py (the DDL of genarun/store/tables.py)
with the standard library alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from genarun.errors import StoreError
from genarun.store import schema_sql

# The layout this genarun reads and writes. 0: a database from before versions were recorded
# (upgraded in place by adding what is missing). Bump it when a change would mislead an older
# genarun (a column meaning something else, a table it must not write); adding columns or
# tables that older versions ignore needs no bump.
SCHEMA_VERSION = 1

_DAMAGE = ("malformed", "not a database", "encrypted", "corrupt", "decode")
_READ_ONLY = ("readonly", "read-only", "unable to open database file")
_opened: set[Path] = set()  # databases this command opened: checked when an error is a mystery
_stores: list[Any] = []  # their stores, closed when it ends (held: a dropped store's
# connection stays open, with its locks, until the garbage collector finds it)
_lock = threading.Lock()


class DatabaseDamaged(StoreError):
    """The file is not a SQLite database, or pages of it cannot be read."""


class DatabaseTooNew(StoreError):
    """Written by a newer genarun: refused before anything is written to it."""


class DatabaseReadOnly(StoreError):
    """A write to a database opened read-only (the file or its folder is not writable)."""


@dataclass(frozen=True)
class Inspection:
    """What a database file holds before it is opened: its version and what it lacks."""

    exists: bool
    version: int
    read_only: bool
    missing: list[str]  # tables or columns this genarun has and the file lacks
    mode: str | None = None  # how it opened: None (read and write), `ro` or `immutable`


def damaged(path: Path, cause: object) -> DatabaseDamaged:
    text = reason(cause)
    return DatabaseDamaged(
        f"the database {path} is damaged ({text}): restore it from a backup, or save what is "
        f"readable with `sqlite3 {path} .recover | sqlite3 recovered.db`; to start afresh, "
        "name another database with --db or $GENARUN_DB"
    )


def read_only_error(path: Path, cause: object = "") -> DatabaseReadOnly:
    why = f" ({reason(cause)})" if cause else ""
    return DatabaseReadOnly(
        f"cannot write to the database {path}: it or its folder is read-only{why}. Reading "
        "commands (runs, experiments, diff, export) work; to run, make the file and its folder "
        "writable, or copy it somewhere writable and point --db or $GENARUN_DB at the copy"
    )


def connect(path: Path, mode: str | None) -> sqlite3.Connection:
    """A sqlite3 connection to `path` opened in `mode`, as SQLAlchemy opened it before (a
    60 s busy wait; used from the thread that opened it and the run's writer threads)."""
    if mode is None:
        return sqlite3.connect(str(path), timeout=60, check_same_thread=False)
    return sqlite3.connect(uri(path, mode), uri=True, timeout=60, check_same_thread=False)


def uri(path: Path, mode: str | None) -> str:
    """A SQLite URI for `path`: mode None (read and write), `ro`, or `immutable`."""
    text = "file:" + quote(str(path.absolute()))
    if mode == "ro":
        return text + "?mode=ro"
    if mode == "immutable":
        return text + "?mode=ro&immutable=1"
    return text


def inspect(path: Path, columns: Mapping[str, Sequence[str]]) -> Inspection:
    """What the file holds, read with the standard library and never written; raises
    DatabaseDamaged or DatabaseTooNew."""
    # The file is looked at with stat and SQLite only, never opened by Python: closing any
    # descriptor of a database file drops every POSIX lock this process holds on it, so a
    # plain open+close here (each new Store) let another connection of this process (the
    # server's) lose its locks, and a writer in another process deleted the WAL under it.
    try:
        info = path.stat()
    except FileNotFoundError:
        return Inspection(False, 0, False, [])
    except OSError as exc:
        raise StoreError(
            f"cannot open the database {path}: {exc.strerror} "
            "(name another with --db or $GENARUN_DB)"
        ) from None
    if stat.S_ISDIR(info.st_mode):
        raise StoreError(
            f"cannot open the database {path}: it is a folder "
            "(name a file with --db or $GENARUN_DB)"
        )
    if not os.access(path, os.R_OK):
        raise StoreError(
            f"cannot open the database {path}: Permission denied "
            "(name another with --db or $GENARUN_DB)"
        )
    if info.st_size == 0:  # an empty file is a new database to SQLite
        return Inspection(False, 0, False, [])
    error: Exception | None = None
    # Without write access to the file and its folder (SQLite writes a journal beside it),
    # open it read-only: as WAL readers need a -shm file there, immutable is the last resort.
    writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    modes = [(None, False)] if writable else []
    for mode, read_only in (*modes, ("ro", True), ("immutable", True)):
        try:
            return _inspect_with(path, columns, mode, read_only)
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            if isinstance(exc, sqlite3.OperationalError) and _is_read_only(exc):
                error = exc
                continue  # try again read-only
            if "file is not a database" in str(exc):
                raise DatabaseDamaged(
                    f"cannot open the database {path}: file is not a database (not a SQLite "
                    "file; name another with --db or $GENARUN_DB)"
                ) from None
            raise damaged(path, exc) from None
    raise StoreError(f"cannot open the database {path}: {reason(error)}")


def _inspect_with(
    path: Path, columns: Mapping[str, Sequence[str]], mode: str | None, read_only: bool
) -> Inspection:
    conn = sqlite3.connect(uri(path, mode), uri=True, timeout=60)
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        tables = {
            # Names as bound parameters: a file's table names are its author's, never SQL.
            name: {r[0] for r in conn.execute("SELECT name FROM pragma_table_info(?)", (name,))}
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    finally:
        conn.close()
    if version > SCHEMA_VERSION:
        raise DatabaseTooNew(
            f"the database {path} was written by a newer genarun (schema version {version}; "
            f"this genarun knows {SCHEMA_VERSION}): upgrade genarun (pip install -U genarun) to "
            "use it; it was not changed. To keep using this version, name another database "
            "with --db or $GENARUN_DB"
        )
    missing = []
    for table, names in columns.items():
        have = tables.get(table)
        if have is None:
            missing.append(table)
        else:
            missing += [f"{table}.{name}" for name in names if name not in have]
    return Inspection(True, version, read_only, missing, mode)


def record_version(db: sqlite3.Connection) -> None:
    """Stamp the file with SCHEMA_VERSION once its tables are up to date."""
    current = db.execute("PRAGMA user_version").fetchone()[0] or 0
    if current < SCHEMA_VERSION:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.commit()


def remember(path: Path, store: Any) -> None:
    with _lock:
        _opened.add(path)
        _stores.append(store)


def forget() -> None:
    """A command ended: close the stores it opened (a connection left open keeps its locks,
    which would block the next command run in the same process) and forget their files."""
    with _lock:
        stores = list(_stores)
        _stores.clear()
        _opened.clear()
    for store in stores:
        with contextlib.suppress(Exception):
            store.close()


def diagnose(error: BaseException | None = None) -> DatabaseDamaged | None:
    """After an unexpected `error`: a damaged database this process opened, if one is.

    Garbled bytes inside a stored value leave SQLite's pages sound (`quick_check` passes) but
    can turn JSON text into text that no longer parses, deep in any reader: genarun writes
    every stored JSON value with `json.dumps`, so such an error after opening a database is
    damage to its contents."""
    with _lock:
        paths = list(_opened)
    for path in paths:
        try:
            conn = sqlite3.connect(uri(path, "ro"), uri=True, timeout=5)
            try:
                result = conn.execute("PRAGMA quick_check").fetchall()
            finally:
                conn.close()
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            if isinstance(exc, sqlite3.OperationalError) and _is_read_only(exc):
                continue
            return damaged(path, exc)
        if result != [("ok",)]:
            return damaged(path, "; ".join(str(r[0]) for r in result[:3]))
    if isinstance(error, json.JSONDecodeError) and len(paths) == 1:
        return damaged(paths[0], f"a stored value is no longer valid JSON: {error}")
    return None


def typed_error(path: Path, read_only: bool, exc: BaseException) -> StoreError | None:
    """The typed error SQLite's error `exc` about the file is (damage, read-only, disk full),
    naming the file; None for the others (locked, busy, a missing column...)."""
    if isinstance(exc, UnicodeDecodeError):
        return damaged(path, "text that is not UTF-8")
    if not isinstance(exc, sqlite3.DatabaseError):
        return None
    text = reason(exc).lower()
    if isinstance(exc, sqlite3.OperationalError):
        if _is_read_only(exc) or (read_only and "attempt to write" in text):
            return read_only_error(path, exc)
        if "disk is full" in text or "disk i/o error" in text:
            return StoreError(
                f"cannot write to the database {path}: {reason(exc)} (free space, or "
                "name another database with --db); finished work is kept: "
                "`genarun resume` continues once it can write"
            )
        if "decode" not in text:
            return None  # locked, busy, a missing column...: not the file's fault
    if any(word in text for word in _DAMAGE):
        return damaged(path, exc)
    return None


def translate(path: Path, read_only: bool) -> Any:
    """A SQLAlchemy `handle_error` hook raising `typed_error`."""

    def hook(context: Any) -> None:
        typed = typed_error(path, read_only, context.original_exception)
        if typed is not None:
            raise typed from None

    return hook


def _is_read_only(exc: BaseException) -> bool:
    return any(word in reason(exc).lower() for word in _READ_ONLY)


def reason(exc: object) -> str:
    try:
        text = str(exc)
    except UnicodeDecodeError:  # SQLite's message quoted garbled bytes of the file
        text = "unreadable bytes"
    return text.encode("utf-8", "replace").decode()[:200]


# --- schema and connection settings ---------------------------------------------------------
def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Add columns that newer versions define to tables of an older database file."""
    for table, types in schema_sql.TYPES.items():
        present = {r[0] for r in db.execute("SELECT name FROM pragma_table_info(?)", (table,))}
        for column, kind in types.items():
            if column not in present:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def create_schema(db: sqlite3.Connection, missing: Sequence[str] | None = None) -> None:
    """Create what is missing (`missing`: what `inspect` found lacking in an existing file;
    None: a new file); processes opening a new database at once race on this, so the loser of
    a race (a column that already exists) looks again."""
    if missing is not None and not missing:
        return
    for attempt in range(10):
        try:
            for statement in schema_sql.DDL:
                db.execute(statement)
            _add_missing_columns(db)
            db.commit()
            return
        except sqlite3.OperationalError as exc:
            db.rollback()
            if attempt == 9 or not any(
                s in str(exc) for s in ("already exists", "duplicate column")
            ):
                raise
            time.sleep(0.02 * (attempt + 1))


def sqlite_pragmas(db: sqlite3.Connection) -> None:
    cursor = db.cursor()
    cursor.execute("PRAGMA busy_timeout=60000")
    _use_wal(cursor)
    # NORMAL in WAL mode is durable across process crashes (only an OS crash can lose the
    # last commits), and several times faster than FULL.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _use_wal(cursor: Any) -> None:
    """Switch the database to WAL mode (once: the mode is stored in the file). Switching needs
    the database to itself, and SQLite refuses at once, without waiting, while another process
    is creating it: wait and try again."""
    for attempt in range(200):
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 199:
                raise
            time.sleep(0.05)
