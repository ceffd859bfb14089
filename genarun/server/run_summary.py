"""What the run page reads of a run's executions, sized for runs of any length: a summary per
node (counts by status, reuse, time, models, when it ran) from one GROUP BY, and one page of
executions at a time. A run of 10,000 executions read whole and drawn row by row took ~5 s
and 4 MB of HTML (bench/serve.py); the page now reads a few hundred rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

PAGE_SIZE = 200  # executions on one page of the run page


@dataclass
class NodeSummary:
    node: str
    kind: str
    executions: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    reused: int = 0
    seconds: float = 0.0  # the executions' durations added up
    slowest: float = 0.0
    first: float | None = None  # when its first execution started
    last: float | None = None  # when its last one ended
    models: list[str] = field(default_factory=list)


def node_summaries(store: Any, run_id: str) -> list[NodeSummary]:
    """One summary per node of the run, in the order the nodes first ran."""
    rows = store.conn.exec_driver_sql(
        "SELECT node_id, kind, status, count(*), sum(reused_from IS NOT NULL),"
        " total(duration), max(duration), min(started), max(ended), min(id),"
        " group_concat(DISTINCT model)"
        " FROM executions WHERE run_id = ? GROUP BY node_id, kind, status",
        (run_id,),
    ).fetchall()
    by_node: dict[str, tuple[int, NodeSummary]] = {}
    for node, kind, status, count, reused, seconds, slowest, first, last, first_id, models in rows:
        order, summary = by_node.setdefault(node, (first_id, NodeSummary(node, kind)))
        by_node[node] = (min(order, first_id), summary)
        summary.executions += count
        summary.statuses[status] = summary.statuses.get(status, 0) + count
        summary.reused += reused or 0
        summary.seconds += seconds or 0.0
        summary.slowest = max(summary.slowest, slowest or 0.0)
        if first is not None:
            summary.first = first if summary.first is None else min(summary.first, first)
        if last is not None:
            summary.last = last if summary.last is None else max(summary.last, last)
        for model in (models or "").split(","):
            if model and model not in summary.models:
                summary.models.append(model)
    return [summary for _order, summary in sorted(by_node.values(), key=lambda x: x[0])]


def execution_page(
    store: Any, run_id: str, *, node: str = "", status: str = "", page: int = 1
) -> list[dict[str, Any]]:
    """One page of the run's executions in the order they finished, optionally of one node
    and one status."""
    where, params = ["run_id = ?"], [run_id]
    if node:
        where.append("node_id = ?")
        params.append(node)
    if status:
        where.append("status = ?")
        params.append(status)
    cursor = store.conn.exec_driver_sql(
        "SELECT id, node_id, path, kind, status, started, ended, duration, model, seed,"
        " output, error, reused_from FROM executions"
        f" WHERE {' AND '.join(where)} ORDER BY id LIMIT ? OFFSET ?",
        (*params, PAGE_SIZE, (max(page, 1) - 1) * PAGE_SIZE),
    )
    names = [d[0] for d in cursor.cursor.description] if cursor.cursor else []
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def run_span(run: dict[str, Any], summaries: list[NodeSummary]) -> tuple[float, float]:
    """When the run began and ended (or its last execution did), for the timeline bars."""
    begin = run["started"]
    ends = [s.last for s in summaries if s.last is not None]
    end = max([run["ended"] or 0.0, *ends, begin + 1e-3])
    return begin, end


def target(node: str, path_json: str | None) -> str:
    """`node[2][0]`: a node and its foreach indexes."""
    path = json.loads(path_json) if path_json else []
    return node + "".join(f"[{i}]" for i in path)
