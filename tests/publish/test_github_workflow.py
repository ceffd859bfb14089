"""templates/github-actions/genarun.yml: its shell steps, run for real in a git repository with
a push to a local bare remote: the changed trees run, and their latest/ outputs and site
exports are committed (dated run folders are not)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import TREES

WORKFLOW = Path(__file__).resolve().parents[2] / "templates/github-actions/genarun.yml"
STEPS = {
    "Find the trees this push changed",
    "Run them and refresh their site exports",
    "Commit latest/ outputs and site exports",
}


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout


def _steps(before: str, sha: str) -> list[tuple[str, str]]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    out = []
    for step in workflow["jobs"]["run-trees"]["steps"]:
        if step.get("name") in STEPS:
            script = step["run"].replace("${{ github.event.before }}", before)
            script = script.replace("${{ github.sha }}", sha)
            script = script.replace("${{ github.ref_name }}", "main")
            assert "${{" not in script, script
            out.append((step["name"], script))
    assert len(out) == len(STEPS)
    return out


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_workflow_runs_changed_trees_and_commits_outputs(tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    repo = tmp_path / "repo"
    _git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    _git("init", "-q", "-b", "main", str(repo), cwd=tmp_path)
    for key, value in [("user.name", "t"), ("user.email", "t@example.com")]:
        _git("config", key, value, cwd=repo)
    _git("remote", "add", "origin", str(remote), cwd=repo)
    (repo / "trees").mkdir()
    shutil.copy(TREES / "blog.yaml", repo / "trees/blog.yaml")
    site_tree = (TREES / "site_blog.yaml").read_text().replace("site:\n", "site:\n  out: site\n")
    (repo / "trees/site_blog.yaml").write_text(site_tree)
    (repo / ".gitignore").write_text("trees/*/20*-*/\ngenarun.db*\n.genarun/\n")
    _git("add", "-A", cwd=repo)
    _git("commit", "-qm", "trees", cwd=repo)
    first = _git("rev-parse", "HEAD", cwd=repo).strip()
    _git("push", "-q", "origin", "main", cwd=repo)

    # A push that changes one tree.
    blog = repo / "trees/site_blog.yaml"
    blog.write_text(blog.read_text().replace("Notes on keeping geckos", "Gecko notes, 2nd ed."))
    _git("commit", "-qam", "edit", cwd=repo)
    second = _git("rev-parse", "HEAD", cwd=repo).strip()

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "genarun").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m genarun "$@"\n')
    (bin_dir / "genarun").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "GENARUN_DB": str(repo / ".genarun/genarun.db"),
        "GENARUN_HOME": str(tmp_path / "home"),
    }
    for name, script in _steps(first, second):
        done = subprocess.run(
            ["bash", "-e", "-c", script], cwd=repo, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{name}: {done.stdout}\n{done.stderr}"
    assert (repo / ".genarun/changed.txt").read_text().split() == ["trees/site_blog.yaml"]

    committed = _git("ls-tree", "-r", "--name-only", "origin/main", cwd=repo).split()
    assert "trees/site_blog/latest/output.json" in committed
    assert "trees/site/site-data.json" in committed
    assert "trees/site/site-data.schema.json" in committed
    assert not [p for p in committed if re.match(r"trees/[^/]+/20\d\d-", p)]  # no dated runs
    assert not [p for p in committed if p.startswith("trees/blog/")]  # unchanged: not run
    message = _git("log", "-1", "--format=%s", "origin/main", cwd=repo)
    assert message.strip() == "genarun: outputs of 1 changed tree(s)"
