"""The lines a run's log gets when it ends, beside the warnings and errors logged as they happen:
when each node started and finished and how its executions ended (done, reused from another
run or the cache, skipped, failed), each model load, and each model's batches. A successful
run's logs.json was `[]`; these are what a person reading it wants to know.

They are worked out from what was recorded (executions' start and end times, the batcher's
counts), so the executor's hot path logs nothing more.
"""

from __future__ import annotations

import time
from typing import Any

from genarun.store.db import Store


def summary_logs(
    store: Store, run_id: str, *, since: float, model_stats: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Log rows for the part of run `run_id` executed since `since` (a resume logs its own)."""
    rows = [*_node_lines(store, run_id, since), *_model_lines(run_id, model_stats)]
    return sorted(rows, key=lambda r: r["time"])


# Per node, in the order its first execution was recorded: when its executions began and
# ended, and how they ended. Summed by SQLite: a run of 10,000 executions would otherwise read
# every row back (parameters and outputs too) to count them.
_NODE_SUMMARY = """
SELECT node_id,
    MIN(started) AS first,
    MAX(COALESCE(NULLIF(ended, 0), started)) AS last,
    SUM(status = 'done' AND reused_from IS NULL) AS done,
    SUM(status = 'done' AND reused_from IS NOT NULL) AS reused,
    SUM(status = 'skipped') AS skipped,
    SUM(status = 'failed') AS failed,
    COUNT(*) AS total
FROM executions
WHERE run_id = ? AND started IS NOT NULL AND started >= ?
GROUP BY node_id
ORDER BY MIN(id)
"""


def _node_lines(store: Store, run_id: str, since: float) -> list[dict[str, Any]]:
    lines = []
    for node in store.query(_NODE_SUMMARY, (run_id, since)):
        node_id, total = node["node_id"], node["total"]
        ended = ", ".join(
            f"{node[k]} {k}" for k in ("done", "reused", "skipped", "failed") if node[k]
        )
        executions = f"{total} execution{'s' if total != 1 else ''}"
        lines.append(_row(run_id, node["first"], "info", "started", node_id))
        lines.append(
            _row(
                run_id,
                node["last"],
                "info",  # a failure has its own error line
                f"finished: {ended} ({executions}, {node['last'] - node['first']:.2f} s)",
                node_id,
            )
        )
    return lines


def _model_lines(run_id: str, model_stats: list[dict[str, Any]]) -> list[dict[str, Any]]:
    lines = []
    now = time.time()
    for stat in model_stats:
        if run_id not in stat.get("runs", [run_id]):
            continue
        nodes = ", ".join(stat.get("nodes", []))
        name = f"model {stat['model']} ({stat['task']}" + (f" for {nodes})" if nodes else ")")
        for at, seconds, device in stat.get("loads", []):
            lines.append(_row(run_id, at, "info", f"{name}: loaded on {device} in {seconds:.2f} s"))
        sizes = ", ".join(
            f"{size}" + (f" x{count}" if count > 1 else "")
            for size, count in stat.get("sizes", {}).items()
        )
        shared = len(stat.get("runs", []))
        lines.append(
            _row(
                run_id,
                now,
                "info",
                f"{name}: {stat['items']} item{'s' if stat['items'] != 1 else ''} in "
                f"{stat['batches']} batch{'es' if stat['batches'] != 1 else ''} (sizes {sizes}), "
                f"busy {stat['seconds']:.2f} s"
                + (f"; batches shared by the experiment's {shared} runs" if shared > 1 else ""),
            )
        )
    return lines


def _row(
    run_id: str, at: float, level: str, message: str, node_id: str | None = None
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "node_id": node_id,
        "path": None,
        "time": at,
        "level": level,
        "message": message,
    }
