"""`genarun cluster` over stored trajectories: labels stored, medoids named, list/show/delete,
plots with their CSV, and the tables of `export data`."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.helpers import query


@pytest.fixture
def ran(tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path) -> Path:
    result = cli("run", tree("doctor.yaml"))
    assert result.exit_code == 0, result.output
    return workdir / "genarun.db"


def test_cluster_stores_labels_and_names_clusters_by_medoid(
    ran: Path, cli: Callable[..., Result], workdir: Path
) -> None:
    result = cli("cluster", "latest", "--min-cluster-size", "2")
    assert result.exit_code == 0, result.output
    assert "12 'dummy-embed' steps of 2 runs" in result.output
    assert "method: HDBSCAN (scikit-learn)" in result.output
    clustering = query(ran, "SELECT * FROM clusterings")[0]
    labels = query(ran, "SELECT * FROM cluster_labels ORDER BY run_id, step")
    assert len(labels) == 12 == clustering["points"]
    clusters = query(ran, "SELECT * FROM clusters")
    assert len(clusters) == clustering["clusters"]
    assert sum(c["size"] for c in clusters) + clustering["noise"] == 12
    # Each medoid is a member of its cluster, and its output is what names the cluster.
    for c in clusters:
        member = query(
            ran,
            "SELECT label FROM cluster_labels WHERE run_id = ? AND step = ?",
            c["medoid_run_id"],
            c["medoid_step"],
        )[0]["label"]
        assert member == c["label"]
        step = query(
            ran,
            "SELECT kind, value FROM trajectory_steps WHERE run_id = ? AND step = ?",
            c["medoid_run_id"],
            c["medoid_step"],
        )[0]
        assert (step["kind"], step["value"]) == (c["medoid_kind"], c["medoid_value"])

    listing = cli("cluster", "list")
    assert clustering["id"][:8] in listing.output and "dummy-embed" in listing.output
    shown = cli("cluster", "show", clustering["id"][:8], "--json")
    body = json.loads(shown.output)
    assert body["points"] == 12 and len(body["clusters"]) == len(clusters)
    assert sum(t["count"] for t in body["transitions"]) == 2 * 5  # 6 steps: 5 moves per run

    plots = cli("cluster", "plots", "latest", "--out", workdir / "plots")
    assert plots.exit_code == 0, plots.output
    for name in ("cluster_timeline", "cluster_transitions"):
        assert (workdir / "plots" / f"{name}.png").stat().st_size > 1000
    with (workdir / "plots" / "cluster_timeline.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 12

    export = cli("export", "data", "latest", "--format", "csv", "--out", workdir / "data")
    assert export.exit_code == 0, export.output
    assert "cluster_labels.csv (12 rows)" in export.output
    with (workdir / "data" / "cluster_runs.csv").open() as f:
        runs = list(csv.DictReader(f))
    by_run: dict[str, int] = {}
    for r in runs:
        by_run[r["run_id"]] = by_run.get(r["run_id"], 0) + int(r["length"])
    assert sorted(by_run.values()) == [6, 6]  # run lengths cover every step

    deleted = cli("cluster", "delete", clustering["id"][:8])
    assert deleted.exit_code == 0, deleted.output
    assert query(ran, "SELECT COUNT(*) AS n FROM cluster_labels")[0]["n"] == 0
    assert cli("cluster", "show", "latest").exit_code == 2


def test_too_few_points_is_refused_and_nothing_stored(
    ran: Path, cli: Callable[..., Result]
) -> None:
    result = cli("cluster", "latest", "--min-cluster-size", "50")
    assert result.exit_code == 2
    assert (
        "12 'dummy-embed' embedded steps in these runs, fewer than the minimum cluster size 50"
        in result.output
    )
    assert "Traceback" not in result.output
    assert query(ran, "SELECT COUNT(*) AS n FROM clusterings")[0]["n"] == 0


def test_unknown_embedding_model_names_the_present_ones(
    ran: Path, cli: Callable[..., Result]
) -> None:
    result = cli("cluster", "latest", "--embedding", "nomic")
    assert result.exit_code == 2
    assert "no 'nomic' embeddings in these runs; they have: dummy-embed" in result.output
