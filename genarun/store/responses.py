"""The stored answers of `fetch` executions.

Each successful response is a row of `responses`: the request as rendered (secrets as
placeholders), status, content type, headers, and the body: in the row when it is small, in
a file of the run's folder (`assets/<node>-<path>.json`) when it is large. `runs show` shows
them, and a fetch with `cache: {ttl: ...}` reuses the newest row with the same request key that
is younger than its time to live (from any run of the database).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from genarun.redaction import redact
from genarun.store.db import responses, runs

if TYPE_CHECKING:
    from genarun.store.db import Store

# Bodies up to this size live in the row; larger ones in a file of the run's folder.
INLINE_BODY = 64 * 1024


@dataclass(frozen=True)
class StoredResponse:
    """A response read back for reuse."""

    id: int
    status: int
    content_type: str
    text: str
    fetched: float


def body_asset_name(node_id: str, path: tuple[int, ...], content_type: str) -> str:
    suffix = ".json" if "json" in content_type else ".txt"
    return f"assets/{node_id}{''.join(f'-{i}' for i in path)}.response{suffix}"


def response_row(
    *,
    run_id: str,
    node_id: str,
    path: tuple[int, ...],
    request: dict[str, Any],
    status: int,
    content_type: str,
    headers: dict[str, str],
    text: str,
    folder: Path | None,
    cache_key: str | None,
    elapsed: float,
    attempts: int,
    reused_from: int | None = None,
) -> dict[str, Any]:
    """The row of one response, redacted; a large body is written to a file under `folder`
    (the run's folder) now. Thread-safe: fetches make their rows on the I/O threads."""
    from genarun.store.confined import write_file

    # An API that echoes a secret back: masked by value, as outputs are.
    text = redact(text, patterns=False)
    data = text.encode()
    body: str | None = text
    asset: str | None = None
    if reused_from is not None:
        body = None  # the reused row holds it
    elif len(data) > INLINE_BODY and folder is not None:
        asset = body_asset_name(node_id, path, content_type)
        write_file(folder, asset, data)
        body = None
    row = {
        "run_id": run_id,
        "node_id": node_id,
        "path": json.dumps(list(path)),
        "request": redact(json.dumps(request, ensure_ascii=False, default=str)),
        "status": status,
        "content_type": content_type,
        "headers": redact(json.dumps(headers, ensure_ascii=False)),
        "body": body,
        "asset": asset,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "cache_key": cache_key,
        "fetched": time.time(),
        "elapsed": elapsed,
        "attempts": attempts,
        "reused_from": reused_from,
    }
    return row


def file_response(store: Store, row: dict[str, Any]) -> None:
    """Store a response's row, in the commit of the execution it belongs to (which the
    executor records next): a commit per response cost more than the request."""
    store.defer_row(responses, row)


def cached_response(store: Store, cache_key: str, ttl: float) -> StoredResponse | None:
    """The newest stored response with `cache_key` fetched within `ttl` seconds, whose body
    can still be read; None when there is none."""
    from genarun.store.confined import UnsafePath, read_bytes

    since = time.time() - ttl
    query = (
        select(
            responses.c.id,
            responses.c.status,
            responses.c.content_type,
            responses.c.body,
            responses.c.asset,
            responses.c.sha256,
            responses.c.fetched,
            runs.c.out_dir,
        )
        .join(runs, runs.c.id == responses.c.run_id)
        .where(
            responses.c.cache_key == cache_key,
            responses.c.fetched >= since,
            responses.c.reused_from.is_(None),
        )
        .order_by(responses.c.fetched.desc())
        .limit(5)
    )
    for row in store.conn.execute(query).mappings():
        text = row["body"]
        if text is None and row["asset"] and row["out_dir"]:
            try:
                data = read_bytes(Path(row["out_dir"]), row["asset"])
            except (OSError, UnsafePath):
                continue
            if hashlib.sha256(data).hexdigest() != row["sha256"]:
                continue  # changed since it was stored: not the response any more
            text = data.decode("utf-8", "replace")
        if text is None:
            continue
        return StoredResponse(
            row["id"], row["status"], row["content_type"] or "", text, row["fetched"]
        )
    return None


def responses_of(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The responses a run stored, in order, for `runs show`."""
    query = (
        select(responses)
        .where(responses.c.run_id == run_id)
        .order_by(responses.c.node_id, responses.c.path, responses.c.id)
    )
    out = []
    for row in store.conn.execute(query).mappings():
        item = dict(row)
        item["request"] = json.loads(item["request"])
        item["headers"] = json.loads(item["headers"]) if item["headers"] else {}
        out.append(item)
    return out


def responses_report(rows: list[dict[str, Any]]) -> str:
    """The responses of a run as text lines: node, request, status, type, size, where kept."""
    lines = ["responses"]
    for row in rows:
        index = "".join(f"[{i}]" for i in json.loads(row["path"]))
        request = row["request"]
        kept = (
            f"reused response {row['reused_from']}"
            if row["reused_from"]
            else row["asset"] or "in the database"
        )
        lines.append(
            f"  {row['node_id']}{index}  {request.get('method')} {request.get('url')}"
            f"  -> {row['status']} {row['content_type'] or '?'}, {row['size']:,} bytes ({kept})"
        )
    return "\n".join(lines)
