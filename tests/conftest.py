"""Shared fixtures for the core runner's tests: an isolated working folder, the CLI, trees."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from genarun.cli import main
from tests.helpers import TREES


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
