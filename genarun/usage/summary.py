"""Usage and cost of a run, per node: the one summary that `genarun runs show`, the run page and
the /api/v1 run JSON all show, so their figures are the same.

Per node: executions that ran (and those reused or failed), model invocations, the batches they
rode in, prompt and completion tokens, images, API requests (model APIs and fetch), model busy
time, GPU-seconds, wall time (first start to last end), and the cost under the price table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from genarun.usage.cost import Cost, call_cost, model_cost, money
from genarun.usage.prices import PriceTable, price_table, table_note

COUNTS = (
    "executions",
    "reused",
    "failed",
    "invocations",
    "batches",
    "prompt_tokens",
    "completion_tokens",
    "tokens_unknown",
    "images",
    "api_calls",
    "unrecorded",
)
SECONDS = ("busy_s", "gpu_s", "wall_s")


@dataclass
class NodeUsage:
    node: str
    kind: str
    models: list[str] = field(default_factory=list)
    executions: int = 0  # that ran now (not reused), done or failed
    reused: int = 0
    failed: int = 0
    invocations: int = 0
    batches: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_unknown: int = 0  # invocations whose tokens the model did not count
    images: int = 0
    api_calls: int = 0
    # Executions of a model that recorded no usage (stored by a genarun before it did).
    unrecorded: int = 0
    busy_s: float = 0.0  # model busy time (its share of each batch)
    gpu_s: float = 0.0  # of it, on a GPU, scaled by the model's share of the GPU
    wall_s: float = 0.0  # first start to last end of its executions
    cost: Cost = field(default_factory=Cost)

    def to_json(self, currency: str) -> dict[str, Any]:
        out: dict[str, Any] = {"node": self.node, "kind": self.kind, "models": self.models}
        out.update({name: getattr(self, name) for name in COUNTS})
        out.update({name: round(getattr(self, name), 3) for name in SECONDS})
        out["cost"] = {**self.cost.to_json(), "text": self.cost.text(currency)}
        return out


@dataclass
class RunUsage:
    run_id: str
    nodes: list[NodeUsage]
    total: NodeUsage
    currency: str
    as_of: str
    note: str  # the price table's date and files, one line

    def to_json(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "prices_as_of": self.as_of,
            "prices": self.note,
            "nodes": [n.to_json(self.currency) for n in self.nodes],
            "total": self.total.to_json(self.currency),
        }


def _add_models(node: NodeUsage, usage: dict[str, Any], table: PriceTable, batches: set) -> None:
    for record in usage.get("models") or []:
        name = str(record.get("name") or record.get("id"))
        if name not in node.models:
            node.models.append(name)
        for key in ("invocations", "prompt_tokens", "completion_tokens", "tokens_unknown"):
            setattr(node, key, getattr(node, key) + int(record.get(key) or 0))
        node.images += int(record.get("images") or 0)
        node.api_calls += int(record.get("api_calls") or 0)
        node.busy_s += float(record.get("busy_s") or 0.0)
        node.gpu_s += float(record.get("gpu_s") or 0.0)
        node.cost.add(model_cost(record, table))
    batches.update(usage.get("batches") or [])


def fetch_calls(store: Any, run_id: str) -> list[tuple[str, str, int]]:
    """(node, host, requests sent) of each response a run's fetch nodes got (cache reuse sent
    none; retries count)."""
    rows = store.db.execute(
        "SELECT node_id, request, attempts FROM responses WHERE run_id = ? AND reused_from IS NULL",
        (run_id,),
    ).fetchall()
    out = []
    for node_id, request, attempts in rows:
        try:
            url = str(json.loads(request).get("url") or "")
        except (ValueError, AttributeError):
            url = ""
        out.append((str(node_id), urlsplit(url).hostname or "", max(int(attempts or 1), 1)))
    return out


# Per node, in the order its first execution was stored: its kind, executions that ran
# (not skipped, not reused), reused ones, failed ones, the first start and last end of those
# that ran, and done executions of a model that recorded no usage (an older genarun's rows).
_NODE_SQL = """
SELECT node_id, MIN(kind),
  SUM(status != 'skipped' AND reused_from IS NULL),
  SUM(status != 'skipped' AND reused_from IS NOT NULL),
  SUM(status = 'failed' AND reused_from IS NULL),
  MIN(CASE WHEN status != 'skipped' AND reused_from IS NULL AND ended IS NOT NULL
      THEN started END),
  MAX(CASE WHEN status != 'skipped' AND reused_from IS NULL AND started IS NOT NULL
      THEN ended END),
  SUM(usage IS NULL AND model IS NOT NULL AND status = 'done' AND reused_from IS NULL)
FROM executions WHERE run_id = ? GROUP BY node_id ORDER BY MIN(id)
"""
_USAGE_SQL = """
SELECT node_id, usage FROM executions
WHERE run_id = ? AND usage IS NOT NULL AND reused_from IS NULL AND status != 'skipped'
"""


def run_usage(store: Any, run_row: dict[str, Any]) -> RunUsage:
    """The usage of a stored run: the one function `runs show`, the API's run JSON and the
    run page call. Counts and spans are summed by SQLite and only the usage records are read,
    so the page of a long run stays fast."""
    import time

    # Plain SQL on the store's sqlite3 connection (no SQLAlchemy needed to show a run).
    nodes_rows = store.db.execute(_NODE_SQL, (run_row["id"],)).fetchall()
    usage_rows = store.db.execute(_USAGE_SQL, (run_row["id"],)).fetchall()
    return summarize(
        run_row, nodes_rows, usage_rows, fetch_calls(store, run_row["id"]), now=time.time()
    )


def summarize(
    run_row: dict[str, Any],
    node_rows: Sequence[Sequence[Any]],
    usage_rows: Sequence[Sequence[Any]],
    calls: list[tuple[str, str, int]],
    table: PriceTable | None = None,
    now: float | None = None,
) -> RunUsage:
    """The usage of one run from its per-node counts (_NODE_SQL), usage records (_USAGE_SQL)
    and fetch requests (fetch_calls)."""
    table = table or price_table()
    nodes: dict[str, NodeUsage] = {}
    batches: dict[str, set[str]] = {}
    for node_id, kind, ran, reused, failed, first, last, unrecorded in node_rows:
        node = nodes[node_id] = NodeUsage(node_id, kind)
        node.executions, node.reused, node.failed = (
            int(ran or 0),
            int(reused or 0),
            int(failed or 0),
        )
        node.wall_s = max(float(last or 0) - float(first or 0), 0.0) if first and last else 0.0
        node.unrecorded = int(unrecorded or 0)
        if node.unrecorded:
            node.cost.unknown = True
            node.cost.unpriced.add("usage not recorded (stored by an older genarun)")
        batches[node_id] = set()
    for node_id, text in usage_rows:
        try:
            usage = json.loads(text)
        except ValueError:
            continue
        if node_id in nodes and isinstance(usage, dict):
            _add_models(nodes[node_id], usage, table, batches[node_id])
    for node_id, host, sent in calls:
        node = nodes.get(node_id) or nodes.setdefault(node_id, NodeUsage(node_id, "fetch"))
        node.api_calls += sent
        node.cost.add(call_cost(host or "?", sent, table))
    total = NodeUsage("total", "")
    every_batch: set[str] = set()
    for node_id, node in nodes.items():
        every_batch |= batches.get(node_id, set())
        node.batches = len(batches.get(node_id, ()))
        for name in (*COUNTS[:4], *COUNTS[5:], "busy_s", "gpu_s"):
            setattr(total, name, getattr(total, name) + getattr(node, name))
        total.cost.add(node.cost)
        total.models += [m for m in node.models if m not in total.models]
    total.batches = len(every_batch)  # a batch serving two nodes is one batch
    started = run_row.get("started")
    ended = run_row.get("ended") or now
    total.wall_s = max(float(ended) - float(started), 0.0) if started and ended else 0.0
    return RunUsage(
        run_row["id"], list(nodes.values()), total, table.currency, table.as_of, table_note(table)
    )


def _int(value: int, unknown: int = 0) -> str:
    if not value and unknown:
        return "?"
    return f"{value:,}" + ("+?" if unknown else "")


HEAD = [
    "NODE", "RAN", "REUSED", "INVOC", "BATCHES", "TOKENS IN", "TOKENS OUT", "IMAGES",
    "API CALLS", "BUSY", "GPU", "WALL", "COST",
]  # fmt: skip


def usage_rows(usage: RunUsage) -> list[list[str]]:
    """The cells of the usage table, a row per node and the total: `runs show` and the run
    page print these same strings."""

    def seconds(value: float) -> str:
        return f"{value:.2f}s" if value else "-"

    return [
        [
            node.node,
            str(node.executions),
            str(node.reused),
            str(node.invocations),
            str(node.batches),
            _int(node.prompt_tokens, node.tokens_unknown + node.unrecorded),
            _int(node.completion_tokens, node.tokens_unknown + node.unrecorded),
            str(node.images),
            str(node.api_calls),
            seconds(node.busy_s),
            seconds(node.gpu_s),
            seconds(node.wall_s),
            node.cost.text(usage.currency),
        ]
        for node in [*usage.nodes, usage.total]
    ]


def unpriced_lines(usage: RunUsage) -> list[str]:
    """What has no price, and how to give it one (empty when every cost is known)."""
    if not usage.total.cost.unpriced:
        return []
    lines = ["unknown cost: " + "; ".join(sorted(usage.total.cost.unpriced))]
    if any(line.startswith("no price") for line in usage.total.cost.unpriced):
        lines.append(
            "(give the model a price: {input_per_1m, output_per_1m, per_image, per_call,"
            " per_gpu_hour} in the tree, or add it to a file named by $GENARUN_PRICES)"
        )
    return lines


def usage_table(usage: RunUsage) -> str:
    """The usage as a text table (runs show), a row per node and a total."""
    from genarun.store.reports import table

    lines = [f"usage and cost ({usage.note}):", table(usage_rows(usage), HEAD)]
    return "\n".join(lines + unpriced_lines(usage))


def spent(usage: RunUsage) -> str:
    return money(usage.total.cost.amount, usage.currency)
