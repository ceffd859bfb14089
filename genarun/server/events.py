"""Live progress: `GET /api/v1/runs/{run}/events`, server-sent events read from the store.

Every finished execution is a row of the executions table, committed at once, so the stream
is a replay of those rows in id order, then a look every half second for new ones. An event's
id is the row's id: a browser that reconnects sends `Last-Event-ID` (or `?after=`) and gets
only what it missed, from SQLite, whether the server restarted or not. When the run is no
longer running and nothing new is left, an `end` event carries its status and the stream ends.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import StreamingResponse

POLL_EVERY = 0.5  # seconds between looks for new executions
HEARTBEAT_EVERY = 15.0  # seconds between comments that keep proxies from closing the stream
BATCH = 500  # rows per read


def _after(request: Request) -> int:
    for value in (request.headers.get("last-event-id"), request.query_params.get("after")):
        if value and value.isdigit():
            return int(value)
    return 0


def _read(store: Any, run_id: str, after: int) -> tuple[list[dict[str, Any]], str, float | None]:
    from genarun.store.db import executions, runs
    from genarun.store.pauses import paused_since

    rows = store.conn.execute(
        select(
            executions.c.id,
            executions.c.node_id,
            executions.c.path,
            executions.c.kind,
            executions.c.status,
            executions.c.duration,
            executions.c.model,
            executions.c.seed,
            executions.c.reused_from,
            executions.c.error,
        )
        .where(executions.c.run_id == run_id, executions.c.id > after)
        .order_by(executions.c.id)
        .limit(BATCH)
    ).mappings()
    status = store.conn.execute(select(runs.c.status).where(runs.c.id == run_id)).scalar()
    return [dict(r) for r in rows], str(status), paused_since(store, run_id)


def _read_with(
    store: Callable[[], Any], run_id: str, after: int
) -> tuple[list[Any], str, float | None]:
    return _read(store(), run_id, after)


def _event(name: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, default=str)}\n\n"


def event_stream(store: Callable[[], Any], run_id: str, after: int) -> StreamingResponse:
    """The response streaming `run_id`'s executions after row `after`."""

    async def stream() -> AsyncIterator[str]:
        last = after
        beat = time.monotonic()
        paused: float | None = None
        while True:
            # The store of the pool thread that reads (a Store is not shared across threads).
            rows, status, now_paused = await run_in_threadpool(_read_with, store, run_id, last)
            if now_paused != paused:  # a state, not a row: a new stream hears it at once
                if now_paused is not None:
                    yield _event("paused", {"since": now_paused})
                elif paused is not None:
                    yield _event("unpaused", {})
                paused = now_paused
            for row in rows:
                last = row["id"]
                path = json.loads(row["path"]) if row["path"] else []
                yield _event(
                    "execution",
                    {
                        "node": row["node_id"],
                        "index": path,
                        "kind": row["kind"],
                        "status": row["status"],
                        "duration": row["duration"],
                        "model": row["model"],
                        "seed": row["seed"],
                        "reused": row["reused_from"] is not None,
                        "error": row["error"],
                    },
                    row["id"],
                )
            if len(rows) == BATCH:
                continue  # more to replay at once
            if status != "running":
                yield _event("end", {"status": status})
                return
            if time.monotonic() - beat > HEARTBEAT_EVERY:
                beat = time.monotonic()
                yield ": still running\n\n"
            await asyncio.sleep(POLL_EVERY)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
