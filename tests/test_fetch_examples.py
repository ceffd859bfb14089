"""examples/weather and examples/hn-digest run offline against their fixture servers: in
process with the dummy models (fast), and as the README says, `python examples/.../offline.py`
on the tiny models (slow)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from genarun.run.runner import RunOptions, run_tree
from tests.helpers import query

REPO = Path(__file__).resolve().parents[1]


def fixture_module(example: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"offline_{example.replace('-', '_')}", REPO / "examples" / example / "offline.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_dummy_models(example: str, folder: Path) -> Path:
    """The example's tree with its models swapped for the instant dummy ones."""
    text = (REPO / "examples" / example / "tree.yaml").read_text()
    for model in ("tiny-gpt2", "tiny-sd"):
        assert model in text or example == "weather"
        text = text.replace(f": {model}", ": dummy")
    path = folder / f"{example}.yaml"
    path.write_text(text)
    return path


def test_weather_runs_against_its_fixture_server(tmp_path: Path) -> None:
    server = fixture_module("weather").fixture_server()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        outcome = run_tree(
            on_dummy_models("weather", tmp_path),
            RunOptions(db=tmp_path / "g.db", overrides={"base_url": url, "geocoding_url": url}),
        )
    finally:
        server.shutdown()
    assert outcome.status == "completed", outcome.failures
    out = json.loads((outcome.folder / "output.json").read_text())
    place = out["city"]["place"]
    assert place["value"]["name"] == out["city"]["value"]
    weather = place["weather"]["value"]
    assert isinstance(weather["temperature_2m"], float)
    assert place["weather"]["summary"].startswith(f"{out['city']['value']} (")
    requests = [
        json.loads(r["request"]) for r in query(tmp_path / "g.db", "SELECT request FROM responses")
    ]
    assert [r["url"] for r in requests] == [f"{url}/v1/search", f"{url}/v1/forecast"]


def test_hn_digest_runs_against_its_fixture_server(tmp_path: Path) -> None:
    server = fixture_module("hn-digest").fixture_server()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        outcome = run_tree(
            on_dummy_models("hn-digest", tmp_path),
            RunOptions(db=tmp_path / "g.db", overrides={"base_url": url, "count": 4}),
        )
    finally:
        server.shutdown()
    assert outcome.status == "completed", outcome.failures
    stories = json.loads((outcome.folder / "output.json").read_text())["top"]["story"]
    assert len(stories) == 4
    assert stories[3]["value"]["title"].startswith("Ask HN") and stories[3]["value"]["url"] is None
    for story in stories:
        assert story["summary"] and (outcome.folder / story["cover"]).is_file()


@pytest.mark.slow
@pytest.mark.parametrize("example", ["weather", "hn-digest"])
def test_offline_script_runs_the_example_on_tiny_models(example: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / example / "offline.py"), "--out", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **__import__("os").environ,
            "GENARUN_DB": str(tmp_path / "g.db"),
            "HF_HUB_OFFLINE": "1",
        },
    )
    assert done.returncode == 0, done.stderr
    assert "fixture server" in done.stderr
    runs = query(tmp_path / "g.db", "SELECT status FROM runs")
    assert [r["status"] for r in runs] == ["completed"]
