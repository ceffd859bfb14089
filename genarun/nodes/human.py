"""`human`: asks a person and waits for the answer, durably (a `Wait` effect).

The first execution renders the question, options and images once and stores them as a
request (with the execution's seed and the hash of an answer token): a resume finds that
request again and never renders a different question. A request with `notify` is POSTed once,
as an I/O call. Then the node yields a `Wait` whose poll reads the request's row: an answer
(CLI, webhook, page) is the output; a passed timeout applies `on_timeout`. While it waits, the
rest of the run goes on; when only waits are left, the run ends `waiting` and nothing is held.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from genarun.human.answers import ASKS, answer_schema, parse_duration, validate_answer
from genarun.nodes.base import ExecutionContext, NodeKind, SkipExecution
from genarun.nodes.effects import Call, Wait
from genarun.tree.schema import NodeBase, PositiveInt, Strict, TemplateStr

Ask = Literal["choice", "multi", "text", "number", "best", "approve"]


class Collect(Strict):
    """A poll: the answers to wait for (one vote per responder), and until when."""

    answers: PositiveInt | TemplateStr | None = Field(
        None, description="How many answers close the poll."
    )
    until: str | float | None = Field(
        None,
        description="How long the poll stays open after it is asked (90s, 30m, 2h, 3d; seconds "
        "as a number); it then closes with the votes it has.",
    )

    # A field validator (not the model's), so a bad duration is reported at its own line.
    @field_validator("until")
    @classmethod
    def _until(cls, value: str | float | None) -> str | float | None:
        if value is not None and not _template(value):
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _something(self) -> Collect:
        if self.answers is None and self.until is None:
            raise ValueError("collect needs answers (how many close the poll), until, or both")
        return self


class HumanNode(NodeBase):
    ask: Ask = Field(
        description="choice (one of options), multi (several), text, number, best (the best of "
        "options: an upstream foreach's outputs) or approve (true/false)."
    )
    question: str = Field(description="What the person is asked (a template, rendered once).")
    options: Any = Field(
        None,
        description="The choices (choice, multi, best): a list, or an upstream output that is one.",
    )
    images: Any = Field(None, description="Images shown with the question (a list or an output).")
    answer_schema: dict[str, Any] | None = Field(
        None,
        alias="schema",
        description="A JSON Schema for a free-form JSON answer (with ask: text).",
    )
    default: Any = Field(
        None, description="The output when the timeout passes (on_timeout: default)."
    )
    timeout: str | float | None = Field(
        None, description="How long to wait (90s, 30m, 2h, 3d; seconds as a number); none: forever."
    )
    on_timeout: Literal["default", "fail", "skip"] | None = Field(
        None,
        description="When the timeout passes: default (output `default`), fail, or skip the node "
        "and its subtree (default: default when a default is given, else fail).",
    )
    notify: str | None = Field(
        None,
        description="A URL the request is POSTed to (question, options, schema and answer URL).",
    )
    collect: Collect | None = Field(
        None,
        description="A poll: {answers: N, until: duration}; the output is the tally and winner.",
    )

    @field_validator("notify")
    @classmethod
    def _notify(cls, value: str | None) -> str | None:
        # A written-out URL is checked now: a typo would only be found when the POST fails.
        if value is None or _template(value):
            return value
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"'{value}' is not an absolute http(s) URL: write it as https://chat.example.com/hook"
            )
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: str | float | None) -> str | float | None:
        if value is not None and not _template(value):
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _coherent(self) -> HumanNode:
        literal_options = isinstance(self.options, list)
        if self.ask in ("choice", "multi", "best") and self.options is None:
            raise ValueError(
                f"ask: {self.ask} needs options: a list of choices, or an upstream output that is "
                "one (options: '{{ plan }}')"
            )
        if self.ask == "best" and isinstance(self.options, str) and "{{" not in self.options:
            raise ValueError(
                "ask: best picks from a list: options must be one, or an upstream foreach's "
                "outputs (options: '{{ cover }}')"
            )
        schema = None
        if self.answer_schema is not None or literal_options:
            options = self.options if literal_options else None
            if self.ask in ("choice", "multi", "best") and not literal_options:
                options = ["?"]  # known only when it runs
            schema = answer_schema(self.ask, options, self.answer_schema)
        elif self.ask in ("text", "number", "approve"):
            schema = answer_schema(self.ask, None, None)
        # The default is the output a person could have given (best's is the item, not its
        # number; a poll's is its tally): one no answer could be fails only after the wait.
        if (
            schema is not None
            and "default" in self.model_fields_set
            and self.default is not None
            and self.ask != "best"
            and self.collect is None
            and not _template(self.default)
            and (literal_options or self.ask in ("text", "number", "approve"))
        ):
            try:
                validate_answer(self.default, schema)
            except ValueError as exc:
                raise ValueError(f"default is not an answer to this question: {exc}") from None
        if self.on_timeout == "default" and "default" not in self.model_fields_set:
            raise ValueError("on_timeout: default needs a default: the output when time is up")
        if self.on_timeout is not None and self.timeout is None and self.collect is None:
            raise ValueError("on_timeout applies when the timeout passes: give a timeout too")
        return self


def _template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def run(ctx: ExecutionContext, node: HumanNode) -> Any:
    from genarun.human.notify import answer_url, payload, send_notify
    from genarun.store.human import open_request, rotate_token, set_notified

    store, run_id = ctx.run.store, ctx.run.id
    options = _as_list(node.options, "options")
    images = _as_list(node.images, "images")
    if node.ask == "best" and options is None:
        raise ValueError("ask: best picks from a list, and options gave none")
    timeout = parse_duration(node.timeout) if node.timeout is not None else None
    collect = node.collect
    until = parse_duration(collect.until) if collect and collect.until is not None else None
    if until is not None:
        timeout = min(timeout, until) if timeout else until
    answers = int(collect.answers) if collect and collect.answers is not None else None
    has_default = "default" in node.model_fields_set
    on_timeout = node.on_timeout or ("default" if has_default else "fail")
    request, token = open_request(
        store,
        run_id=run_id,
        node_id=ctx.node_id,
        path=ctx.path,
        ask=node.ask,
        question=str(node.question),
        # Options keep images typed (a best of images outputs the image); the schema and the
        # page see them plain (an image as its path).
        options=_json(options),
        images=_plain(images),
        schema=answer_schema(node.ask, _plain(options), node.answer_schema),
        default=_json(node.default),
        has_default=has_default,
        seed=ctx.seed,
        timeout=timeout,
        on_timeout=on_timeout,
        # A poll without a count closes when its time is up (a count it cannot reach).
        collect=answers if answers is not None else (2**31 if collect else None),
        notify_url=node.notify,
    )
    if token is None and request.notify_url and request.notify_status is None:
        # The process that asked died before telling anyone: a fresh token (only its hash is
        # kept, so the first one cannot be sent again), and the notify goes out now.
        token = rotate_token(store, request.id) if request.status == "waiting" else None
    if token is not None:
        ctx.run.answer_tokens[(ctx.node_id, ctx.path)] = token
        ctx.log(
            "info",
            f"asks: {request.question[:200]} (genarun answer {run_id[:8]} {request.target} VALUE)",
        )
        if node.notify:
            host = urllib.parse.urlsplit(node.notify).hostname
            body = payload(request, token)
            status, attempts = yield Call(
                lambda: send_notify(node.notify or "", body), host=host, label="notify"
            )
            set_notified(store, request.id, status, attempts)
            if not status.startswith("sent"):
                ctx.log("warning", f"notify {status}; the request stays answerable")
    outcome = yield Wait(
        key=f"human:{request.target}",
        payload={
            "question": request.question,
            "ask": request.ask,
            "options": request.options,
            "answer": f"genarun answer {run_id[:8]} {request.target} VALUE",
            "webhook": answer_url(request.hook_path, None),
        },
        poll=lambda: _poll(store, request.id),
    )
    status, value = outcome
    pinned: str = request.on_timeout  # as pinned when it was asked
    if status == "answered":
        from genarun.values import from_json

        return from_json(value, ctx.run.folder)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(request.expires or time.time()))
    if pinned == "default":
        from genarun.values import from_json

        ctx.log("info", f"no answer by {when}: the default is the output")
        return from_json(request.default, ctx.run.folder)
    if pinned == "skip":
        raise SkipExecution(f"no answer by {when} (on_timeout: skip)")
    raise ValueError(
        f"no answer by {when} (timeout passed; on_timeout: fail): answer sooner, give a longer "
        "timeout, or set on_timeout: default with a default"
    )


def _poll(store: Any, request_id: int) -> tuple[str, Any] | None:
    """("answered", output), ("expired", None), or None while it waits."""
    from genarun.store.human import close_on_timeout, get_request

    request = get_request(store, request_id)
    if request.status == "waiting" and request.expired():
        request = close_on_timeout(store, request)
    if request.status == "answered":
        return "answered", request.result
    if request.status == "expired":
        return "expired", None
    return None


def _as_list(value: Any, name: str) -> list[Any] | None:
    if value is None:
        return None
    if isinstance(value, dict | str) or not hasattr(value, "__iter__"):
        shown = f"{type(value).__name__}: {str(value)[:60]!r}"
        raise ValueError(
            f"{name}: expected a list, got {shown} (name an upstream foreach, or parse the "
            "output it comes from into a list)"
        )
    return list(value)


def _json(value: Any) -> Any:
    """The value as stored JSON (images tagged, read back typed)."""
    from genarun.values import to_json

    return None if value is None else to_json(value)


def _plain(value: Any) -> Any:
    """The value as a person sees it (an image as its path in the run folder)."""
    from genarun.values import to_plain

    return None if value is None else to_plain(value)


def _output_type(spec: HumanNode) -> str | None:
    if spec.collect is not None:
        return "object"
    return {"multi": "list", "text": None if spec.answer_schema else "text"}.get(spec.ask)


KIND = NodeKind(
    name="human",
    params=HumanNode,
    run=run,
    description="Asks a person (choice, multi, text, number, best, approve); the run waits "
    "durably for the answer.",
    output="the answer (a poll: {winner, tally, answers})",
    # The answer comes from a person, not from the parameters: never reused from another run.
    cacheable=False,
    raw_fields=frozenset({"answer_schema"}),
    output_type=_output_type,
)

__all__ = ["ASKS", "KIND", "HumanNode"]
