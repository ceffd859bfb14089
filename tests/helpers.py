"""Helpers shared by the tests (importable as `tests.helpers`; pytest puts the repo root on sys.path)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

TREES = Path(__file__).parent / "trees"


def genarun_subprocess(
    *args: object, cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `python -m genarun ARGS...` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "genarun", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def query(db: Path, sql: str, *params: object) -> list[sqlite3.Row]:
    """Rows from the SQLite file itself, read with the standard library, not our store."""
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()
