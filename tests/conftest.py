"""Shared fixtures for the core runner's tests: an isolated working folder, the CLI, trees."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from genarun.cli import main

TREES = Path(__file__).parent / "trees"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary working folder holding the database; the user's files are never touched."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENARUN_DB", str(tmp_path / "genarun.db"))
    monkeypatch.setenv("GENARUN_HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture
def tree(workdir: Path) -> Callable[[str], Path]:
    """Copy a scenario tree from tests/trees/ into the working folder (outputs go beside it)."""

    def copy(name: str) -> Path:
        target = workdir / Path(name).name
        shutil.copy(TREES / name, target)
        return target

    return copy


@pytest.fixture
def cli(workdir: Path) -> Callable[..., Result]:
    """Invoke `genarun ARGS...` in-process through click's runner."""
    runner = CliRunner()

    def invoke(*args: object) -> Result:
        return runner.invoke(main, [str(a) for a in args])

    return invoke


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
