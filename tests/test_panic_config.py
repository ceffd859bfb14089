"""PANIC-TDA experiment configs run as their equivalent trees (`genarun run config.json`,
`genarun convert`)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import yaml
from click.testing import Result

from tests.helpers import TREES, query


def copy(workdir: Path, name: str) -> Path:
    target = workdir / name
    shutil.copy(TREES / "panic" / name, target)
    return target


def test_readme_config_converts_to_the_equivalent_tree(
    cli: Callable[..., Result], workdir: Path
) -> None:
    result = cli("convert", copy(workdir, "readme_config.json"))
    assert result.exit_code == 0, result.output
    tree = yaml.safe_load(result.output)
    assert tree["models"] == {
        "FluxDev": "flux-dev",
        "Moondream": "moondream2",
        "Nomic": "nomic-text",
    }
    assert tree["matrix"] == {
        "network": [["FluxDev", "Moondream"]],
        "seed": [42, 56, 545654, 6545],
        "prompt": ["Test prompt 1"],
    }
    assert tree["vars"] == {"steps": 100}
    cycle = tree["nodes"][0]
    assert cycle["kind"] == "cycle" and cycle["embed"] == ["Nomic"]
    assert cycle["children"][0]["kind"] == "persistence"
    # The printed tree is a tree: its aliases pointed at the dummy models, it validates.
    tree["models"] = {"FluxDev": "dummy-t2i", "Moondream": "dummy-i2t", "Nomic": "dummy-embed"}
    (workdir / "converted.yaml").write_text(yaml.safe_dump(tree))
    checked = cli("validate", workdir / "converted.yaml")
    assert checked.exit_code == 0, checked.output


def test_readme_config_runs_on_dummy_models(cli: Callable[..., Result], workdir: Path) -> None:
    """PANIC-TDA's README config, its models swapped for the dummy ones (the real ones need
    weights), runs: 4 seeds -> 4 runs of one experiment, every step embedded, diagrams made."""
    config = json.loads((TREES / "panic" / "readme_config.json").read_text())
    config["networks"] = [["DummyT2I", "DummyI2T"]]
    config["embedding_models"] = ["Dummy"]
    config["max_length"] = 5
    path = workdir / "my_config.json"
    path.write_text(json.dumps(config))
    result = cli("run", path)
    assert result.exit_code == 0, result.output
    db = workdir / "genarun.db"
    runs = query(db, "SELECT seed, status, tree_text FROM runs ORDER BY seed")
    assert sorted(r["seed"] for r in runs) == [42, 56, 6545, 545654]
    assert {r["status"] for r in runs} == {"completed"}
    assert json.loads(runs[0]["tree_text"])["genarun"] == 1  # the converted tree is stored
    steps = query(db, "SELECT COUNT(*) AS n FROM trajectory_steps")[0]["n"]
    assert steps == 4 * 5
    diagrams = query(db, "SELECT DISTINCT embedding_model FROM persistence")
    assert [d["embedding_model"] for d in diagrams] == ["Dummy"]


def test_seed_count_and_every_embedder_per_run(cli: Callable[..., Result], workdir: Path) -> None:
    result = cli("run", copy(workdir, "dummy_config.json"))
    assert result.exit_code == 0, result.output
    db = workdir / "genarun.db"
    # 2 networks x seed_count 2 x 1 prompt; each run embedded by both embedders (not once per
    # embedder, as a matrix key would)
    runs = query(db, "SELECT seed FROM runs")
    assert sorted(r["seed"] for r in runs) == [0, 0, 1, 1]
    models = query(db, "SELECT model, COUNT(*) AS n FROM embeddings GROUP BY model ORDER BY model")
    assert [m["model"] for m in models] == ["Dummy", "Dummy2"]


def test_a_config_with_wrong_fields_names_each(cli: Callable[..., Result], workdir: Path) -> None:
    path = copy(workdir, "not_panic.json")
    result = cli("run", path)
    assert result.exit_code == 2
    out = result.output
    assert "not_panic.json:2: networks must be a non-empty list of networks, not a mapping" in out
    assert "not_panic.json:3: seeds[1] must be a whole number" in out
    assert "seeds[2] must be a whole number" in out
    assert "not_panic.json:4: prompts must be a non-empty list" in out
    assert "unknown embedding model 'Nomik' (did you mean 'Nomic'?)" in out
    assert (
        "'max_lenght' is not a field of a PANIC-TDA experiment config (did you mean 'max_length'?)"
        in out
    )
    assert "Traceback" not in out
    assert not (workdir / "genarun.db").exists()  # nothing written
    assert cli("convert", path).exit_code == 2


def test_unknown_model_names_get_a_did_you_mean(cli: Callable[..., Result], workdir: Path) -> None:
    path = workdir / "c.json"
    path.write_text(
        '{"networks": [["SDXLTurbo", "Moondrem"]], "seeds": [1], "prompts": ["a"],\n'
        ' "embedding_models": ["JinaClip"], "max_length": 3}'
    )
    result = cli("convert", path)
    assert result.exit_code == 2
    assert (
        "c.json:1: unknown generative model 'Moondrem' (did you mean 'Moondream'?)" in result.output
    )


def test_a_network_whose_models_do_not_fit_names_the_config_line(
    cli: Callable[..., Result], workdir: Path
) -> None:
    path = workdir / "c.json"
    path.write_text(
        '{\n "networks": [["DummyT2I", "DummyT2I"]],\n "seeds": [1],\n "prompts": ["a"],\n'
        ' "embedding_models": ["Dummy"],\n "max_length": 3\n}'
    )
    result = cli("run", path)
    assert result.exit_code == 2, result.output
    assert "c.json:2" in result.output
    assert not (workdir / "genarun.db").exists()


def test_convert_refuses_a_tree(cli: Callable[..., Result], workdir: Path) -> None:
    path = workdir / "t.json"
    path.write_text('{"genarun": 1, "name": "x", "nodes": []}')
    result = cli("convert", path)
    assert result.exit_code == 2
    assert "is not a PANIC-TDA experiment config" in result.output
    assert "genarun tree already" in result.output
