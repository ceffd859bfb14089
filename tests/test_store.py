"""The SQLite store: what a run writes, WAL mode, concurrent writers, `genarun runs`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.helpers import TREES, query


def run_ok(cli: Callable[..., Result], tree: Path, *args: object) -> Result:
    result = cli("run", tree, *args)
    assert result.exit_code == 0, result.output
    return result


def test_a_run_fills_every_core_table(
    cli: Callable[..., Result], tree: Callable[[str], Path], workdir: Path
) -> None:
    run_ok(cli, tree("blog.yaml"))
    db = workdir / "genarun.db"
    (experiment,) = query(db, "SELECT * FROM experiments")
    (run,) = query(db, "SELECT * FROM runs")
    assert experiment["name"] == run["name"] == "blog"
    assert run["experiment_id"] == experiment["id"]
    assert run["status"] == "completed" and run["seed"] == 42
    assert run["tree_text"] == (TREES / "blog.yaml").read_text()
    assert run["ended"] >= run["started"]
    rows = query(db, "SELECT * FROM executions WHERE run_id = ?", run["id"])
    assert Counter(r["node_id"] for r in rows) == {
        "plan": 1,
        "article": 3,
        "cover": 3,
        "alt_text": 3,
        "index_page": 1,
    }
    for r in rows:
        assert r["status"] == "done"
        assert r["seed"] is not None and r["input_hash"]
        assert r["started"] <= r["ended"]
        assert r["duration"] == pytest.approx(r["ended"] - r["started"])
        assert json.loads(r["params"]) and json.loads(r["output"]) is not None
    models = {r["node_id"]: r["model"] for r in rows}
    assert models["plan"] == "dummy" and models["index_page"] is None
    article = query(
        db, "SELECT params, path FROM executions WHERE node_id = 'article' ORDER BY path"
    )
    assert [json.loads(a["path"]) for a in article] == [[0], [1], [2]]
    assert json.loads(article[2]["params"])["prompt"].endswith("(number 2).")


def test_logs_table_holds_failures(
    cli: Callable[..., Result], tree: Callable[[str], Path], workdir: Path
) -> None:
    assert cli("run", tree("failing.yaml")).exit_code == 1
    (log,) = query(workdir / "genarun.db", "SELECT * FROM logs WHERE level = 'error'")
    assert log["node_id"] == "bad"
    assert "output is not valid JSON" in log["message"]


def test_database_is_in_wal_mode(
    cli: Callable[..., Result], tree: Callable[[str], Path], workdir: Path
) -> None:
    run_ok(cli, tree("typed.yaml"))
    assert query(workdir / "genarun.db", "PRAGMA journal_mode")[0][0] == "wal"


@pytest.mark.slow
def test_two_processes_write_one_database_at_once(
    tree: Callable[[str], Path], workdir: Path
) -> None:
    path = tree("store_writer.yaml")
    db = workdir / "shared.db"
    env = {**os.environ, "GENARUN_DB": str(db)}
    cmd = [sys.executable, "-m", "genarun", "run", str(path), "--batch-size", "1"]
    procs = [
        subprocess.Popen(
            [*cmd, "--seed", str(seed)],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    runs = query(db, "SELECT id, status, seed FROM runs ORDER BY seed")
    assert [(r["status"], r["seed"]) for r in runs] == [("completed", 1), ("completed", 2)]
    spans = []
    for r in runs:
        rows = query(db, "SELECT status, started, ended FROM executions WHERE run_id = ?", r["id"])
        assert len(rows) == 31 and {row["status"] for row in rows} == {"done"}
        spans.append((min(row["started"] for row in rows), max(row["ended"] for row in rows)))
    (start_a, end_a), (start_b, end_b) = spans
    assert start_a < end_b and start_b < end_a, "the two runs did not overlap in time"


def test_runs_list_and_show(
    cli: Callable[..., Result], tree: Callable[[str], Path], workdir: Path
) -> None:
    run_ok(cli, tree("typed.yaml"))
    run_ok(cli, tree("blog.yaml"))
    listing = cli("runs", "list")
    assert listing.exit_code == 0
    lines = listing.stdout.splitlines()
    assert lines[0].split()[:3] == ["RUN", "TREE", "STATUS"]
    assert [line.split()[1] for line in lines[1:]] == ["blog", "typed"]  # newest first
    rows = json.loads(cli("runs", "list", "--json").stdout)
    assert [r["name"] for r in rows] == ["blog", "typed"]
    blog_id = rows[0]["id"]

    text = cli("runs", "show", blog_id)
    assert text.exit_code == 0
    assert f"run      {blog_id}" in text.stdout
    assert "alt_text[2]" in text.stdout

    report = json.loads(cli("runs", "show", blog_id, "--json").stdout)
    assert report["run"] == blog_id and report["status"] == "completed" and report["seed"] == 42
    assert len(report["executions"]) == 11
    stored = {
        r["id"]: r["duration"]
        for r in query(workdir / "genarun.db", "SELECT id, duration FROM executions")
    }
    for execution in report["executions"]:
        for key in ("node", "index", "status", "seed", "duration", "reused"):
            assert key in execution, key
        assert execution["status"] == "done" and execution["reused"] is False
        assert isinstance(execution["seed"], int)
        assert execution["duration"] == stored[execution["id"]]
    indexes = sorted(e["index"] for e in report["executions"] if e["node"] == "cover")
    assert indexes == [[0], [1], [2]]

    for ref in (blog_id[:6], blog_id.upper()[:8], "latest"):
        shown = cli("runs", "show", ref, "--json")
        assert shown.exit_code == 0, (ref, shown.output)
        assert json.loads(shown.stdout)["run"] == blog_id


def test_runs_show_unknown_and_ambiguous(
    cli: Callable[..., Result], tree: Callable[[str], Path]
) -> None:
    run_ok(cli, tree("many_seeds.yaml"))
    ids = [r["id"] for r in json.loads(cli("runs", "list", "--json").stdout)]
    assert len(ids) == 17
    first_chars = Counter(i[0] for i in ids)
    shared = next(c for c, n in first_chars.items() if n > 1)
    result = cli("runs", "show", shared)
    assert result.exit_code == 2
    assert f"'{shared}' matches several runs" in result.stderr
    assert "give more characters of the id" in result.stderr
    assert "Traceback" not in result.output

    unknown = "0123456789abcdef0123"
    missing = cli("runs", "show", unknown)
    assert missing.exit_code == 2
    assert f"no run matches '{unknown}'" in missing.stderr


@pytest.mark.parametrize("ref", ["", "%", "_", "not-an-id"])
def test_runs_show_rejects_wildcards_and_empty_refs(
    cli: Callable[..., Result], tree: Callable[[str], Path], ref: str
) -> None:
    run_ok(cli, tree("typed.yaml"))  # one run: a pattern matching anything would show it
    result = cli("runs", "show", ref)
    assert result.exit_code == 2, result.output
    assert f"'{ref}' is not a run: give `latest`, a run id or its first characters" in result.stderr


def test_runs_show_latest_in_an_empty_database(cli: Callable[..., Result], workdir: Path) -> None:
    from genarun.store.db import Store

    Store(workdir / "genarun.db").close()  # a database with its tables and no runs
    result = cli("runs", "show", "latest")
    assert result.exit_code == 2
    assert "no runs in" in result.stderr


def test_latest_survives_refreshes_racing_each_other(tmp_path: Path) -> None:
    """Runs finishing at once each replace latest/: none fails, and latest/ is whole."""
    from concurrent.futures import ThreadPoolExecutor

    from genarun.store.folders import refresh_latest

    sources = []
    for i in range(4):
        source = tmp_path / f"run{i}"
        (source / "assets").mkdir(parents=True)
        (source / "output.json").write_text(f'{{"run": {i}}}')
        (source / "assets" / "a.txt").write_text(str(i))
        sources.append(source)
    with ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda i: [refresh_latest(tmp_path, sources[i % 4]) for _ in range(25)], range(4)
            )
        )
    latest = tmp_path / "latest"
    run = json.loads((latest / "output.json").read_text())["run"]
    assert (latest / "assets" / "a.txt").read_text() == str(run)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "run0", "run1", "run2", "run3"]


def test_latest_links_images_and_copies_the_rest(tmp_path: Path) -> None:
    """latest/ shares the run's PNGs (written once, by rename) instead of a second copy of
    every image; JSON, which a resume rewrites, is copied."""
    from genarun.store.folders import refresh_latest

    source = tmp_path / "run"
    (source / "assets").mkdir(parents=True)
    (source / "output.json").write_text("{}")
    (source / "assets" / "a.png").write_bytes(b"\x89PNG fake")
    latest = refresh_latest(tmp_path, source)
    assert (latest / "assets" / "a.png").stat().st_ino == (
        source / "assets" / "a.png"
    ).stat().st_ino
    assert (latest / "output.json").stat().st_ino != (source / "output.json").stat().st_ino
    assert (latest / "assets" / "a.png").read_bytes() == b"\x89PNG fake"
