"""The light core: what needs an extra is refused at validation with the install to run, and
the core alone (a fresh venv, no torch) runs a dummy tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from genarun.extras import EXTRA_MODULES, missing_modules, module_available

ROOT = Path(__file__).resolve().parent.parent

IMAGE_TREE = """\
genarun: 1
name: painted
models:
  painter: tiny-sd
nodes:
  - id: title
    kind: template
    text: "A lighthouse"
    children:
      - id: cover
        kind: image
        model: painter
        prompt: "{{ title }}"
"""

DUMMY_TREE = """\
genarun: 1
name: dummytree
seed: 3
nodes:
  - id: plan
    kind: generate
    model: dummy
    prompt: "List 2 titles as a JSON array"
    parse: json
    children:
      - id: cover
        kind: image
        foreach: plan
        model: dummy
        prompt: "cover for {{ item }}"
        width: 16
        height: 16
"""


def hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make `import name` fail in this process, the way an absent library does."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_hidden_module_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert module_available("json")
    assert not module_available("genarun_no_such_library")
    hide(monkeypatch, "gudhi")
    assert missing_modules("tda", ("gudhi", "json")) == ["gudhi"]


def test_extras_match_pyproject() -> None:
    """Every extra genarun checks for is one pip knows, and `all` brings each of them."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert set(EXTRA_MODULES) <= set(extras)
    assert extras["all"] == [f"genarun[{','.join(EXTRA_MODULES)}]"]
    heavy = ("torch", "diffusers", "transformers", "ripser", "gudhi", "matplotlib", "ray")
    core = " ".join(project["dependencies"])
    assert not [name for name in heavy if name in core]


def test_local_model_without_local_extra_is_refused_at_validation(
    workdir: Path, cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = workdir / "painted.yaml"
    path.write_text(IMAGE_TREE)
    hide(monkeypatch, "diffusers", "torch")
    for command in ("validate", "run"):
        result = cli(command, path)
        assert result.exit_code == 2, result.output
        assert f"{path}:12 node 'cover': model 'painter' (provider diffusers)" in result.output
        assert "needs genarun[local] (torch, diffusers are not installed)" in result.output
        assert "pip install 'genarun[local]'" in result.output
        assert "Traceback" not in result.output
    assert not (workdir / "genarun.db").exists()
    assert not (workdir / "painted").exists()


def test_persistence_without_tda_extra_is_refused_at_its_kind_line(
    workdir: Path,
    cli: Callable[..., Result],
    tree: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tree("cycle_experiment.yaml")
    hide(monkeypatch, "gudhi")
    result = cli("validate", path)
    assert result.exit_code == 2, result.output
    assert (
        f"{path}:19 node 'topology': kind 'persistence' needs genarun[tda] (gudhi is not"
        " installed): pip install 'genarun[tda]'"
    ) in result.output


def test_commands_name_their_extra(
    workdir: Path, cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    hide(monkeypatch, "matplotlib", "pyarrow")
    result = cli("tda", "plots", "all", "--out", "plots")
    assert result.exit_code == 2
    assert "genarun tda plots needs genarun[tda] (matplotlib is not installed)" in result.output
    result = cli("export", "data", "all")
    assert result.exit_code == 2
    assert "genarun export data needs genarun[data] (pyarrow is not installed)" in result.output


def test_models_list_names_the_missing_extra(
    cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    hide(monkeypatch, "torch")
    rows = {r["name"]: r for r in json.loads(cli("models", "list", "--json").output)}
    assert rows["tiny-sd"]["needs_extra"] == "local"
    assert rows["dummy"]["needs_extra"] is None
    assert "needs genarun[local]" in cli("models", "list").output


@pytest.mark.slow
def test_core_install_runs_a_dummy_tree_without_torch(tmp_path: Path) -> None:
    """pip installs genarun alone from this source into a fresh venv (about 30 s from the
    registry's cache); the core then runs a dummy tree, and refuses a local model with the
    extra to install. Nothing of the repository is on the path: the installed copy runs."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    python = str(venv / "bin" / "python")
    installed = subprocess.run(
        [
            python,
            "-c",
            "import importlib.util as u; print([m for m in "
            "('torch', 'diffusers', 'transformers', 'ripser', 'matplotlib') if u.find_spec(m)])",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert installed.stdout.strip() == "[]"
    work = tmp_path / "work"
    work.mkdir()
    (work / "dummy.yaml").write_text(DUMMY_TREE)
    (work / "painted.yaml").write_text(IMAGE_TREE)
    genarun = str(venv / "bin" / "genarun")
    env["GENARUN_HOME"] = str(tmp_path / "home")
    ran = subprocess.run(
        [genarun, "run", "dummy.yaml", "--db", "g.db"],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    outputs = json.loads((work / "dummytree" / "latest" / "output.json").read_text())
    assert len(outputs["plan"]["cover"]) == 2
    for entry in outputs["plan"]["cover"]:
        assert (work / "dummytree" / "latest" / entry["value"]).stat().st_size > 0
    refused = subprocess.run(
        [genarun, "validate", "painted.yaml"], env=env, cwd=work, capture_output=True, text=True
    )
    assert refused.returncode == 2
    assert "needs genarun[local]" in refused.stderr and "Traceback" not in refused.stderr
