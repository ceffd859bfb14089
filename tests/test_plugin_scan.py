"""genarun/plugin_scan.py: the entry points declared on sys.path, read from the distributions'
files, agree with importlib.metadata; a run scans with importlib.metadata only when a plugin may
be there, and loads a declared plugin as before (issue 18 item 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from genarun.plugin_scan import declared_entry_points


def test_the_declared_values_are_importlib_metadatas_for_every_group_installed() -> None:
    found = entry_points()
    groups = set(found.groups) | {"genarun.plugins", "pydantic", "no.such.group"}
    declared = declared_entry_points(groups)
    assert declared is not None
    for group in groups:
        assert declared[group] == {ep.value for ep in found.select(group=group)}, group


def _distribution(root: Path, name: str, entry_points_txt: str) -> None:
    info = root / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points_txt)


def test_a_distribution_on_the_path_is_read_like_importlib_metadata_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _distribution(
        tmp_path,
        "plug",
        "# a comment\n[console_scripts]\nplug = plug:main\n\n"
        "[genarun.plugins]\n  extra =  plug.kinds  \n[pydantic]\nlog = plug.pyd:plugin\n",
    )
    (tmp_path / "other.egg-info").write_text("an .egg-info file holds no entry points\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    declared = declared_entry_points(["genarun.plugins", "pydantic"])
    assert declared is not None
    assert "plug.kinds" in declared["genarun.plugins"]
    assert "plug.pyd:plugin" in declared["pydantic"]
    assert {ep.value for ep in entry_points(group="genarun.plugins")} <= declared["genarun.plugins"]


def test_where_files_could_be_missed_the_answer_is_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "packages.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("z-1.0.dist-info/entry_points.txt", "[genarun.plugins]\nz = z\n")
    with monkeypatch.context() as patch:
        patch.syspath_prepend(str(archive))
        assert declared_entry_points(["genarun.plugins"]) is None

    class Finder:  # finds distributions its own way
        def find_spec(self, *args: Any) -> None:
            return None

        def find_distributions(self, *args: Any) -> list[Any]:
            return []

    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, Finder()])
    assert declared_entry_points(["genarun.plugins"]) is None


PROBE = """\
import importlib.metadata as metadata, json, sys
calls = []
real = metadata.entry_points
metadata.entry_points = lambda *args, **kwargs: calls.append(kwargs) or real(*args, **kwargs)
from genarun.plugins import registry
from pydantic.plugin import _loader
kinds = registry().kinds
print(json.dumps({"calls": calls, "plug": "plugged" in kinds, "pydantic": _loader._plugins}))
"""


def _probe(path: list[str]) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([*path, *sys.path[1:]]))
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_no_plugin_declared_means_no_importlib_metadata_scan() -> None:
    found = _probe([])
    # Neither genarun's scan nor pydantic's (told there is none, as its scan would find).
    assert found == {"calls": [], "plug": False, "pydantic": {}}


STAND_IN = """\
import json, sys
from genarun.plugins import registry
registry()
loaded = "importlib.metadata" in sys.modules
from pydantic.plugin import _loader
told = _loader._plugins
_loader._plugins = None  # as if never told: pydantic scans, through the real module
plugins = list(_loader.get_plugins())
import importlib.metadata
print(json.dumps([loaded, told, plugins, hasattr(importlib.metadata, "distributions")]))
"""


def test_pydantic_is_told_without_importing_importlib_metadata_and_can_still_scan() -> None:
    """Where nothing imported importlib.metadata, pydantic's plugin loader is imported beside a
    stand-in (genarun.plugins._no_pydantic_plugins): nothing imports the real module, pydantic
    finds its answer, and a scan it makes after all reads the real entry points."""
    done = subprocess.run(
        [sys.executable, "-c", STAND_IN], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == [False, {}, [], True]


PLUGIN = """\
from genarun.nodes.template import KIND
from dataclasses import replace


def register(registry):
    registry.add_kind(replace(KIND, name="plugged"))
"""


def test_a_declared_plugin_is_found_by_importlib_metadata_and_loaded(tmp_path: Path) -> None:
    _distribution(tmp_path, "plugged", "[genarun.plugins]\nplugged = plugged_kinds\n")
    (tmp_path / "plugged_kinds.py").write_text(PLUGIN)
    found = _probe([str(tmp_path)])
    assert found["plug"] is True
    assert {"group": "genarun.plugins"} in found["calls"]
