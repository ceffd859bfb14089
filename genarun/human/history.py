"""What a run asked people and how they answered, for `runs show` (no token, no hash)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from genarun.store.human import answers_of, run_requests

if TYPE_CHECKING:
    from genarun.store.db import Store


def run_summaries(store: Store, run_id: str) -> list[dict[str, Any]]:
    """A run's requests with their answers, for `runs show` (no token, no hash)."""
    out = []
    for request in run_requests(store, run_id):
        out.append(
            {
                "node": request.node_id,
                "path": list(request.path),
                "ask": request.ask,
                "question": request.question,
                "status": request.status,
                "created": request.created,
                "expires": request.expires,
                "on_timeout": request.on_timeout,
                "notify": request.notify_status,
                "result": request.result,
                "answers": [
                    {k: a[k] for k in ("value", "responder", "via", "created")}
                    for a in answers_of(store, request.id)
                ],
            }
        )
    return out


def summaries_text(summaries: list[dict[str, Any]]) -> list[str]:
    """`runs show`'s lines for a run's human requests."""
    from genarun.store.db import iso

    lines = ["", "human requests:"]
    for s in summaries:
        target = s["node"] + "".join(f"[{i}]" for i in s["path"])
        expiry = f", expires {iso(s['expires'])}" if s["expires"] else ""
        lines.append(f"  {target} ({s['ask']}): {s['status']}{expiry} - {s['question'][:80]}")
        for a in s["answers"]:
            shown = json.dumps(a["value"], ensure_ascii=False, default=str)[:80]
            lines.append(f"    {shown} by {a['responder']} via {a['via']} at {iso(a['created'])}")
        if s["notify"]:
            lines.append(f"    notify: {s['notify'][:160]}")
    return lines
