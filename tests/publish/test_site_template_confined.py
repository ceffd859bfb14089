"""A tree's `site.template` cannot have `export site` copy a folder from elsewhere on the
machine into the export (where `.env`, `.npmrc` and the like would be published with the
site): it names a shipped template or a folder inside the tree's own folder. Each payload
points at a folder outside holding a package.json and a secret; the tree is refused (exit 2)
by `run` or by `export site`, and the secret is in no exported file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

CANARY = "canary-site-template-7f3e9a"
PAYLOADS = [
    "OUTSIDE",  # the absolute path
    "../outside",
    "./../outside",
    "sub/../../outside",
    "~/outside",
    "~root/../tmp",
    "link",  # a link inside the tree's folder, to the folder outside
    "link/",
    "./link",
    "linkparent/outside",
    "..\\outside",
    "C:/outside",
]


def _plant(workdir: Path) -> Path:
    outside = workdir / "outside"
    outside.mkdir()
    (outside / "package.json").write_text('{"name": "t"}')
    (outside / ".env").write_text(f"API_KEY={CANARY}\n")
    (outside / "notes.txt").write_text(CANARY)
    project = workdir / "project"
    (project / "sub").mkdir(parents=True)
    (project / "link").symlink_to(outside)
    (project / "linkparent").symlink_to(workdir)
    return project


def _tree(project: Path, template: str) -> Path:
    tree = project / "tree.yaml"
    tree.write_text(
        "genarun: 1\nname: site\n"
        f"site: {{template: '{template}'}}\n"
        "nodes:\n  - id: page\n    kind: template\n    text: hello\n"
    )
    return tree


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_tree_cannot_export_a_folder_from_outside_it(
    cli: Callable[..., Result],
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    payload: str,
) -> None:
    project = _plant(workdir)
    monkeypatch.setenv("HOME", str(workdir))
    monkeypatch.chdir(project)  # relative paths resolved from here would leave the folder too
    template = payload.replace("OUTSIDE", str(workdir / "outside"))
    ran = cli("run", _tree(project, template))
    out = workdir / "export"
    if ran.exit_code == 0:
        exported = cli("export", "site", "latest", "--out", out)
        assert exported.exit_code == 2, exported.output
        assert "site.template" in exported.output, exported.output
    else:
        assert ran.exit_code == 2, ran.output
        assert "outside the tree's folder" in ran.output, ran.output
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert not [p for p in written if CANARY in p.read_text(errors="replace")], written
    assert not (out / ".env").exists() and not (out / "notes.txt").exists()


def test_a_template_inside_the_trees_folder_is_exported(
    cli: Callable[..., Result], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = workdir / "project"
    (project / "theme").mkdir(parents=True)
    (project / "theme" / "package.json").write_text('{"name": "theme"}')
    (project / "theme" / "index.txt").write_text("mine")
    monkeypatch.chdir(workdir)  # found from the tree's folder, not from where export runs
    assert cli("run", _tree(project, "theme")).exit_code == 0
    exported = cli("export", "site", "latest", "--out", workdir / "export")
    assert exported.exit_code == 0, exported.output
    assert (workdir / "export" / "index.txt").read_text() == "mine"
    assert os.path.exists(workdir / "export" / "public" / "data" / "site-data.json")
