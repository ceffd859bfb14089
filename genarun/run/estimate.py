"""`genarun estimate TREE`: what a run would do, from the tree and the database's history.

Per node: the executions planned (foreach sizes known before the run, else taken from the last
run of the same tree), those the execution cache will reuse, the time of one execution from
past executions of the same kind and model (median and 90th percentile) and the API calls.
Nothing runs and nothing is written.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sqlalchemy import and_, select

from genarun.graph.compiled import CompiledNode, CompiledTree
from genarun.store.db import Store, executions, runs
from genarun.tree.template_core import Compiled
from genarun.usage.cost import Cost
from genarun.usage.forecast import Forecast, forecast

# Kinds whose every execution that is not reused is one request to a remote service.
API_KINDS = frozenset({"fetch"})


@dataclass
class NodeEstimate:
    node: str
    kind: str
    model: str | None
    planned: int | None  # executions over all runs of the matrix; None: unknown
    planned_from: str  # "tree" (sizes known before the run), "last run", "unknown"
    reused: int  # of those, executions the cache will reuse
    median_s: float | None  # one execution, past executions of this kind and model
    p90_s: float | None
    samples: int  # past executions the times come from
    api_calls: int
    # Tokens, images and cost of the executions to run (genarun.usage.forecast).
    usage: Forecast = field(default_factory=Forecast)

    @property
    def to_run(self) -> int | None:
        return None if self.planned is None else max(self.planned - self.reused, 0)

    def total_s(self, per: float | None) -> float | None:
        """Execution time of the ones to run, one after another (batching makes it less)."""
        if self.to_run is None or per is None:
            return None
        return self.to_run * per

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "usage"}
        out.update(self.usage.to_json())
        out.update(
            to_run=self.to_run,
            total_median_s=self.total_s(self.median_s),
            total_p90_s=self.total_s(self.p90_s),
        )
        return out


def _constant(
    compiled: Compiled | None, known: dict[str, Any] | None = None, *, picks: bool = True
) -> tuple[bool, Any]:
    """(True, value) for a field that reads nothing (a literal, `range(3)`) or only outputs
    known before the run (`known`: _known_outputs), else (False, None). With `picks` False, a
    value that draws a random pick is not known either (a pick in a text can change its lines;
    in a literal list, `["[a | b]", c]`, it leaves the length alone)."""
    if compiled is None:
        return True, None
    if not compiled.names <= (known or {}).keys():
        return False, None
    drawn: list[Any] = []
    try:
        value = compiled.evaluate({n: (known or {})[n] for n in compiled.names}, None, drawn)
    except Exception:  # anything needing a run: not known beforehand
        return False, None
    return (False, None) if drawn and not picks else (True, value)


def _known_outputs(tree: CompiledTree) -> dict[str, Any]:
    """The outputs a run is sure to give, known before it: a `template` node outside any
    foreach and `when` whose text reads nothing and draws no pick renders to itself, parsed as
    the run parses it. A foreach over one (`foreach: plan`, `foreach: "{{ plan[:2] }}"`) has a
    size known before the run."""
    from genarun.nodes.base import parse_output

    # A var or matrix value of the same name would be what a foreach reads, not the node.
    shadowed = {name for name, _ in tree.tree_vars} | set(tree.matrix) | set(tree.overrides)
    known: dict[str, Any] = {}
    for node_id, node in tree.nodes.items():
        lineage = [tree.nodes[a] for a in node.ancestors] + [node]
        if (
            node.kind.name != "template"
            or node_id in shadowed
            or node.loops
            or any(n.when is not None or n.skip_reason is not None for n in lineage)
        ):
            continue
        has_text, text = _constant(node.params.get("text"), picks=False)
        has_parse, parse = _constant(node.params.get("parse"))
        if not (has_text and has_parse):
            continue
        try:
            known[node_id] = parse_output(text, parse or "text") if isinstance(text, str) else text
        except Exception:  # text the run would fail to parse: its node fails, nothing is known
            continue
    return known


def _static_size(tree: CompiledTree, node: CompiledNode, known: dict[str, Any]) -> int | None:
    """Executions of `node` in one run when every foreach above it (and its own) has a size
    known before the run; None otherwise."""
    size = 1
    for loop in node.loops:
        looped = tree.nodes[loop]
        # Names the loop's own scope binds (vars above it, items of outer loops) are not nodes.
        bound = {name for a in (*looped.ancestors, loop) for name, _ in tree.nodes[a].vars}
        bound |= {tree.nodes[outer].item_name for outer in looped.loops if outer != loop}
        usable = {k: v for k, v in known.items() if k not in bound}
        found, items = _constant(looped.foreach, usable)
        if not found or not isinstance(items, list | tuple | range | dict):
            return None
        size *= len(items)
    return size


def _model_name(node: CompiledNode) -> str | None:
    known, value = _constant(node.params.get("model"))
    return value if known and isinstance(value, str) else None


def _last_run(store: Store, tree_path: Path) -> dict[str, Any] | None:
    row = (
        store.conn.execute(
            select(runs)
            .where(runs.c.tree_path == str(tree_path))
            .order_by(runs.c.started.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted `values`."""
    return values[max(math.ceil(q * len(values)) - 1, 0)]


def estimate(
    compiled: CompiledTree,
    store: Store | None,
    run_count: int,
    seed: int | None,
    cache: bool = True,
) -> list[NodeEstimate]:
    """Per node of `compiled`, in tree order, what `run_count` runs of it would do."""
    tree_path = compiled.loaded.path.resolve()
    last = _last_run(store, tree_path) if store is not None else None
    last_rows: list[dict[str, Any]] = []
    if store is not None and last is not None:
        last_rows = [dict(r) for r in store.run_executions(last["id"])]
    same_text = last is not None and last.get("tree_text") == compiled.loaded.doc.text
    seed_now = seed if seed is not None else compiled.loaded.spec.seed
    # The cache reuses an execution whose kind, rendered parameters, inputs, model and seed are
    # stored: the same tree text run with the same fixed seed renders the same ones.
    same_inputs = (
        cache
        and same_text
        and last is not None
        and not last.get("seed_random")
        # No seed, or `random`: each run draws a fresh one, which no stored execution has.
        and isinstance(seed_now, int)
        and seed_now == last.get("seed")
        and run_count == 1
    )
    out = []
    known = _known_outputs(compiled)
    for node_id, node in compiled.nodes.items():
        if node.skip_reason is not None:
            continue
        mine = [r for r in last_rows if r["node_id"] == node_id]
        size = _static_size(compiled, node, known)
        if size is not None:
            planned, source = size * run_count, "tree"
        elif last is not None:
            planned, source = len({r["path"] for r in mine}) * run_count, "last run"
        else:
            planned, source = None, "unknown"
        reused = 0
        # Kinds the cache never serves (template, fetch, human...) run every time.
        if same_inputs and planned is not None and node.kind.cacheable:
            keys = {r["cache_key"] for r in mine if r["status"] == "done" and r["cache_key"]}
            reused = min(len(keys), planned)
        model = _model_name(node)
        durations = _durations(store, node.kind.name, model) if store is not None else []
        median = statistics.median(durations) if durations else None
        p90 = _percentile(durations, 0.9) if durations else None
        estimate_row = NodeEstimate(
            node_id, node.kind.name, model, planned, source, reused, median, p90,
            len(durations), 0,
        )  # fmt: skip
        if _is_api(compiled, node, model):
            estimate_row.api_calls = estimate_row.to_run or 0
        estimate_row.usage = forecast(compiled, node, model, store, estimate_row.to_run)
        out.append(estimate_row)
    return out


def _durations(store: Store, kind: str, model: str | None) -> list[float]:
    """Durations of past executions that ran (not reused) of `kind` with `model`, sorted."""
    where = and_(
        executions.c.kind == kind,
        executions.c.status == "done",
        executions.c.reused_from.is_(None),
        executions.c.duration.is_not(None),
        executions.c.model == model if model is not None else executions.c.model.is_(None),
    )
    rows = store.conn.execute(select(executions.c.duration).where(where)).scalars()
    return sorted(float(d) for d in rows)


def _is_api(compiled: CompiledTree, node: CompiledNode, model: str | None) -> bool:
    if node.kind.name in API_KINDS:
        return True
    if model is None:
        return False
    from genarun.errors import GenarunError
    from genarun.models.catalog import resolve_model

    try:
        spec = resolve_model(model, compiled.loaded.spec.models or {})
    except GenarunError:
        return False
    return spec.provider == "openai"


def estimate_json(rows: list[NodeEstimate]) -> str:
    return json.dumps([r.to_json() for r in rows], indent=2)


def estimate_table(rows: list[NodeEstimate]) -> str:
    from genarun.store.reports import table

    def seconds(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}s"

    def count(v: int | None) -> str:
        return "?" if v is None else str(v)

    from genarun.usage.prices import price_table, table_note

    def tokens(r: NodeEstimate, v: float | None) -> str:
        if v is None:  # unknown, or nothing a model reads or writes (a template, a fetch)
            return "?" if r.usage.source == "unknown" else "-"
        return f"{round(v):,}"

    body = [
        [
            r.node,
            r.kind,
            r.model or "-",
            count(r.planned) + ("" if r.planned_from == "tree" else f" ({r.planned_from})"),
            str(r.reused),
            seconds(r.median_s),
            seconds(r.p90_s),
            seconds(r.total_s(r.median_s)),
            seconds(r.total_s(r.p90_s)),
            str(r.api_calls),
            tokens(r, r.usage.prompt_tokens),
            tokens(r, r.usage.completion_tokens),
            r.usage.cost.text(price_table().currency),
            r.usage.source,
        ]
        for r in rows
    ]
    head = ["NODE", "KIND", "MODEL", "PLANNED", "REUSED", "MEDIAN", "P90", "TIME", "TIME P90"]
    text = table(body, [*head, "API CALLS", "TOKENS IN", "TOKENS OUT", "COST", "USAGE FROM"])
    known = [r.total_s(r.median_s) for r in rows]
    if all(v is not None for v in known):
        total = sum(v for v in known if v is not None)
        text += f"\ntotal: {total:.2f}s of execution time (median), one after another"
    else:
        text += "\ntotal: unknown (nodes without past executions or foreach sizes)"
    cost = total_cost(rows)
    text += f"\ncost: {cost.text(price_table().currency)} ({table_note(price_table())})"
    if cost.unpriced:
        text += "\n  unknown: " + "; ".join(sorted(cost.unpriced))
    return text


def total_cost(rows: list[NodeEstimate]) -> Cost:
    """The estimated cost of the run: the known part, and whether some is unknown."""
    total = Cost()
    for row in rows:
        total.add(row.usage.cost)
    return total
