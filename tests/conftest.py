"""Shared fixtures for the core runner's tests: an isolated working folder, the CLI, trees."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from genarun.cli import main
from tests.helpers import TREES, query

# The dummy provider's options that name a file (fail_while, batch_log) are for tests; the
# person running allows them (genarun/models/dummy.py). Processes the tests start inherit it.
os.environ["GENARUN_DUMMY_FILES"] = "1"


def _registry_contents() -> tuple[object, dict[str, dict[str, object]]]:
    from genarun import plugins

    reg = plugins.registry()
    return reg, {
        "kinds": dict(reg.kinds),
        "providers": dict(reg.providers),
        "catalog": dict(reg.catalog),
    }


@pytest.fixture(autouse=True)
def registry_is_not_leaked() -> Iterator[None]:
    """Fail a test that leaves the process-wide registry changed: registered fakes would leak
    into every later test. Register them in a copy (`monkeypatch.setattr(plugins, "_registry",
    ...)`, see tests/cycle_fakes.py:use_fakes)."""
    before = _registry_contents()
    yield
    reg, contents = _registry_contents()
    assert reg is before[0] and contents == before[1], (
        "this test changed genarun's process-wide plugin registry and left it changed"
    )


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


@pytest.fixture
def ran(workdir: Path, cli: Callable[..., Result]) -> Callable[..., str]:
    """Write a tree's text as NAME in the working folder, `genarun run` it (ARGS after the
    file) and give the new run's id; its database is workdir / "genarun.db"."""

    def run(name: str, text: str, *args: object) -> str:
        path = workdir / name
        path.write_text(text)
        result = cli("run", path, *args)
        assert result.exit_code == 0, result.output
        return str(query(workdir / "genarun.db", NEWEST_RUN)[0][0])

    return run


NEWEST_RUN = "SELECT id FROM runs ORDER BY started DESC, rowid DESC LIMIT 1"


# Slow tests are marked `slow` honestly: the summary names any unmarked test over this time.
SLOW_SECONDS = 8.0
_unmarked_slow: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.duration > SLOW_SECONDS and "slow" not in report.keywords:
        _unmarked_slow.append(f"{report.nodeid} ({report.duration:.1f} s)")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _unmarked_slow:
        terminalreporter.write_sep("-", f"over {SLOW_SECONDS:g} s and not marked slow")
        for line in _unmarked_slow:
            terminalreporter.write_line(line)
