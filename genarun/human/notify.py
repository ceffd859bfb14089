"""Publishing a request: where to answer it, and the `notify` POST that tells someone.

The answer URL is the webhook of `genarun serve` at $GENARUN_SERVE_URL (default
http://127.0.0.1:8765) with the request's token in it. The POST goes through the shared HTTP
client (genarun.net.http): bounded, retried with backoff under one idempotency key (the
receiver can tell a retry from a new request), signed with the Standard Webhooks scheme when
$GENARUN_WEBHOOK_SECRET is set. A failed notify is recorded on the request, which stays
answerable from the CLI, the webhook and the page.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from genarun.redaction import remember_secret

DEFAULT_SERVE_URL = "http://127.0.0.1:8765"


def serve_url() -> str:
    return (os.environ.get("GENARUN_SERVE_URL") or DEFAULT_SERVE_URL).rstrip("/")


def answer_url(hook_path: str, token: str | None) -> str:
    """The webhook URL of a request; with its token when known (only when it is made)."""
    url = serve_url() + hook_path
    return f"{url}?token={token}" if token else url


def payload(request: Any, token: str | None) -> dict[str, Any]:
    """What the notify POST says: the question, how to answer it, and until when."""
    from genarun.human.inbox import request_fields

    return {
        "type": "genarun.human.request",
        **request_fields(request),
        "answer_url": answer_url(request.hook_path, token),
        "answer_body": {"answer": "VALUE", "responder": "optional id"},
    }


def send_notify(url: str, body: dict[str, Any]) -> tuple[str, int]:
    """POST `body` to `url`; returns (status text to record, attempts). Never raises for the
    server's failures: they are recorded, and the request stays answerable."""
    import json

    from genarun.net.http import HttpClient, HttpPolicy
    from genarun.net.http_errors import HttpError

    content = json.dumps(body, ensure_ascii=False).encode()
    # Random hex only: the client treats a *-Key header as a credential and masks its value
    # (and text sharing runs of it) in every message, so no readable words go in it.
    message_id = uuid.uuid4().hex
    headers = {"Content-Type": "application/json", "Idempotency-Key": message_id}
    secret = os.environ.get("GENARUN_WEBHOOK_SECRET")
    if secret:
        from standardwebhooks.webhooks import Webhook

        remember_secret(secret)
        stamp = datetime.fromtimestamp(int(time.time()), UTC)
        headers |= {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": Webhook(secret).sign(message_id, stamp, content),
        }
    policy = HttpPolicy(total_timeout=20, max_retries=3, backoff=0.2, max_backoff=5)
    with HttpClient(policy) as client:
        try:
            # One idempotency key for every attempt: a retry is safe to send again.
            reply = client.request("POST", url, headers=headers, content=content, idempotent=True)
        except HttpError as exc:
            return f"failed: {exc}", exc.attempts
    return f"sent ({reply.status})", reply.attempts
