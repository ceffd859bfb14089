"""A Store opened in a process must not cost another connection of that process its SQLite
locks: POSIX drops every lock a process holds on a file when any descriptor of it is closed,
so looking at the database with a plain open+close let a writer in another process (a run's
worker) take it for the last user and delete the WAL under `genarun serve`'s connection."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from genarun.store.db import Store


def test_opening_a_store_keeps_the_locks_of_the_process_other_connections(
    tmp_path: Path,
) -> None:
    db = tmp_path / "g.db"
    Store(db, writing=True).close()
    reader = sqlite3.connect(db)
    assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reader.execute("SELECT count(*) FROM sqlite_master").fetchone()  # holds its shared lock
    Store(db).close()  # what every request of the server does
    wal = Path(f"{db}-wal")
    writer = (
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1])\n"
        "c.execute('CREATE TABLE IF NOT EXISTS probe (x)')\n"
        "c.execute('INSERT INTO probe VALUES (1)')\n"
        "c.commit()\n"
        "c.close()\n"
    )
    subprocess.run([sys.executable, "-c", writer, str(db)], check=True)
    # The other process was not the last user: the WAL stays, and this process sees its write.
    assert wal.exists()
    assert reader.execute("SELECT count(*) FROM probe").fetchone()[0] == 1
    reader.close()
