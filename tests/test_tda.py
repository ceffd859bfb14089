"""Topology of trajectories: persistence node and table, `genarun tda`, plots and exports."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from genarun.analysis import Diagrams, persistence_diagrams, wasserstein
from genarun.experiments.topology import trajectory_points
from genarun.store.db import Store
from tests.helpers import query


@pytest.fixture
def experiment(tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path) -> Path:
    result = cli("run", tree("cycle_experiment.yaml"))
    assert result.exit_code == 0, result.output
    return workdir / "genarun.db"


def test_persistence_node_stores_diagrams_of_each_trajectory(experiment: Path) -> None:
    rows = query(experiment, "SELECT * FROM persistence")
    assert len(rows) == 16
    store = Store(experiment)
    row = dict(rows[0])
    diagrams = Diagrams.from_json(json.loads(row["diagrams"]))
    points = trajectory_points(
        store, row["run_id"], row["node_id"], row["path"], row["embedding_model"]
    )
    # the stored diagram is ripser's on the stored embeddings of steps 0.. (not the start prompt)
    assert diagrams == persistence_diagrams(points, maxdim=1)
    assert json.loads(row["entropy"]) == pytest.approx(diagrams.entropy)
    assert row["points"] == len(points) and row["maxdim"] == 1
    output = query(
        experiment,
        "SELECT output FROM executions WHERE node_id = 'topology' AND run_id = ?",
        row["run_id"],
    )[0]
    summary = json.loads(output["output"])[row["embedding_model"]]
    assert summary["points"] == len(points) and len(summary["entropy"]) == 2


def test_tda_compute_skips_what_exists_and_compare_is_true_wasserstein(
    experiment: Path, cli: Callable[..., Result], workdir: Path
) -> None:
    result = cli("tda", "compute", "latest")
    assert result.exit_code == 0, result.output
    assert "0 diagrams computed, 16 already stored" in result.output
    assert (
        "8 diagrams computed, 0 already stored"
        in cli("tda", "compute", "latest", "--maxdim", "0", "--embedding", "dummy-embed").output
    )
    assert (
        "0 diagrams computed, 8 already stored"
        in cli("tda", "compute", "latest", "--maxdim", "0", "--embedding", "dummy-embed").output
    )
    out = workdir / "d.csv"
    result = cli(
        "tda", "compare", "latest", "--embedding", "dummy-embed", "--dim", "1", "--csv", out
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    labels = sorted({r["a"] for r in rows})
    assert len(labels) == 8 and len(rows) == 2 * 64
    # check one entry against the analysis library's optimal matching
    store = Store(experiment)
    stored = {
        r["run_id"][:8]: Diagrams.from_json(json.loads(r["diagrams"]))
        for r in query(
            experiment,
            "SELECT * FROM persistence WHERE embedding_model = 'dummy-embed' AND maxdim = 1",
        )
    }
    a, b = labels[0], labels[1]
    expected = wasserstein(stored[a[:8]].diagrams[1], stored[b[:8]].diagrams[1])
    got = next(
        float(r["distance"])
        for r in rows
        if r["a"] == a and r["b"] == b and r["metric"] == "wasserstein"
    )
    assert got == pytest.approx(expected, rel=1e-5)
    assert all(float(r["distance"]) == 0 for r in rows if r["a"] == r["b"])
    printed = cli("tda", "compare", "latest", "--embedding", "dummy-embed")
    assert "wasserstein" in printed.output and "bottleneck" in printed.output
    several = cli("tda", "compare", "latest")
    assert several.exit_code == 2 and "--embedding" in several.output
    store.close()


def test_plots_and_exports(experiment: Path, cli: Callable[..., Result], workdir: Path) -> None:
    pyarrow = pytest.importorskip("pyarrow.parquet")
    result = cli("tda", "plots", "latest", "--out", workdir / "plots")
    assert result.exit_code == 0, result.output
    names = {p.name for p in (workdir / "plots").iterdir()}
    for expected in (
        "entropy_H1_by_network.png",
        "entropy_H0_by_prompt.png",
        "entropy_H1_by_embedding-model.png",
        "drift_dummy-embed.png",
        "trajectories_2d_dummy-text-embed.png",
    ):
        assert expected in names
    assert sum(n.startswith("diagram_") for n in names) == 16

    run = query(
        experiment, "SELECT id, seed FROM runs WHERE bindings LIKE '%dummy-embed%' LIMIT 1"
    )[0]
    result = cli("export", "images", run["id"][:10], "--out", workdir / "imgs")
    assert result.exit_code == 0, result.output
    from PIL import Image

    first = sorted((workdir / "imgs").iterdir())[0]
    with Image.open(first) as img:
        meta = {k.removeprefix("genarun:"): v for k, v in img.text.items()}
    assert (
        meta["step"] == "0"
        and meta["model"] == "dummy-t2i"
        and meta["seed"]
        and meta["run"] == run["id"]
    )
    assert meta["prompt"] in ("a red fox", "a lighthouse at night")

    result = cli("export", "data", "latest", "--out", workdir / "data", "--format", "parquet")
    assert result.exit_code == 0, result.output
    invocations = pyarrow.read_table(workdir / "data" / "invocations.parquet")
    assert invocations.num_rows == 192 and {"step", "model", "kind", "seed", "stop_reason"} <= set(
        invocations.column_names
    )
    embeddings = pyarrow.read_table(workdir / "data" / "embeddings.parquet").to_pylist()
    assert len(embeddings[0]["vector"]) == embeddings[0]["dim"]
    diagrams = pyarrow.read_table(workdir / "data" / "persistence.parquet")
    assert set(diagrams.column("homology_dim").to_pylist()) == {0, 1}
    assert (
        cli("export", "data", "latest", "--out", workdir / "csv", "--format", "csv").exit_code == 0
    )
    header = (workdir / "csv" / "embeddings.csv").read_text().splitlines()[0]
    assert "vector" in header


def test_persistence_of_must_name_a_cycle_above(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    path = workdir / "bad.yaml"
    path.write_text(
        "genarun: 1\nname: bad\nnodes:\n  - id: traj\n    kind: cycle\n    network: [dummy-t2i, dummy-i2t]\n"
        "    start: a fox\n    steps: 3\n    embed: [dummy-embed]\n  - id: topo\n    kind: persistence\n    of: traj\n"
    )
    result = cli("run", path)
    assert result.exit_code == 2
    assert (
        "bad.yaml:12 node 'topo'" in result.output
        and "make this node a child of 'traj'" in result.output
    )


def test_a_stored_diagram_answers_only_for_its_metric_and_points(experiment: Path) -> None:
    from genarun.experiments.topology import DiagramKey, diagrams_for

    store = Store(experiment)
    row = dict(query(experiment, "SELECT * FROM persistence ORDER BY id LIMIT 1")[0])
    key = DiagramKey(row["run_id"], row["node_id"], row["path"], row["embedding_model"], row["maxdim"])
    points = trajectory_points(store, key.run_id, key.node_id, key.path, key.model)
    cosine, computed = diagrams_for(store, key, metric="cosine")
    assert not computed and cosine.metric == "cosine"
    # Asking under another metric computes (and stores) that metric's diagram instead.
    euclidean, computed = diagrams_for(store, key, metric="euclidean")
    assert computed and euclidean == persistence_diagrams(points, maxdim=1, metric="euclidean")
    assert diagrams_for(store, key, metric="euclidean") == (euclidean, False)
    # A diagram stored before the trajectory had all its steps is computed again.
    store.conn.exec_driver_sql("UPDATE persistence SET points = points - 1 WHERE id = (SELECT max(id) FROM persistence)")
    store.conn.commit()
    assert diagrams_for(store, key, metric="euclidean") == (euclidean, True)
    store.close()
