"""Which database a command uses without --db: the project's, the nearest genarun.db in this
folder or above it, as git finds its repository. A tree run from a sub-folder (`cd trees`)
used to create a second genarun.db there, splitting the project's runs in two; reading
commands only named the one above."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.helpers import query

TREE = """\
genarun: 1
name: t
nodes:
  - id: a
    kind: template
    text: hi
  - id: pick
    kind: human
    ask: choice
    question: Which one?
    options: [red, blue]
"""


@pytest.fixture
def project(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder holding its database (made by a run at its root), and no $GENARUN_DB;
    the home folder is elsewhere. The temporary folder is fenced as a repository's root would
    be: a stray genarun.db in a folder above it (/tmp) is not the test's to find."""
    (workdir / ".git").mkdir()
    monkeypatch.delenv("GENARUN_DB")
    monkeypatch.setenv("HOME", str(workdir / "home"))
    root = workdir / "project"
    (root / "trees" / "blog").mkdir(parents=True)
    (root / "trees" / "blog" / "tree.yaml").write_text(TREE)
    monkeypatch.chdir(root)
    return root


def test_run_resume_rerun_answer_from_a_sub_folder_use_the_project_database(
    project: Path, cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = cli("run", "trees/blog/tree.yaml", "-q")
    assert first.exit_code == 0, first.output
    assert "database:" not in first.output  # the one here: nothing to say
    below = project / "trees" / "blog"
    monkeypatch.chdir(below)

    second = cli("run", "tree.yaml", "-q")
    assert second.exit_code == 0, second.output
    assert "database: ../../genarun.db (the project's, in a folder above)" in second.output
    assert not (below / "genarun.db").exists()
    assert len(query(project / "genarun.db", "SELECT id FROM runs")) == 2

    # every command that reads or writes runs uses it, from here
    assert cli("runs", "list").output.count(" t ") == 2
    assert "pick" in cli("inbox").output
    answered = cli("answer", "latest", "pick", "blue", "--resume")
    assert answered.exit_code == 0, answered.output
    rerun = cli("rerun", "latest", "--node", "a", "-q")
    assert rerun.exit_code == 0, rerun.output
    resumed = cli("resume", "latest")
    assert "nothing to resume" in resumed.output
    assert len(query(project / "genarun.db", "SELECT id FROM runs")) == 3
    assert not (below / "genarun.db").exists()


def test_without_a_project_database_the_first_run_makes_one_here(
    project: Path, cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project / "trees")
    listed = cli("runs", "list")
    assert listed.exit_code == 2 and "no database at genarun.db" in listed.output
    assert cli("run", "blog/tree.yaml", "-q").exit_code == 0
    assert (project / "trees" / "genarun.db").is_file()


def test_the_search_stops_at_a_repository_root_and_before_the_home_folder(
    project: Path, workdir: Path, cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A genarun.db above the repository, or in the home folder, belongs to no project here:
    it would collect the runs of every project below it."""
    (project / ".git").mkdir()
    workdir_db = workdir / "genarun.db"  # above the repository
    monkeypatch.chdir(workdir)
    assert cli("run", "project/trees/blog/tree.yaml", "-q").exit_code == 0
    assert workdir_db.is_file()
    monkeypatch.chdir(project / "trees" / "blog")
    assert cli("run", "tree.yaml", "-q").exit_code == 0
    assert (project / "trees" / "blog" / "genarun.db").is_file()  # not the one above .git

    home = workdir / "home"
    (home / "elsewhere").mkdir(parents=True)
    (home / "genarun.db").write_bytes(workdir_db.read_bytes())
    (home / "elsewhere" / "tree.yaml").write_text(TREE)
    monkeypatch.chdir(home / "elsewhere")
    assert cli("run", "tree.yaml", "-q").exit_code == 0
    assert (home / "elsewhere" / "genarun.db").is_file()


@pytest.mark.parametrize(
    "args",
    [("rerun", "latest", "--node", "a"), ("resume", "latest"), ("runs", "list"), ("inbox",)],
)
def test_commands_that_continue_runs_make_no_database_where_there_is_none(
    project: Path, cli: Callable[..., Result], args: tuple[str, ...]
) -> None:
    """rerun made an empty genarun.db before finding no run in it: a command that reads or
    continues runs says there is no database and leaves none behind."""
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert "error: no database at genarun.db" in result.output
    assert "run a tree first" in result.output
    assert not (project / "genarun.db").exists()
