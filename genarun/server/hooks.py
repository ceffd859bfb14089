"""The answer webhook: `POST /runs/<run>/<node>[/<index>...]/hook`.

Body: `{"answer": VALUE, "responder": "optional id"}`. Authorised by the request's own token
(`?token=`, `Authorization: Bearer`, or `X-Genarun-Token`; only its hash is stored), or by a
Standard Webhooks signature (`webhook-id`, `webhook-timestamp` within 5 minutes,
`webhook-signature`) made with the server's webhook secret. Statuses: 401 no credential, 403 a
wrong one, 404 no such run, node or item, 413 a body too large, 422 a malformed body or an
answer the schema refuses (with the reason and what is accepted), 409 answered or expired
already (the same idempotency key again: the first answer's 200), 200 accepted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from genarun.human.answers import AnswerInvalid, accepted
from genarun.store.human import (
    AnswerRefused,
    HumanRequest,
    Recorded,
    find_request,
    record_answer,
    run_exists,
)

MAX_BODY = 1 << 20  # an answer is small; a megabyte is generous
_RUN_ID = re.compile(r"[0-9a-f]{32}")
_RESPONDER = re.compile(r"[\w.@:+\-]{1,100}")


@dataclass(frozen=True)
class HookReply:
    status: int
    body: dict[str, Any]
    run_id: str | None = None  # an answer closed a request of this run: it can continue


def parse_hook_path(rest: str) -> tuple[str, tuple[int, ...]] | None:
    """`node[/index...]/hook` -> (node, path); None when the path is not a hook's."""
    parts = rest.strip("/").split("/")
    if len(parts) < 2 or parts[-1] != "hook":
        return None
    node, items = parts[0], parts[1:-1]
    if not node or not all(i.isdigit() and len(i) < 10 for i in items):
        return None
    return node, tuple(int(i) for i in items)


def credential(headers: dict[str, str], query: dict[str, str]) -> tuple[str, str] | None:
    """("token", value) or ("signature", "") from a request's headers and query; None: none."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return "token", auth[7:].strip()
    for value in (headers.get("x-genarun-token"), query.get("token")):
        if value:
            return "token", value
    if any(h in headers for h in ("webhook-signature", "webhook-id", "webhook-timestamp")):
        return "signature", ""
    return None


def answer_hook(
    store: Any,
    run_id: str,
    node_id: str,
    path: tuple[int, ...],
    *,
    headers: dict[str, str],
    query: dict[str, str],
    body: bytes,
    webhook_secret: str | None,
    client: str,
) -> HookReply:
    """Authorise, validate and record one answer; the reply says how it went."""
    found = credential(headers, query)
    if found is None:
        return HookReply(
            401,
            {
                "error": "no credential: give the request's token (?token=, or Authorization: "
                "Bearer) or a Standard Webhooks signature"
            },
        )
    request = find_request(store, run_id, node_id, path) if _RUN_ID.fullmatch(run_id) else None
    if request is None:
        target = node_id + "".join(f"[{i}]" for i in path)
        what = (
            "run" if not _RUN_ID.fullmatch(run_id) or not run_exists(store, run_id) else "request"
        )
        message = (
            f"no run {run_id[:40]}"
            if what == "run"
            else f"run {run_id[:8]} has no request {target}"
        )
        return HookReply(404, {"error": message})
    how, token = found
    if how == "token":
        if not request.token_matches(token):
            return HookReply(403, {"error": "wrong token for this request"})
    else:
        refused = _check_signature(body, headers, webhook_secret)
        if refused:
            return HookReply(403, {"error": refused})
    parsed = _parse_body(body)
    if isinstance(parsed, str):
        return HookReply(422, {"error": parsed, "accepted": accepted(request.schema)})
    value, responder = parsed
    key = headers.get("idempotency-key") or headers.get("webhook-id")
    try:
        recorded = record_answer(
            store,
            request,
            value,
            responder=responder or f"http:{client}",
            via="http",
            idempotency_key=key,
        )
    except AnswerInvalid as exc:
        return HookReply(422, {"error": f"invalid answer: {exc}", "schema": request.schema})
    except AnswerRefused as exc:
        return HookReply(409, {"error": str(exc), "status": _status_of(store, request)})
    return HookReply(200, accepted_body(recorded), request.run_id if recorded.closed else None)


def accepted_body(recorded: Recorded) -> dict[str, Any]:
    request = recorded.request
    body: dict[str, Any] = {
        "accepted": True,
        "replayed": recorded.replayed,
        "run": request.run_id,
        "node": request.node_id,
        "path": list(request.path),
        "status": request.status,
    }
    if request.status == "answered":
        body["result"] = request.result
    return body


def _status_of(store: Any, request: HumanRequest) -> str:
    current = find_request(store, request.run_id, request.node_id, request.path)
    return current.status if current else "gone"


def _check_signature(body: bytes, headers: dict[str, str], secret: str | None) -> str | None:
    """Why a Standard Webhooks signature is refused, or None when it verifies."""
    if not secret:
        return "signed webhooks are not accepted here: the server has no webhook secret (use the request's token)"
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except WebhookVerificationError as exc:
        return f"signature refused: {exc}"
    return None


def _parse_body(body: bytes) -> tuple[Any, str | None] | str:
    """(answer, responder), or why the body is malformed."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return 'the body is not JSON: send {"answer": VALUE, "responder": "optional id"}'
    if not isinstance(data, dict) or "answer" not in data:
        return 'the body needs an "answer": send {"answer": VALUE, "responder": "optional id"}'
    unknown = sorted(set(data) - {"answer", "responder"})
    if unknown:
        return f"unknown field(s) {', '.join(unknown)}: the body has answer and responder"
    responder = data.get("responder")
    if responder is not None and (
        not isinstance(responder, str) or not _RESPONDER.fullmatch(responder)
    ):
        return "responder: up to 100 letters, digits and . @ : + - _"
    return data["answer"], responder
