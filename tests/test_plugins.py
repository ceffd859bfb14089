"""Third-party plugins, installed the way users install them: the two small packages under
tests/plugins/ (a node kind, `shout`; a model provider, `rot13`, with its catalog model) are
pip-installed into a folder, and genarun, run as a process with that folder on its path, finds
them through the `genarun.plugins` entry points."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import PATIENCE

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "tests" / "plugins"

TREE = """\
genarun: 1
name: plugged
seed: 3
models:
  writer: rot13-small
nodes:
  - id: title
    kind: generate
    model: writer
    prompt: "Hello plugin world"
    max_tokens: 2
    children:
      - id: loud
        kind: shout
        text: "{{ title }} again"
        marks: 3
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both plugins installed (from copies: building writes metadata beside the sources)."""
    work = tmp_path_factory.mktemp("plugins")
    sources = [shutil.copytree(p, work / p.name) for p in sorted(PLUGINS.iterdir()) if p.is_dir()]
    target = work / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            *map(str, sources),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return target


def genarun(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)])}
    env["GENARUN_HOME"] = str(cwd / "home")
    return subprocess.run(
        [sys.executable, "-m", "genarun", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow  # pip builds and installs two packages
def test_plugin_kind_and_provider_run_a_tree(site: Path, tmp_path: Path) -> None:
    (tmp_path / "plugged.yaml").write_text(TREE)
    ran = genarun(site, tmp_path, "run", "plugged.yaml", "--db", "g.db")
    assert ran.returncode == 0, ran.stderr
    output = json.loads((tmp_path / "plugged" / "latest" / "output.json").read_text())
    # rot13 of "Hello plugin world", cut to max_tokens 2 words; then shouted.
    assert output["title"]["value"] == "Uryyb cyhtva"
    assert output["title"]["loud"] == {"text": "URYYB CYHTVA AGAIN!!!", "words": 3}
    listed = json.loads(genarun(site, tmp_path, "models", "list", "--json").stdout)
    assert {"name": "rot13-small", "provider": "rot13"}.items() <= next(
        r for r in listed if r["name"] == "rot13-small"
    ).items()
    schema = json.loads(genarun(site, tmp_path, "schema").stdout)
    assert "shout" in json.dumps(schema)


@pytest.mark.slow
def test_plugin_kind_fields_are_validated_like_built_ins(site: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(TREE.replace("marks: 3", "markz: 3"))
    refused = genarun(site, tmp_path, "validate", "bad.yaml")
    assert refused.returncode == 2
    assert (
        "bad.yaml:16 node 'loud': unknown field 'markz' (did you mean 'marks'?)" in refused.stderr
    )
    assert "Traceback" not in refused.stderr


def test_providers_registered_on_first_read_keep_a_plugins_override() -> None:
    """The built-in providers register when providers or the catalog are first read; what a
    plugin added before then still overrides them, in the order it always had."""
    from genarun.models.dummy import DummyProvider
    from genarun.plugins import Registry, _load_builtins

    class Override(DummyProvider):
        pass

    reg = Registry()
    _load_builtins(reg)
    assert reg._deferred, "the built-in providers were registered before anyone read them"
    reg.add_provider(Override())
    eager = Registry()
    importlib.import_module("genarun.nodes.builtin").register(eager)
    importlib.import_module("genarun.models.builtin").register(eager)
    eager.add_provider(Override())
    assert list(reg.providers) == list(eager.providers)
    assert isinstance(reg.providers["dummy"], Override)
    assert list(reg.catalog) == list(eager.catalog)


def test_deferred_providers_are_whole_for_every_thread() -> None:
    """Threads that read the providers while a deferred registration runs wait for it: a Ray
    actor loading three models at once found none known ("unknown provider 'diffusers'")."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from genarun.models.dummy import DummyProvider
    from genarun.plugins import Registry

    reg = Registry()
    started = threading.Event()

    def register(r: Registry) -> None:
        started.set()
        time.sleep(0.2)  # importing the providers' modules takes a while
        r.add_provider(DummyProvider())

    reg.defer(register)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(lambda: sorted(reg.providers))
        started.wait(PATIENCE)
        later = [pool.submit(lambda: sorted(reg.providers)) for _ in range(3)]
        seen = [first.result(), *(f.result() for f in later)]
    assert seen == [["dummy"]] * 4
