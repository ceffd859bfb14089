"""A tree touches no file (DESIGN.md, "Security model"): the dummy provider's test options that
name one (`fail_while`, `batch_log`) are refused, before anything runs, unless the person
running sets GENARUN_DUMMY_FILES=1, as the test suite does (tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import PATIENCE

TREE = """\
genarun: 1
name: files
models:
  m: {{provider: dummy, id: m, options: {{{option}: "{path}"}}}}
nodes:
  - id: a
    kind: generate
    model: m
    prompt: a line about cats
"""


def _genarun(cwd: Path, *args: str, allow: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GENARUN_DUMMY_FILES"}
    if allow:
        env["GENARUN_DUMMY_FILES"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "genarun", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )


@pytest.mark.parametrize("option", ["batch_log", "fail_while"])
@pytest.mark.parametrize(
    "where", ["victim.txt", "sub/../victim.txt", "{tmp}/victim.txt", "~/genarun-victim.txt"]
)
def test_a_tree_cannot_name_a_file_through_the_dummy(
    tmp_path: Path, option: str, where: str
) -> None:
    path = where.format(tmp=tmp_path)
    (tmp_path / "t.yaml").write_text(TREE.format(option=option, path=path))
    for command in (["validate", "t.yaml"], ["run", "t.yaml", "--db", "g.db"]):
        done = _genarun(tmp_path, *command, allow=False)
        assert done.returncode == 2, done.stdout + done.stderr
        said = done.stdout + done.stderr
        assert "t.yaml:8 node 'a'" in said and option in said and "GENARUN_DUMMY_FILES=1" in said
        assert "Traceback" not in said
    assert not (tmp_path / "victim.txt").exists()
    assert not (Path.home() / "genarun-victim.txt").exists()
    assert not (tmp_path / "files").exists()  # nothing ran, no run folder


def test_the_person_running_allows_them(tmp_path: Path) -> None:
    log = tmp_path / "batches.log"
    (tmp_path / "t.yaml").write_text(TREE.format(option="batch_log", path=log))
    done = _genarun(tmp_path, "run", "t.yaml", "--db", "g.db", allow=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert log.read_text() == "generate 1\n"
