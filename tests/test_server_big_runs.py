"""The run page of a long run: a summary per node and one page of executions at a time."""

from __future__ import annotations

import json
import re
from pathlib import Path

from genarun.server.run_summary import PAGE_SIZE
from tests.helpers import app_client


def _long_run(db: Path, drafts: int) -> str:
    """A run with one plan, `drafts` drafts (one failed) and as many covers, stored as a run
    stores them."""
    from genarun.store.db import Store

    store = Store(db)
    experiment = store.create_experiment(name="long")
    run_id = store.create_run(name="long", experiment_id=experiment, status="completed", seed=1)
    rows = [{"node_id": "plan", "path": "[]", "kind": "template", "output": '"a plan"'}]
    for i in range(drafts):
        rows.append({"node_id": "draft", "path": f"[{i}]", "kind": "generate", "output": '"text"'})
        rows.append(
            {
                "node_id": "cover",
                "path": f"[{i}]",
                "kind": "image",
                "output": json.dumps({"$image": f"assets/cover-{i}.png"}),
            }
        )
    rows[5] |= {"status": "failed", "output": None, "error": "draft[2]: empty (raise max_tokens)"}
    store.record_executions(
        [
            {"status": "done", "model": "dummy", "started": 100.0 + n, "ended": 100.5 + n}
            | row
            | {"run_id": run_id, "duration": 0.5}
            for n, row in enumerate(rows)
        ]
    )
    store.update_run(run_id, started=100.0, ended=100.0 + len(rows))
    store.close()
    return run_id


def test_a_long_run_page_shows_nodes_and_pages_its_executions(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    run_id = _long_run(db, 300)  # 601 executions
    client = app_client(db)
    html = client.get(f"/runs/{run_id}").text
    assert "1-200 of 601" in html and 'href="?page=2#executions">next</a>' in html
    shown = re.findall(r"<tr><td>(\w+)(?:\[\d+\])?</td>", html)
    assert len(shown) == PAGE_SIZE and shown[:3] == ["plan", "draft", "cover"]
    assert html.count('loading="lazy"') == shown.count("cover") == 99  # this page's covers
    # Per node, in the order they first ran: counts by status, time, the timeline bar.
    nodes = re.findall(r'<td><a href="\?node=(\w+)">', html)
    assert nodes == ["plan", "draft", "cover"]
    assert "299 done</a>" in html and "1 failed</a>" in html and "300 done</a>" in html
    assert "150.00s · 0.50s" in html  # 300 covers of 0.5 s: their sum, the slowest
    last = client.get(f"/runs/{run_id}", params={"page": 4}).text
    assert "601-601 of 601" in last and "next</a>" not in last and "previous</a>" in last
    covers = client.get(f"/runs/{run_id}", params={"node": "cover", "page": 2}).text
    assert "201-300 of 300" in covers and "<td>cover[200]</td>" in covers
    assert "<td>draft[" not in covers
    failed = client.get(f"/runs/{run_id}", params={"status": "failed"}).text
    assert "1-1 of 1" in failed and "draft[2]: empty (raise max_tokens)" in failed
    assert client.get(f"/runs/{run_id}", params={"page": "x"}).status_code == 200
    empty = client.get(f"/runs/{run_id}", params={"node": "nope"}).text
    assert "0-0 of 0" in empty
