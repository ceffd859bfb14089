"""Human requests and their answers: the durable half of a `human` step.

A request is a row: the question, options and answer schema rendered once and pinned, the
execution's seed, the hash of its answer token (never the token), when it expires and what
happens then. Answers are rows of their own (value, who, when, how). A run that waits holds
no process: the rows are the wait.

Exactly one answer wins a single-answer request: recording it is a compare-and-swap (the
request's status moves from `waiting` to `answered` only if it still is `waiting`) in the same
transaction as the answer's insert, and a unique index on (request, slot) backs it up; a poll's
slot is the responder, so each responder votes once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from genarun.errors import StoreError, did_you_mean
from genarun.human.answers import output_of, tally, validate_answer
from genarun.store.db import metadata, runs
from genarun.store.tables import execution_columns

if TYPE_CHECKING:
    from genarun.store.db import Store

# Adding these tables needs no SCHEMA_VERSION bump (store/opening.py): an older genarun ignores
# them, and it cannot run a tree with a `human` node, so it never reads a waiting run as
# something to redo.
human_requests = Table(
    "human_requests",
    metadata,
    *execution_columns(),
    Column("ask", String, nullable=False),
    Column("question", Text, nullable=False),
    Column("options", Text),  # JSON list, rendered once
    Column("images", Text),  # JSON list of image paths
    Column("schema", Text, nullable=False),  # JSON Schema every answer is validated against
    Column("default_value", Text),  # JSON; NULL: no default
    Column("seed", Integer),
    Column("token_hash", String, nullable=False),  # sha256 of the answer token
    # waiting; answered (an answer or a closed poll); expired (its timeout passed first)
    Column("status", String, nullable=False),
    Column("created", Float, nullable=False),
    Column("expires", Float),
    Column("on_timeout", String, nullable=False),
    Column("collect", Integer),  # a poll: the answers it waits for; NULL: one answer
    Column("notify_url", Text),
    Column("notify_status", Text),  # "sent (200)", or why it failed, after its retries
    Column("notify_attempts", Integer),
    Column("result", Text),  # JSON: the node's output once answered (a poll: its tally)
    Column("resolved", Float),
    Index("ix_human_requests_key", "run_id", "node_id", "path", unique=True),
    Index("ix_human_requests_status", "status"),
)

human_answers = Table(
    "human_answers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", Integer, ForeignKey("human_requests.id"), nullable=False),
    Column("value", Text, nullable=False),  # JSON, as validated
    Column("responder", String, nullable=False),
    Column("via", String, nullable=False),  # cli, http, page
    Column("created", Float, nullable=False),
    Column("idempotency_key", String),
    # "" for a single answer (so a second one collides), the responder for a poll's vote
    Column("slot", String, nullable=False),
    Index("ix_human_answers_slot", "request_id", "slot", unique=True),
)


class RequestNotFound(StoreError):
    """No such run, node or item waiting for a person (HTTP 404)."""


class AnswerRefused(StoreError):
    """The request was answered already, or expired (HTTP 409)."""


@dataclass(frozen=True)
class HumanRequest:
    id: int
    run_id: str
    node_id: str
    path: tuple[int, ...]
    ask: str
    question: str
    options: list[Any] | None
    images: list[Any] | None
    schema: dict[str, Any]
    default: Any
    has_default: bool
    seed: int | None
    token_hash: str
    status: str
    created: float
    expires: float | None
    on_timeout: str
    collect: int | None
    notify_url: str | None
    notify_status: str | None
    result: Any
    resolved: float | None

    @property
    def target(self) -> str:
        """NODE or NODE[INDEX][...], as `genarun answer` takes it."""
        return self.node_id + "".join(f"[{i}]" for i in self.path)

    @property
    def hook_path(self) -> str:
        """The webhook's path under the server's root."""
        items = "".join(f"/{i}" for i in self.path)
        return f"/runs/{self.run_id}/{self.node_id}{items}/hook"

    def expired(self, at: float | None = None) -> bool:
        return self.expires is not None and (at or time.time()) >= self.expires

    def token_matches(self, token: str) -> bool:
        return hmac.compare_digest(hash_token(token), self.token_hash)


@dataclass(frozen=True)
class Recorded:
    """An answer that was accepted (or the same one again, for a repeated idempotency key)."""

    request: HumanRequest
    answer_id: int
    replayed: bool  # the idempotency key had been used for this answer already
    closed: bool  # the request is now answered (a single answer, or the poll's last vote)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _request(row: Any) -> HumanRequest:
    return HumanRequest(
        id=row["id"],
        run_id=row["run_id"],
        node_id=row["node_id"],
        path=tuple(json.loads(row["path"])),
        ask=row["ask"],
        question=row["question"],
        options=_loads(row["options"]),
        images=_loads(row["images"]),
        schema=json.loads(row["schema"]),
        default=_loads(row["default_value"]),
        has_default=row["default_value"] is not None,
        seed=row["seed"],
        token_hash=row["token_hash"],
        status=row["status"],
        created=row["created"],
        expires=row["expires"],
        on_timeout=row["on_timeout"],
        collect=row["collect"],
        notify_url=row["notify_url"],
        notify_status=row["notify_status"],
        result=_loads(row["result"]),
        resolved=row["resolved"],
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def open_request(
    store: Store,
    *,
    run_id: str,
    node_id: str,
    path: tuple[int, ...],
    ask: str,
    question: str,
    options: list[Any] | None,
    images: list[Any] | None,
    schema: dict[str, Any],
    default: Any,
    has_default: bool,
    seed: int | None,
    timeout: float | None,
    on_timeout: str,
    collect: int | None,
    notify_url: str | None,
) -> tuple[HumanRequest, str | None]:
    """The request of (run, node, path): the stored one if it exists (pinned: a resume never
    renders a different question), else a new one; returns it and, when new, its token."""
    found = find_request(store, run_id, node_id, path)
    if found is not None:
        return found, None
    token = new_token()
    created = time.time()
    try:
        store._write(
            insert(human_requests).values(
                run_id=run_id,
                node_id=node_id,
                path=json.dumps(list(path)),
                ask=ask,
                question=question,
                options=None if options is None else _dumps(options),
                images=None if images is None else _dumps(images),
                schema=_dumps(schema),
                default_value=_dumps(default) if has_default else None,
                seed=seed,
                token_hash=hash_token(token),
                status="waiting",
                created=created,
                expires=created + timeout if timeout else None,
                on_timeout=on_timeout,
                collect=collect,
                notify_url=notify_url,
            )
        )
    except IntegrityError:  # another process made it first: theirs is the request
        found = find_request(store, run_id, node_id, path)
        assert found is not None
        return found, None
    made = find_request(store, run_id, node_id, path)
    assert made is not None
    return made, token


def find_request(
    store: Store, run_id: str, node_id: str, path: tuple[int, ...]
) -> HumanRequest | None:
    row = (
        store.conn.execute(
            select(human_requests).where(
                human_requests.c.run_id == run_id,
                human_requests.c.node_id == node_id,
                human_requests.c.path == json.dumps(list(path)),
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else _request(row)


def get_request(store: Store, request_id: int) -> HumanRequest:
    row = (
        store.conn.execute(select(human_requests).where(human_requests.c.id == request_id))
        .mappings()
        .first()
    )
    if row is None:
        raise RequestNotFound(f"no human request {request_id}")
    return _request(row)


def locate(store: Store, run_ref: str, node_id: str, path: tuple[int, ...]) -> HumanRequest:
    """The request of a run (id, prefix or `latest`), node and foreach item, or a message
    naming what the run does wait for."""
    try:
        run = store.resolve_run(run_ref)
    except StoreError as exc:
        raise RequestNotFound(str(exc)) from None
    found = find_request(store, run["id"], node_id, path)
    if found is not None:
        return found
    waiting = run_requests(store, run["id"])
    target = node_id + "".join(f"[{i}]" for i in path)
    if not waiting:
        raise RequestNotFound(f"run {run['id'][:8]} has no human request (none for {target})")
    names = ", ".join(r.target for r in waiting[:10])
    hint = did_you_mean(target, {r.target for r in waiting})
    raise RequestNotFound(
        f"run {run['id'][:8]} has no human request {target}; it has: {names}"
        + (f" ({hint})" if hint else "")
    )


def run_requests(store: Store, run_id: str) -> list[HumanRequest]:
    rows = store.conn.execute(
        select(human_requests)
        .where(human_requests.c.run_id == run_id)
        .order_by(human_requests.c.id)
    ).mappings()
    return [_request(r) for r in rows]


def waiting_requests(store: Store, limit: int = 200) -> list[HumanRequest]:
    """Requests still waiting for a person, oldest first."""
    rows = store.conn.execute(
        select(human_requests)
        .where(human_requests.c.status == "waiting")
        .order_by(human_requests.c.created, human_requests.c.id)
        .limit(limit)
    ).mappings()
    return [_request(r) for r in rows]


def answers_of(store: Store, request_id: int) -> list[dict[str, Any]]:
    rows = store.conn.execute(
        select(human_answers)
        .where(human_answers.c.request_id == request_id)
        .order_by(human_answers.c.id)
    ).mappings()
    return [{**dict(r), "value": json.loads(r["value"])} for r in rows]


def vote_count(store: Store, request_id: int) -> int:
    stmt = select(func.count()).where(human_answers.c.request_id == request_id)
    return int(store.conn.execute(stmt).scalar() or 0)


def run_exists(store: Store, run_id: str) -> bool:
    return store.conn.execute(select(runs.c.id).where(runs.c.id == run_id)).first() is not None


def record_answer(
    store: Store,
    request: HumanRequest,
    value: Any,
    *,
    responder: str,
    via: str,
    idempotency_key: str | None = None,
) -> Recorded:
    """Validate `value` (AnswerInvalid) and record it, or raise AnswerRefused (answered, voted
    or expired already; the same idempotency key again returns the first answer instead)."""
    validate_answer(value, request.schema)
    now = time.time()
    poll = request.collect is not None
    row = {
        "request_id": request.id,
        "value": _dumps(value),
        "responder": responder,
        "via": via,
        "created": now,
        "idempotency_key": idempotency_key,
        "slot": responder if poll else "",
    }
    try:
        with store.transaction():
            if not poll:
                # The compare-and-swap first: its write lock serializes racing answerers, and
                # only the one that finds the request still waiting moves it on.
                swapped = store._write(
                    update(human_requests)
                    .where(
                        human_requests.c.id == request.id,
                        human_requests.c.status == "waiting",
                        (human_requests.c.expires.is_(None)) | (human_requests.c.expires > now),
                    )
                    .values(
                        status="answered",
                        result=_dumps(output_of(request.ask, request.options, value)),
                        resolved=now,
                    )
                )
                if swapped.rowcount != 1:
                    raise _Lost
                answer_id = store._write(insert(human_answers).values(**row)).inserted_primary_key[
                    0
                ]
                closed = True
            else:
                answer_id = store._write(insert(human_answers).values(**row)).inserted_primary_key[
                    0
                ]
                current = get_request(store, request.id)  # read under the write lock
                if current.status != "waiting" or current.expired(now):
                    raise _Lost
                votes = [a["value"] for a in answers_of(store, request.id)]
                closed = len(votes) >= (request.collect or 1)
                if closed:
                    store._write(
                        update(human_requests)
                        .where(human_requests.c.id == request.id)
                        .values(
                            status="answered",
                            result=_dumps(tally(request.ask, request.options, votes)),
                            resolved=now,
                        )
                    )
    except (_Lost, IntegrityError):
        return _replay_or_refuse(store, request, responder, idempotency_key)
    return Recorded(get_request(store, request.id), int(answer_id), False, closed)


class _Lost(Exception):
    """The compare-and-swap found the request no longer waiting."""


def _replay_or_refuse(
    store: Store, request: HumanRequest, responder: str, idempotency_key: str | None
) -> Recorded:
    current = get_request(store, request.id)
    answers = answers_of(store, request.id)
    if idempotency_key:
        for answer in answers:
            if answer["idempotency_key"] == idempotency_key:
                return Recorded(current, int(answer["id"]), True, current.status == "answered")
    if request.collect is not None and any(a["slot"] == responder for a in answers):
        raise AnswerRefused(f"{_name(current)}: {responder} has voted already (one vote each)")
    if current.status == "answered":
        first = next((a for a in answers if a["slot"] == ""), answers[0] if answers else None)
        by = f" by {first['responder']} via {first['via']}" if first else ""
        raise AnswerRefused(f"{_name(current)} was answered already{by}")
    raise AnswerRefused(f"{_name(current)} expired before this answer (timeout passed)")


def _name(request: HumanRequest) -> str:
    return f"request {request.target} of run {request.run_id[:8]}"


def close_on_timeout(store: Store, request: HumanRequest) -> HumanRequest:
    """Close an expired request: a poll with votes closes with its tally, anything else
    becomes `expired`. Only a request still waiting moves (an answer may have won the race)."""
    now = time.time()
    votes = [a["value"] for a in answers_of(store, request.id)] if request.collect else []
    values: dict[str, Any] = {"resolved": now}
    if votes:
        values |= {
            "status": "answered",
            "result": _dumps(tally(request.ask, request.options, votes)),
        }
    else:
        values["status"] = "expired"
    store._write(
        update(human_requests)
        .where(human_requests.c.id == request.id, human_requests.c.status == "waiting")
        .values(**values)
    )
    return get_request(store, request.id)


def set_notified(store: Store, request_id: int, status: str, attempts: int) -> None:
    store._write(
        update(human_requests)
        .where(human_requests.c.id == request_id)
        .values(notify_status=status[:500], notify_attempts=attempts)
    )


def rotate_token(store: Store, request_id: int) -> str:
    """A fresh answer token for a request (the old one stops working); only its hash is kept."""
    token = new_token()
    store._write(
        update(human_requests)
        .where(human_requests.c.id == request_id)
        .values(token_hash=hash_token(token))
    )
    return token
