"""The examples and starter trees are real: they validate, and the README's demo runs offline
on the built-in tiny models, producing text, an image, a caption and an embedding."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from genarun.graph.compile import compile_tree
from genarun.run.runner import RunOptions, run_tree
from genarun.tree.validate import read_tree

REPO = Path(__file__).resolve().parents[1]
TREE_FILES = sorted(
    [
        *REPO.glob("examples/**/*.yaml"),
        *REPO.glob("examples/**/*.json"),
        *REPO.glob("templates/*.yaml"),
    ]
)


@pytest.mark.parametrize("path", TREE_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_example_trees_validate_and_compile(path: Path) -> None:
    compiled = compile_tree(read_tree(path))
    assert compiled.nodes


def test_story_demo_runs_offline_on_tiny_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENARUN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tree = tmp_path / "story.yaml"
    shutil.copy(REPO / "examples/story/tree.yaml", tree)
    outcome = run_tree(tree, RunOptions(seed=3, db=tmp_path / "g.db"))
    assert outcome.status == "completed", outcome.failures

    output = json.loads((outcome.folder / "output.json").read_text())
    premise = output["premise"]
    assert premise["value"].startswith("A story about ")
    assert isinstance(premise["story"], str) and premise["story"]
    assert isinstance(premise["alt_text"], str) and premise["alt_text"]
    with Image.open(outcome.folder / premise["cover"]) as image:
        assert image.size == (64, 64)
        assert image.text["genarun:model"] == "painter"
    vector = output["story_vector"]
    assert vector["dim"] == 384  # minilm's real weights
    rows = (
        sqlite3.connect(tmp_path / "g.db")
        .execute("SELECT model, dim, length(vector) FROM embeddings")
        .fetchall()
    )
    assert rows == [("embedder", 384, 384 * 4)]
    assert (tmp_path / "story" / "latest" / "output.json").read_text() == (
        outcome.folder / "output.json"
    ).read_text()
