"""Live progress: `GET /api/v1/runs/{run}/events`, server-sent events read from the store.

Every finished execution is a row of the executions table, committed at once, so the stream
is a replay of those rows in id order, then a look every quarter second for new ones. An event's
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

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import StreamingResponse

POLL_EVERY = 0.25  # seconds between looks for new executions
HEARTBEAT_EVERY = 15.0  # seconds between comments that keep proxies from closing the stream
BATCH = 2000  # rows per read (and per chunk sent)


def _after(request: Request) -> int:
    for value in (request.headers.get("last-event-id"), request.query_params.get("after")):
        if value and value.isdigit():
            return int(value)
    return 0


_COLUMNS = "id, node_id, path, kind, status, duration, model, seed, reused_from, error"


def _read(store: Any, run_id: str, after: int) -> tuple[list[tuple[Any, ...]], str, float | None]:
    """The run's status, then its executions after row `after`: in this order, so that a
    status other than running means every execution was committed before the rows were read
    (read the other way round, rows committed between the reads were never sent)."""
    from genarun.store.pauses import paused_since
    from genarun.store.processes import display_status

    conn = store.conn
    run = (
        conn.exec_driver_sql(
            "SELECT status, pid, host, heartbeat FROM runs WHERE id = ?", (run_id,)
        )
        .mappings()
        .first()
    )
    # a killed run's stream ends (`crashed`) instead of waiting for rows that never come
    status = display_status(dict(run)) if run is not None else "None"
    rows = conn.exec_driver_sql(
        f"SELECT {_COLUMNS} FROM executions WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?",
        (run_id, after, BATCH),
    ).fetchall()
    return [tuple(r) for r in rows], str(status), paused_since(store, run_id)


def _execution_events(rows: list[tuple[Any, ...]]) -> str:
    """The `execution` events of rows, as one chunk (one write for a batch, not one a row)."""
    out = []
    for row_id, node, path, kind, status, duration, model, seed, reused_from, error in rows:
        data = {
            "node": node,
            "index": json.loads(path) if path else [],
            "kind": kind,
            "status": status,
            "duration": duration,
            "model": model,
            "seed": seed,
            "reused": reused_from is not None,
            "error": error,
        }
        out.append(_event("execution", data, row_id))
    return "".join(out)


def _read_with(
    store: Callable[[], Any], run_id: str, after: int
) -> tuple[str, int, int, str, float | None]:
    """In a pool thread (its own Store; the JSON encoding kept off the event loop): the
    events of the rows after `after`, the last row's id, how many, the status, the pause."""
    rows, status, paused = _read(store(), run_id, after)
    last = rows[-1][0] if rows else after
    return _execution_events(rows), last, len(rows), status, paused


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
            events, last, count, status, now_paused = await run_in_threadpool(
                _read_with, store, run_id, last
            )
            if now_paused != paused:  # a state, not a row: a new stream hears it at once
                if now_paused is not None:
                    yield _event("paused", {"since": now_paused})
                elif paused is not None:
                    yield _event("unpaused", {})
                paused = now_paused
            if events:
                yield events
            if count == BATCH:
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
