"""Topology of trajectories: persistence node and table, `genarun tda`, plots and exports."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
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
    # Without --embedding: one matrix per embedding model (it used to ask to choose one).
    several = cli("tda", "compare", "latest")
    assert several.exit_code == 0, several.output
    assert (
        "diagrams of dummy-embed" in several.output
        and "diagrams of dummy-text-embed" in several.output
    )
    both = workdir / "both.csv"
    assert cli("tda", "compare", "latest", "--csv", both).exit_code == 0
    rows = list(csv.DictReader(both.open()))
    assert {r["embedding_model"] for r in rows} == {"dummy-embed", "dummy-text-embed"}
    # each side names its trajectory, to join with `export data`
    runs = {r["id"] for r in query(experiment, "SELECT id FROM runs")}
    assert {r["a_run_id"] for r in rows} <= runs and {r["b_node_id"] for r in rows} == {"traj"}
    store.close()


@pytest.mark.slow
def test_plots_and_exports(experiment: Path, cli: Callable[..., Result], workdir: Path) -> None:
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
    diagrams = {n for n in names if n.startswith("diagram_")}
    # each diagram's PNG has its data beside it as CSV
    assert sum(n.endswith(".png") for n in diagrams) == 16
    assert {n.removesuffix(".csv") for n in diagrams if n.endswith(".csv")} == {
        n.removesuffix(".png") for n in diagrams if n.endswith(".png")
    }

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
    invocations = pq.read_table(workdir / "data" / "invocations.parquet")
    assert invocations.num_rows == 192 and {"step", "model", "kind", "seed", "stop_reason"} <= set(
        invocations.column_names
    )
    embeddings = pq.read_table(workdir / "data" / "embeddings.parquet").to_pylist()
    assert len(embeddings[0]["vector"]) == embeddings[0]["dim"]
    diagrams = pq.read_table(workdir / "data" / "persistence.parquet")
    assert set(diagrams.column("homology_dim").to_pylist()) == {0, 1}
    assert (
        cli("export", "data", "latest", "--out", workdir / "csv", "--format", "csv").exit_code == 0
    )
    header = (workdir / "csv" / "embeddings.csv").read_text().splitlines()[0]
    assert "vector" in header
    # Drift from the start prompt in both definitions, so numbers compare with PANIC-TDA's.
    for row in embeddings:
        if row["step"] == -1:
            assert row["drift_cosine"] == pytest.approx(0, abs=1e-6)
        assert row["drift_euclidean"] == pytest.approx(np.sqrt(2 * row["drift_cosine"]))
    assert max(r["drift_euclidean"] for r in embeddings) > 1.0
    panic = cli("tda", "plots", "latest", "--out", workdir / "p2", "--drift", "euclidean")
    assert panic.exit_code == 0 and (workdir / "p2" / "drift_dummy-embed.png").is_file()


def test_persistence_of_may_name_a_sibling_cycle(cli: Callable[..., Result], workdir: Path) -> None:
    """`of:` names any cycle of the run (DESIGN.md's scope rule): a sibling waits for it, the
    dependency shows in `graph`, and a rerun of the cycle runs the sibling again."""
    path = workdir / "sibling.yaml"
    path.write_text(
        "genarun: 1\nname: sibling\nseed: 3\nnodes:\n  - id: topo\n    kind: persistence\n    of: traj\n"
        "  - id: traj\n    kind: cycle\n    network: [dummy-t2i, dummy-i2t]\n"
        "    start: a fox\n    steps: 6\n    embed: [dummy-embed]\n"
    )
    result = cli("run", path)
    assert result.exit_code == 0, result.output
    db = workdir / "genarun.db"
    rows = query(db, "SELECT * FROM persistence")
    assert [(r["node_id"], r["path"], r["points"]) for r in rows] == [("traj", "[]", 6)]
    topo = query(db, "SELECT status, output FROM executions WHERE node_id = 'topo'")[0]
    assert topo["status"] == "done" and json.loads(topo["output"])["dummy-embed"]["points"] == 6
    assert "traj -.-> topo" in cli("graph", path, "--format", "mermaid").output
    rerun = cli("rerun", "latest", "--node", "traj")
    assert rerun.exit_code == 0, rerun.output
    assert "topo" in rerun.output  # it depends on traj, so it runs again


def test_persistence_of_under_foreach_and_mistakes(
    cli: Callable[..., Result], workdir: Path
) -> None:
    cycle = (
        "    kind: cycle\n    network: [dummy-t2i, dummy-i2t]\n    start: '{{ item }}'\n"
        "    steps: 3\n    embed: [dummy-embed]\n"
    )
    # Beside the cycle in the same foreach: one diagram per item.
    good = workdir / "items.yaml"
    good.write_text(
        "genarun: 1\nname: items\nnodes:\n  - id: each\n    kind: group\n    foreach: [a fox, a cat]\n"
        "    children:\n      - id: traj\n"
        + cycle.replace("    ", "        ")
        + "      - id: topo\n        kind: persistence\n        of: traj\n"
    )
    result = cli("run", good)
    assert result.exit_code == 0, result.output
    rows = query(workdir / "genarun.db", "SELECT path FROM persistence ORDER BY path")
    assert [r["path"] for r in rows] == ["[0]", "[1]"]

    head = "genarun: 1\nname: bad\nnodes:\n"
    cases = {
        "typo.yaml": (
            head + "  - id: traj\n" + cycle + "  - id: topo\n    kind: persistence\n    of: trak\n",
            "typo.yaml:12 node 'topo'",
            "of: no node 'trak' in the tree (did you mean 'traj'?)",
        ),
        "outside.yaml": (
            head
            + "  - id: traj\n    foreach: [a, b]\n"
            + cycle
            + "  - id: topo\n    kind: persistence\n    of: traj\n",
            "outside.yaml:13 node 'topo'",
            "runs once per item of foreach 'traj', and this node does not",
        ),
        "below.yaml": (
            head
            + "  - id: topo\n    kind: persistence\n    of: traj\n    children:\n      - id: traj\n"
            + cycle.replace("    ", "        "),
            "below.yaml:6 node 'topo'",
            "of: 'traj' is inside this node's own subtree",
        ),
    }
    for name, (text, where, words) in cases.items():
        (workdir / name).write_text(text)
        result = cli("run", workdir / name)
        assert result.exit_code == 2, (name, result.output)
        assert where in result.output and words in result.output, result.output
        assert "Traceback" not in result.output


def test_a_stored_diagram_answers_only_for_its_metric_and_points(experiment: Path) -> None:
    from genarun.experiments.topology import DiagramKey, diagrams_for

    store = Store(experiment)
    row = dict(query(experiment, "SELECT * FROM persistence ORDER BY id LIMIT 1")[0])
    key = DiagramKey(
        row["run_id"], row["node_id"], row["path"], row["embedding_model"], row["maxdim"]
    )
    points = trajectory_points(store, key.run_id, key.node_id, key.path, key.model)
    cosine, computed = diagrams_for(store, key, metric="cosine")
    assert not computed and cosine.metric == "cosine"
    # Asking under another metric computes (and stores) that metric's diagram instead.
    euclidean, computed = diagrams_for(store, key, metric="euclidean")
    assert computed and euclidean == persistence_diagrams(points, maxdim=1, metric="euclidean")
    assert diagrams_for(store, key, metric="euclidean") == (euclidean, False)
    # A diagram stored before the trajectory had all its steps is computed again.
    store.conn.exec_driver_sql(
        "UPDATE persistence SET points = points - 1 WHERE id = (SELECT max(id) FROM persistence)"
    )
    store.conn.commit()
    assert diagrams_for(store, key, metric="euclidean") == (euclidean, True)
    store.close()


def test_exported_images_carry_the_steps_prompt_and_seed_not_the_matrix_values(
    experiment: Path, cli: Callable[..., Result], workdir: Path
) -> None:
    # The matrix keys here are named `prompt` and `seed`, as PANIC-TDA's are: they used to
    # overwrite the step's prompt (the caption it was painted from) and its invocation seed.
    from PIL import Image

    run = query(experiment, "SELECT id, bindings FROM runs LIMIT 1")[0]
    steps = {
        s["step"]: s
        for s in query(experiment, "SELECT * FROM trajectory_steps WHERE run_id = ?", run["id"])
    }
    assert cli("export", "images", run["id"][:8], "--out", workdir / "imgs").exit_code == 0
    second = next((workdir / "imgs").glob("*_step0002.png"))
    with Image.open(second) as img:
        meta = {k.removeprefix("genarun:"): v for k, v in img.text.items()}
    assert meta["prompt"] == steps[1]["value"]  # the caption step 2 was painted from
    assert meta["seed"] == str(steps[2]["seed"])  # the invocation's seed, not the run's
    bindings = json.loads(run["bindings"])
    assert json.loads(meta["matrix"]) == bindings and meta["start"] == bindings["prompt"]
    assert json.loads(meta["network"]) == bindings["network"]
    for fmt in ("jpeg", "webp"):
        assert (
            cli(
                "export", "images", run["id"][:8], "--out", workdir / fmt, "--format", fmt
            ).exit_code
            == 0
        )
        with Image.open(next((workdir / fmt).glob("*_step0002.*"))) as img:
            described = json.loads(img.getexif()[0x010E])
        assert described["prompt"] == steps[1]["value"] and described["seed"] == steps[2]["seed"]


def test_exported_tables_join_and_keep_their_columns_when_empty(
    experiment: Path, cli: Callable[..., Result], workdir: Path
) -> None:
    assert cli("export", "data", "latest", "--out", workdir / "data").exit_code == 0
    t = {
        name: pq.read_table(workdir / "data" / f"{name}.parquet").to_pylist()
        for name in ("runs", "trajectories", "invocations", "embeddings", "persistence", "entropy")
    }
    assert len(t["runs"]) == 16 and len(t["trajectories"]) == 16
    # the matrix values as columns, typed: seeds are numbers, networks JSON
    first = t["runs"][0]
    assert isinstance(first["matrix_seed"], int) and json.loads(first["matrix_network"])
    assert Path(first["folder"]).is_dir()
    # invocations <-> embeddings on (run, node, path, step); every step embedded by its model
    key = lambda r: (r["run_id"], r["node_id"], r["path"], r["step"])  # noqa: E731
    steps = {key(r): r for r in t["invocations"]}
    outputs = [e for e in t["embeddings"] if e["step"] >= 0]
    assert outputs and all(key(e) in steps for e in outputs)
    assert all(r["duration"] is not None for r in t["invocations"])
    # trajectories and persistence <-> runs on run_id; diagrams of every trajectory
    run_ids = {r["run_id"] for r in t["runs"]}
    assert (
        {r["run_id"] for r in t["trajectories"]}
        == run_ids
        == {r["run_id"] for r in t["persistence"]}
    )
    assert all(r["length"] == 12 for r in t["trajectories"])
    # entropy: one row per diagram, an empty one included, equal to the stored entropy
    stored = query(experiment, "SELECT run_id, embedding_model, entropy FROM persistence")
    assert len(t["entropy"]) == 2 * len(stored)  # H0 and H1 of each
    expected = {
        (r["run_id"], r["embedding_model"], d): e
        for r in stored
        for d, e in enumerate(json.loads(r["entropy"]))
    }
    assert {
        (r["run_id"], r["embedding_model"], r["homology_dim"]): r["entropy"] for r in t["entropy"]
    } == pytest.approx(expected)
    assert isinstance(t["embeddings"][0]["vector"][0], float)

    # A run with no diagrams (no persistence node): the table is empty but has its columns.
    path = workdir / "plain.yaml"
    path.write_text(
        "genarun: 1\nname: plain\nseed: 3\nnodes:\n  - id: traj\n    kind: cycle\n"
        "    network: [dummy-t2i, dummy-i2t]\n    start: a fox\n    steps: 2\n    embed: [dummy-embed]\n"
    )
    assert cli("run", path).exit_code == 0
    for fmt in ("parquet", "csv"):
        out = workdir / f"plain-{fmt}"
        assert cli("export", "data", "latest", "--out", out, "--format", fmt).exit_code == 0
        if fmt == "parquet":
            empty = pq.read_table(out / "persistence.parquet")
            assert empty.num_rows == 0 and {"run_id", "birth", "death"} <= set(empty.column_names)
        else:
            header = (out / "persistence.csv").read_text().splitlines()[0]
            assert "homology_dim" in header


def test_compare_says_when_every_diagram_is_empty_in_the_dimension(
    cli: Callable[..., Result], workdir: Path
) -> None:
    """Three points never make an H1 loop: the H1 matrix was all zeros, which reads as
    "identical trajectories"; now the empty diagrams are named instead."""
    path = workdir / "short.yaml"
    path.write_text(
        "genarun: 1\nname: short\nmatrix:\n  seed: [1, 2, 3]\nnodes:\n  - id: traj\n    kind: cycle\n"
        "    network: [dummy-t2i, dummy-i2t]\n    start: a fox\n    steps: 3\n"
        "    embed: [dummy-embed]\n    children:\n      - id: topo\n        kind: persistence\n"
        "        of: traj\n"
    )
    assert cli("run", path).exit_code == 0
    result = cli("tda", "compare", "latest", "--dim", "1")
    assert result.exit_code == 0, result.output
    assert "all 3 H1 diagrams of dummy-embed embeddings are empty" in result.output
    assert "wasserstein" not in result.output and "0.0000" not in result.output
    csv_out = cli("tda", "compare", "latest", "--dim", "1", "--csv", workdir / "d.csv")
    assert csv_out.exit_code == 0 and "are empty" in csv_out.output
    h0 = cli("tda", "compare", "latest", "--dim", "0")
    assert "wasserstein" in h0.output and "empty" not in h0.output


def test_tda_and_export_bad_input_is_a_message(
    experiment: Path, cli: Callable[..., Result], workdir: Path
) -> None:
    run = query(experiment, "SELECT id FROM runs LIMIT 1")[0]["id"]
    one = cli("tda", "compare", run[:8])
    assert one.exit_code == 2 and "at least two trajectories" in one.output
    (workdir / "a-file").write_text("")
    for args in (
        ("export", "data", "latest", "--out", workdir / "a-file" / "data"),
        ("export", "images", "latest", "--out", workdir / "a-file" / "imgs"),
        ("tda", "plots", "latest", "--out", workdir / "a-file" / "plots"),
        ("tda", "compare", "latest", "--csv", workdir / "a-file" / "d.csv"),
    ):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "cannot write" in result.output and "a-file" in result.output
        assert "internal error" not in result.output and "Traceback" not in result.output
    missing = cli("tda", "compare", "fffff")
    assert missing.exit_code == 2 and "no run or experiment matches 'fffff'" in missing.output
    # `all`: every run in the database
    images = query(experiment, "SELECT count(*) AS n FROM trajectory_steps WHERE kind = 'image'")[
        0
    ]["n"]
    everything = cli("export", "images", "all", "--out", workdir / "all")
    assert everything.exit_code == 0 and f"wrote {images} images" in everything.output


def test_persistence_needs_embeddings_known_before_the_run(
    cli: Callable[..., Result], workdir: Path
) -> None:
    head = "genarun: 1\nname: bad\nnodes:\n  - id: traj\n    kind: cycle\n    network: [dummy-t2i, dummy-i2t]\n    start: a fox\n    steps: 3\n"
    cases = {
        "nothing.yaml": (
            head + "    children:\n      - id: topo\n        kind: persistence\n        of: traj\n",
            ":12 node 'topo'",
            "embeds nothing",
        ),
        "other.yaml": (
            head
            + "    embed: [dummy-embed]\n    children:\n      - id: topo\n        kind: persistence\n        of: traj\n        embedding: dummy-text-embed\n",
            ":14 node 'topo'",
            "does not embed with 'dummy-text-embed' (it embeds with: dummy-embed)",
        ),
        "notcycle.yaml": (
            "genarun: 1\nname: bad\nnodes:\n  - id: words\n    kind: template\n    text: hi\n    children:\n"
            "      - id: topo\n        kind: persistence\n        of: words\n",
            ":10 node 'topo'",
            "'words' is a template node; it must be a cycle node",
        ),
    }
    for name, (text, where, words) in cases.items():
        (workdir / name).write_text(text)
        result = cli("run", workdir / name)
        assert result.exit_code == 2, result.output
        assert f"{name}{where}" in result.output and words in result.output, result.output
    assert not (workdir / "genarun.db").exists() or not query(
        workdir / "genarun.db", "SELECT * FROM executions"
    )
