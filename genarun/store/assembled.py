"""Requests a text model assembled for `fetch` (`assemble:`), each stored as its own step.

A row is written once the model's parameters passed their schema, before the request is sent.
A later attempt at the same execution (resume, or a rerun that runs the fetch again with the
same inputs) finds the row and sends what it holds: a request that may have been sent is never
assembled again, and the user sees exactly what the model filled in (`runs show`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Float,
    Index,
    String,
    Table,
    Text,
    insert,
    select,
)

from genarun.redaction import redact
from genarun.store.db import metadata
from genarun.store.tables import execution_columns

if TYPE_CHECKING:
    from genarun.store.db import Store

# A new table needs no SCHEMA_VERSION bump (store/opening.py): an older genarun ignores it.
assembled_requests = Table(
    "assembled_requests",
    metadata,
    *execution_columns(),
    Column("inputs", String, nullable=False),  # hash of the spec, schema and the node's request
    Column("model", String),
    Column("prompt", Text),
    Column("answer", Text),  # the model's text
    Column("parameters", Text, nullable=False),  # JSON: the validated parameters
    Column("request", Text, nullable=False),  # JSON: method, url, params, headers, json
    Column("created", Float, nullable=False),
    Index("ix_assembled_requests_key", "run_id", "node_id", "path"),
)


@dataclass(frozen=True)
class AssembledRequest:
    """A stored assembly: the parameters and the request built from them."""

    id: int
    run_id: str
    parameters: dict[str, Any]
    request: dict[str, Any]
    created: float


def find_assembled(
    store: Store, run_ids: list[str], node_id: str, path: tuple[int, ...], inputs: str
) -> AssembledRequest | None:
    """The newest assembly of this execution with these inputs, from the first of `run_ids`
    (this run, then the run a rerun started from) that has one."""
    for run_id in run_ids:
        query = (
            select(assembled_requests)
            .where(
                assembled_requests.c.run_id == run_id,
                assembled_requests.c.node_id == node_id,
                assembled_requests.c.path == json.dumps(list(path)),
                assembled_requests.c.inputs == inputs,
            )
            .order_by(assembled_requests.c.id.desc())
            .limit(1)
        )
        row = store.conn.execute(query).mappings().first()
        if row is not None:
            return AssembledRequest(
                row["id"],
                row["run_id"],
                json.loads(row["parameters"]),
                json.loads(row["request"]),
                row["created"],
            )
    return None


def record_assembled(
    store: Store,
    *,
    run_id: str,
    node_id: str,
    path: tuple[int, ...],
    inputs: str,
    model: str,
    prompt: str,
    answer: str,
    parameters: dict[str, Any],
    request: dict[str, Any],
) -> None:
    """Store one assembly (committed at once: it is the step before a request leaves)."""
    row = {
        "run_id": run_id,
        "node_id": node_id,
        "path": json.dumps(list(path)),
        "inputs": inputs,
        "model": model,
        "prompt": redact(prompt),
        "answer": redact(answer),
        "parameters": redact(json.dumps(parameters, ensure_ascii=False, default=str)),
        "request": redact(json.dumps(request, ensure_ascii=False, default=str)),
        "created": time.time(),
    }
    store._write(insert(assembled_requests), [row])


def assembled_of_run(store: Store, run_id: str) -> list[dict[str, Any]]:
    """Every assembly a run made, oldest first (for `runs show`)."""
    query = (
        select(assembled_requests)
        .where(assembled_requests.c.run_id == run_id)
        .order_by(assembled_requests.c.id)
    )
    out = []
    for row in store.conn.execute(query).mappings():
        item = dict(row)
        item["path"] = json.loads(item["path"])
        item["parameters"] = json.loads(item["parameters"])
        item["request"] = json.loads(item["request"])
        out.append(item)
    return out


def assembled_report(rows: list[dict[str, Any]]) -> str:
    """A run's assembled requests as text: node, request, model and the parameters it filled."""
    lines = ["assembled requests"]
    for row in rows:
        index = "".join(f"[{i}]" for i in row["path"])
        request = row["request"]
        filled = json.dumps(row["parameters"], ensure_ascii=False)
        lines.append(
            f"  {row['node_id']}{index}  {request.get('method')} {request.get('url')}"
            f"  <- {row['model']}: {filled[:300]}"
        )
    return "\n".join(lines)
