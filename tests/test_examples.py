"""The examples and starter trees are real: they validate, and the README's demo runs offline
on the built-in tiny models, producing text, an image, a caption and an embedding."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from PIL import Image

from genarun.graph.compile import compile_tree
from genarun.run.runner import RunOptions, run_tree
from genarun.tree.discover import find_trees
from genarun.tree.validate import read_tree
from tests.helpers import TREES, query

REPO = Path(__file__).resolve().parents[1]
# Through find_trees, which skips what runs wrote: `make demo` leaves a run folder (a tree.yaml
# copy, output.json, logs.json, run.json) and latest/ under examples/story/ before `make test`.
EXAMPLES, NOT_TREES = find_trees(REPO / "examples")
TREE_FILES = sorted([*EXAMPLES, *REPO.glob("templates/*.yaml")])


def test_every_yaml_and_json_file_in_examples_is_a_tree() -> None:
    assert NOT_TREES == []
    assert {p.parent.name for p in EXAMPLES} >= {"story", "blog", "panic"}


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


def test_run_outputs_are_never_taken_for_trees(
    cli: Callable[..., Result], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run folders hold a copy of the tree and JSON files: searching for trees skips them
    (finished, latest/, an experiment's runs, a run killed before it wrote anything but its
    marker), and validate/run of such a folder, or a run writing into one, are refused."""
    trees = workdir / "trees"
    trees.mkdir()
    for name in ("matrix.yaml", "latest.yaml", "picks.yaml"):
        shutil.copy(TREES / name, trees / name)
    assert cli("run", trees / "matrix.yaml").exit_code == 0
    assert cli("run", trees / "latest.yaml").exit_code == 0
    # A run killed at once (kill -9): execute never returns, so nothing but the start is written.
    import genarun.run.runner as runner

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "execute_runs", killed)
    with pytest.raises(KeyboardInterrupt):
        run_tree(trees / "picks.yaml", RunOptions(db=workdir / "genarun.db"))
    monkeypatch.undo()
    killed_run = next((trees / "picks").iterdir())
    assert sorted(p.name for p in killed_run.iterdir()) == ["output.json", "run.json", "tree.yaml"]
    assert json.loads((killed_run / "output.json").read_text()) == {}  # nothing finished yet
    assert json.loads((killed_run / "run.json").read_text())["status"] == "running"

    found, others = find_trees(workdir)
    assert found == [trees / "latest.yaml", trees / "matrix.yaml", trees / "picks.yaml"]
    assert others == []
    result = cli("validate", trees)
    assert result.exit_code == 0, result.output
    assert "not trees" not in result.output

    runs_before = query(workdir / "genarun.db", "SELECT count(*) FROM runs")[0][0]
    experiment = next(p for p in (trees / "matrix").iterdir() if p.name != "latest")
    outputs = [
        trees / "latest-check" / "latest",
        experiment,
        next(p for p in experiment.iterdir() if p.is_dir()),
        trees / "matrix" / "latest",
        killed_run,
    ]
    for folder in outputs:
        for command in ("validate", "run", "graph"):
            result = cli(command, folder)
            assert result.exit_code == 2, (command, folder, result.output)
            assert f"{folder} is in the output folder of a run" in result.stderr
            assert "valid" not in result.stdout
    copy = trees / "latest-check" / "latest" / "tree.yaml"
    result = cli("run", copy)
    assert result.exit_code == 2
    assert "inside the output folder of a run" in result.stderr
    assert "run the tree itself" in result.stderr
    assert not (copy.parent / "latest-check").exists()
    assert query(workdir / "genarun.db", "SELECT count(*) FROM runs")[0][0] == runs_before
