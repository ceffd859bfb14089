"""A `cycle` execution reused by another run (rerun, --only) brings its trajectory with it:
the trajectory row, steps, embeddings (with new ids) and diagrams are copied to the new run."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import Result

from tests.helpers import query

TABLES = ("trajectories", "trajectory_steps", "embeddings", "persistence")


def _runs(db: Path) -> list[dict[str, Any]]:
    return [dict(r) for r in query(db, "SELECT * FROM runs ORDER BY started, rowid")]


def _rows(db: Path, table: str, run_id: str) -> list[dict[str, Any]]:
    return [
        dict(r) for r in query(db, f"SELECT * FROM {table} WHERE run_id = ? ORDER BY id", run_id)
    ]


def _file(run: dict[str, Any], rel: str) -> str:
    """The sha256 of an image in the run's own folder (it must be there)."""
    file = Path(run["out_dir"]) / rel
    assert file.is_file(), f"{rel} is not in run {run['id'][:8]}'s folder"
    return hashlib.sha256(file.read_bytes()).hexdigest()


def _trajectory(db: Path, run: dict[str, Any]) -> dict[str, Any]:
    """What a run stores about its trajectories, with ids resolved to what they point at: the
    referenced embedding rows (which must be the run's own) and image files (in its folder)."""
    embeddings = {e["id"]: e for e in _rows(db, "embeddings", run["id"])}

    def vector(ref: int) -> tuple[Any, ...]:
        e = embeddings[ref]  # a KeyError here: the ref points at another run's row
        return (e["node_id"], e["path"], e["item"], e["model"], e["dim"], e["vector"])

    def plain(row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if k not in ("id", "run_id")}

    steps = []
    for s in _rows(db, "trajectory_steps", run["id"]):
        refs = {m: (vector(i), dim) for m, (i, dim) in json.loads(s["embeddings"]).items()}
        value = _file(run, s["value"]) if s["kind"] == "image" else s["value"]
        steps.append({**plain(s), "value": value, "embeddings": refs})
    images = {s["value"] for s in _rows(db, "trajectory_steps", run["id"]) if s["kind"] == "image"}
    vectors = [
        {**plain(e), "source": _file(run, e["source"]) if e["source"] in images else e["source"]}
        for e in embeddings.values()
    ]
    outputs = {}
    for row in query(
        db, "SELECT path, output FROM executions WHERE run_id = ? AND node_id = 'traj'", run["id"]
    ):
        records = json.loads(row["output"])
        for record in records:
            if record["kind"] == "image":
                record["value"] = _file(run, record["value"]["$image"])
            record["embeddings"] = {
                m: vector(r["$embedding"]) for m, r in record["embeddings"].items()
            }
        outputs[row["path"]] = records
    # in key order: the source stored the steps of its trajectories interleaved (batched)
    return {
        "trajectories": sorted(
            (plain(t) for t in _rows(db, "trajectories", run["id"])), key=_order
        ),
        "steps": sorted(steps, key=_order),
        "embeddings": sorted(vectors, key=_order),
        # when and how fast a diagram was computed differs after `tda compute --force`
        "persistence": sorted(
            (
                {k: v for k, v in plain(p).items() if k not in ("created", "duration")}
                for p in _rows(db, "persistence", run["id"])
            ),
            key=_order,
        ),
        "outputs": outputs,
    }


def _order(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        str(row.get(k)) for k in ("node_id", "path", "step", "item", "model", "embedding_model")
    )


def _diagrams(db: Path, run_id: str) -> dict[tuple[str, str], tuple[int, str]]:
    rows = _rows(db, "persistence", run_id)
    return {(p["path"], p["embedding_model"]): (p["points"], p["diagrams"]) for p in rows}


def _raw(db: Path, run_id: str) -> dict[str, list[dict[str, Any]]]:
    return {t: _rows(db, t, run_id) for t in (*TABLES, "executions")}


def _check_copied(db: Path, source: dict[str, Any], new: dict[str, Any]) -> None:
    """`new` reused the cycle (it did not run it again) and owns a copy equal to the source's."""
    sql = "SELECT reused_from FROM executions WHERE run_id = ? AND node_id = 'traj'"
    reused = query(db, sql, new["id"])
    assert len(reused) == 2 and all(r["reused_from"] for r in reused)
    copied = _trajectory(db, new)
    assert copied == _trajectory(db, source)
    assert len(copied["trajectories"]) == 2 and len(copied["steps"]) == 10
    assert (
        len(copied["embeddings"]) == 2 * 6 + 2 * 3
    )  # dummy-embed: 5 steps + start; text: 2 + start
    assert len(copied["persistence"]) == 4  # 2 trajectories x 2 embedding models
    assert len(copied["outputs"]) == 2
    # its own rows: no id it stores is one of the source run's
    ids = {e["id"] for e in _rows(db, "embeddings", new["id"])}
    assert ids.isdisjoint(e["id"] for e in _rows(db, "embeddings", source["id"]))
    for s in _rows(db, "trajectory_steps", new["id"]):
        assert {i for i, _dim in json.loads(s["embeddings"]).values()} <= ids
    output = json.loads((Path(new["out_dir"]) / "output.json").read_text())
    refs = [
        e["embedding"]
        for traj in output["prompts"]["traj"]
        for r in traj["value"]
        for e in r["embeddings"].values()
    ]
    assert refs and set(refs) <= ids


def test_rerun_of_another_node_copies_the_trajectory(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    db = workdir / "genarun.db"
    assert cli("run", tree("cycle_reuse.yaml")).exit_code == 0
    source = _runs(db)[0]
    before = _raw(db, source["id"])
    result = cli("rerun", source["id"][:8], "--node", "note")
    assert result.exit_code == 0, result.output
    new = _runs(db)[-1]
    _check_copied(db, source, new)
    assert _raw(db, source["id"]) == before  # the source run is unchanged

    listed = cli("runs", "list")
    assert listed.exit_code == 0
    line = next(line for line in listed.output.splitlines() if line.startswith(new["id"][:8]))
    assert "5/5 max_steps; 5/5 max_steps" in line
    shown = cli("experiments", "show", new["experiment_id"][:8])
    assert shown.exit_code == 0, shown.output
    assert "embeddings       18 / 18" in shown.output and "persistence       4 / 4" in shown.output
    computed = cli("tda", "compute", new["id"][:8])
    assert "0 diagrams computed, 4 already stored" in computed.output, computed.output
    # recomputed from the copied vectors, the diagrams are the copied ones
    assert cli("tda", "compute", new["id"][:8], "--force").exit_code == 0
    # (by trajectory and model: persistence executions compute off the scheduler thread, so
    # the rows' order follows which diagram finished first)
    assert {
        (p["path"], p["embedding_model"]): p["diagrams"]
        for p in _rows(db, "persistence", new["id"])
    } == {(p["path"], p["embedding_model"]): p["diagrams"] for p in before["persistence"]}
    exported = cli("export", "data", new["id"][:8], "--format", "csv", "--out", workdir / "data")
    assert exported.exit_code == 0, exported.output
    assert (
        "invocations.csv (10 rows)" in exported.output
        and "embeddings.csv (18 rows)" in exported.output
    )

    # A rerun of the rerun copies from it (the rerun's own rows now).
    assert cli("rerun", new["id"][:8], "--node", "note").exit_code == 0
    third = _runs(db)[-1]
    _check_copied(db, source, third)


def test_only_copies_the_trajectory_and_a_persistence_node_below_reads_it(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    db = workdir / "genarun.db"
    path = tree("cycle_reuse.yaml")
    assert cli("run", path).exit_code == 0
    source = _runs(db)[0]
    result = cli("run", path, "--only", "note")
    assert result.exit_code == 0, result.output
    _check_copied(db, source, _runs(db)[-1])

    # Diagrams stale or absent in the source are not copied: the persistence node of the new
    # run computes them from the copied embeddings, and finds what the source found.
    topology = {
        r["path"]: json.loads(r["output"])
        for r in query(
            db,
            "SELECT path, output FROM executions WHERE run_id = ? AND node_id = 'topology'",
            source["id"],
        )
    }
    diagrams = _diagrams(db, source["id"])
    sqlite = sqlite3.connect(db)  # as if computed by `tda compute` before the last step
    sqlite.execute("UPDATE persistence SET points = points - 1 WHERE run_id = ?", (source["id"],))
    sqlite.commit()
    sqlite.close()
    result = cli("run", path, "--only", "topology", "--from", source["id"][:8])
    assert result.exit_code == 0, result.output
    new = _runs(db)[-1]
    assert (
        query(
            db,
            "SELECT count(*) AS n FROM logs WHERE run_id = ? AND message LIKE '%(stored)'",
            new["id"],
        )[0]["n"]
        == 0
    )
    rows = query(
        db,
        "SELECT path, output, reused_from FROM executions WHERE run_id = ? AND node_id = 'topology'",
        new["id"],
    )
    assert {r["path"]: json.loads(r["output"]) for r in rows} == topology
    assert all(r["reused_from"] is None for r in rows)
    assert _diagrams(db, new["id"]) == diagrams


def test_resume_copies_again_after_a_crash_and_never_its_own_rows(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    db = workdir / "genarun.db"
    assert cli("run", tree("cycle_reuse.yaml")).exit_code == 0
    source = _runs(db)[0]
    assert cli("rerun", source["id"][:8], "--node", "note").exit_code == 0
    new = _runs(db)[-1]
    sqlite = sqlite3.connect(db)

    # Interrupted before `note` finished: resume keeps the run's own cycle and copies nothing.
    own = {t: _rows(db, t, new["id"]) for t in TABLES}
    sqlite.execute("DELETE FROM executions WHERE run_id = ? AND node_id = 'note'", (new["id"],))
    sqlite.execute("UPDATE runs SET status = 'interrupted' WHERE id = ?", (new["id"],))
    sqlite.commit()
    result = cli("resume", new["id"][:8])
    assert result.exit_code == 0, result.output
    assert {t: _rows(db, t, new["id"]) for t in TABLES} == own

    # Killed after the copy was committed, before the reusing executions were: resume adopts
    # the source's cycle again and its copy replaces the first (no duplicate rows).
    sqlite.execute("DELETE FROM executions WHERE run_id = ? AND node_id != 'prompts'", (new["id"],))
    sqlite.execute("UPDATE runs SET status = 'interrupted' WHERE id = ?", (new["id"],))
    sqlite.commit()
    sqlite.close()
    result = cli("resume", new["id"][:8])
    assert result.exit_code == 0, result.output
    _check_copied(db, source, new)


def test_a_reuse_stored_before_copies_existed_copies_from_the_original(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    db = workdir / "genarun.db"
    assert cli("run", tree("cycle_reuse.yaml")).exit_code == 0
    source = _runs(db)[0]
    assert cli("rerun", source["id"][:8], "--node", "note").exit_code == 0
    old = _runs(db)[-1]
    # Make `old` what earlier versions stored: no trajectory rows, outputs naming the source's
    # embeddings (its images were copied then too).
    sqlite = sqlite3.connect(db)
    originals = {
        r[0]: json.loads(r[1])
        for r in sqlite.execute(
            "SELECT path, output FROM executions WHERE run_id = ? AND node_id = 'traj'",
            (source["id"],),
        )
    }
    for path, output in sqlite.execute(
        "SELECT path, output FROM executions WHERE run_id = ? AND node_id = 'traj'", (old["id"],)
    ).fetchall():
        records = json.loads(output)
        for record, original in zip(records, originals[path], strict=True):
            record["embeddings"] = original["embeddings"]
        sqlite.execute(
            "UPDATE executions SET output = ? WHERE run_id = ? AND node_id = 'traj' AND path = ?",
            (json.dumps(records), old["id"], path),
        )
    for table in TABLES:
        sqlite.execute(f"DELETE FROM {table} WHERE run_id = ?", (old["id"],))
    sqlite.commit()
    sqlite.close()

    assert cli("rerun", old["id"][:8], "--node", "note").exit_code == 0
    _check_copied(db, source, _runs(db)[-1])


def test_copied_images_keep_their_names(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    """A reused trajectory's images keep the names that tell their step (traj-0-2.png)."""
    path = tree("cycle_reuse.yaml")
    assert cli("run", path).exit_code == 0
    db = workdir / "genarun.db"
    source = query(db, "SELECT id FROM runs ORDER BY started")[0]["id"]
    assert cli("rerun", source, "--node", "note").exit_code == 0
    new = query(db, "SELECT id, out_dir FROM runs ORDER BY started")[-1]
    names = {
        r["run_id"]: sorted(
            r2["value"]
            for r2 in query(
                db,
                "SELECT value FROM trajectory_steps WHERE run_id = ? AND kind = 'image'",
                r["run_id"],
            )
        )
        for r in query(db, "SELECT DISTINCT run_id FROM trajectory_steps")
    }
    assert names[new["id"]] == names[source] and all(
        n.startswith("assets/traj-") for n in names[source]
    )
    assert all((Path(new["out_dir"]) / n).is_file() for n in names[new["id"]])
