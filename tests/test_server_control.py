"""Starting and stopping runs through `genarun serve`'s API."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from genarun.server.app import ServeOptions, create_app
from tests.helpers import LOCAL, app_client, batches_started, query, wait_until

SLOW = """genarun: 1
name: slow-control
seed: 3
vars:
  topic: lizards
models:
  slow: {provider: dummy, id: dummy, options: {delay: 1.0}}
nodes:
  - id: step
    kind: generate
    foreach: range(30)
    model: slow
    prompt: "step {{ index }} on {{ topic }}"
"""


def _client(tmp_path: Path) -> TestClient:
    trees = tmp_path / "trees"
    trees.mkdir(exist_ok=True)
    (trees / "slow.yaml").write_text(SLOW)
    (trees / "broken.yaml").write_text(SLOW.replace("{{ topic }}", "{{ topik }}"))
    (tmp_path / "outside.yaml").write_text(SLOW)
    options = ServeOptions(db=tmp_path / "g.db", auto_resume=False, trees=trees)
    return TestClient(create_app(options), base_url=LOCAL)


def test_a_start_request_with_bad_input_gets_the_cli_message(tmp_path: Path, cli) -> None:
    client = _client(tmp_path)
    bad_set = client.post("/api/v1/runs", json={"tree": "slow.yaml", "set": ["=x"]})
    assert bad_set.status_code == 422
    from_cli = cli("run", tmp_path / "trees" / "slow.yaml", "--set", "=x")
    assert bad_set.json()["error"] in from_cli.output
    broken = client.post("/api/v1/runs", json={"tree": "broken.yaml"})
    assert broken.status_code == 422 and "undefined name 'topik'" in broken.json()["error"]
    assert "broken.yaml:" in broken.json()["error"]
    assert client.post("/api/v1/runs", json={"tree": "../outside.yaml"}).status_code == 403
    assert client.post("/api/v1/runs", json={"tree": "nope.yaml"}).status_code == 404
    assert client.post("/api/v1/runs", json={"tree": "slow.yaml", "seed": "x"}).status_code == 422
    assert client.post("/api/v1/runs", json={"tree": "slow.yaml", "sets": []}).status_code == 422
    assert (
        not (tmp_path / "g.db").exists()
        or query(tmp_path / "g.db", "SELECT count(*) FROM runs")[0][0] == 0
    )
    no_start = app_client(tmp_path / "g.db")
    assert no_start.post("/api/v1/runs", json={"tree": "slow.yaml"}).status_code == 403


@pytest.mark.slow
def test_a_run_started_from_the_api_runs_in_a_worker_and_stops_cleanly(tmp_path: Path) -> None:
    client = _client(tmp_path)
    db = tmp_path / "g.db"
    log = tmp_path / "batches.log"
    (tmp_path / "trees" / "logged.yaml").write_text(
        SLOW.replace("delay: 1.0", f'delay: 1.0, batch_log: "{log}"')
    )
    started = client.post(
        "/api/v1/runs", json={"tree": "logged.yaml", "set": ["topic=geckos"], "seed": 5}
    )
    assert started.status_code == 200, started.text
    run_id = started.json()["run"]
    (row,) = query(db, "SELECT status, seed, bindings FROM runs WHERE id = ?", run_id)
    assert row["status"] == "running" and row["seed"] == 5 and "geckos" in row["bindings"]
    # Stopped once a batch is in flight: the worker's run has taken over Ctrl-C by then (a
    # fixed 1.5 s after the run was stored could come first on a slower machine).
    wait_until(lambda: batches_started(log), "the worker's first batch")
    stopped = client.post(f"/api/v1/runs/{run_id}/stop", json={})
    assert stopped.status_code == 200 and stopped.json()["stopping"] is True
    wait_until(
        lambda: query(db, "SELECT status FROM runs WHERE id = ?", run_id)[0][0] != "running",
        "the run to stop",
    )
    assert query(db, "SELECT status FROM runs WHERE id = ?", run_id)[0][0] == "interrupted"
    again = client.post(f"/api/v1/runs/{run_id}/stop", json={})
    assert (
        again.status_code == 409 and "is not running (it is interrupted)" in again.json()["error"]
    )
    assert client.post("/api/v1/runs/abcdef12/stop", json={}).status_code == 404


@pytest.mark.slow
def test_rerunning_one_item_of_a_run_from_the_api(tmp_path: Path, cli) -> None:
    client = _client(tmp_path)
    db = tmp_path / "g.db"
    fast = tmp_path / "trees" / "fast.yaml"
    fast.write_text(SLOW.replace("delay: 1.0", "delay: 0").replace("range(30)", "range(3)"))
    assert cli("run", fast, "--db", db).exit_code == 0
    source = query(db, "SELECT id FROM runs")[0][0]
    bad = client.post(f"/api/v1/runs/{source}/rerun", json={"node": ["stpe"]})
    assert bad.status_code == 422 and "stpe" in bad.json()["error"]
    assert client.post(f"/api/v1/runs/{source}/rerun", json={"node": []}).status_code == 422
    assert client.post("/api/v1/runs/abcdef12/rerun", json={"node": ["step"]}).status_code == 404
    again = client.post(f"/api/v1/runs/{source}/rerun", json={"node": ["step[1]"]})
    assert again.status_code == 200, again.text
    new = again.json()["run"]
    assert new != source and again.json()["source"] == source
    wait_until(
        lambda: query(db, "SELECT status FROM runs WHERE id = ?", new)[0][0] != "running",
        "the rerun to finish",
    )
    (row,) = query(db, "SELECT status, source_run_id FROM runs WHERE id = ?", new)
    assert row["status"] == "completed" and row["source_run_id"] == source
    ran = query(db, "SELECT path FROM executions WHERE run_id = ? AND reused_from IS NULL", new)
    assert [r["path"] for r in ran] == ["[1]"]
