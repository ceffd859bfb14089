"""`fetch`: one HTTP API call per execution; its output is the JSON answer (through `extract`,
a JMESPath expression) or the text.

    - id: weather
      kind: fetch
      url: "{{ base_url }}/v1/forecast"
      params: {latitude: "{{ city.lat }}", longitude: "{{ city.lon }}", current: temperature_2m}
      headers: {Authorization: "Bearer {{ secret('WEATHER_KEY') }}"}
      extract: current.temperature_2m
      cache: {ttl: 10m}

The request goes through genarun.net.http (deadlines, size limit, limited redirects, retries
with backoff honouring Retry-After). Its parameters come from the node's fields, rendered as
templates (`request_fields`): that is the one place where `assemble:` (a text model filling
them under a schema) plugs in. Secrets stay placeholders until the request leaves (see
genarun/tree/secrets.py). Every response is stored (genarun/store/responses.py); fetch is never
content-cached (the world changes) except within a `cache: {ttl}`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from genarun.nodes.assemble import check_assemble_field
from genarun.nodes.base import ExecutionContext, FieldProblem, ModelRef, NodeKind
from genarun.nodes.effects import Call
from genarun.nodes.fetch_request import (
    FetchError,
    FetchRequest,
    Limits,
    answer_value,
    check_secrets,
    content_type,
    send,
)
from genarun.tree.schema import NodeBase, PositiveInt, Strict, TemplateStr, empty_list

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
PositiveFloat = float  # bounds are checked by the validators below (a template renders first)
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: float | int | str) -> float:
    """Seconds from 30, '30s', '10m', '1h' or '2d'."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.fullmatch(str(value))
        if not match:
            raise ValueError(f"'{value}' is not a duration: write 30, 30s, 10m, 1h or 2d")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"a duration must be more than 0, not {value!r}")
    return seconds


class Timeouts(Strict):
    """`timeout: {connect, read, total}` in seconds."""

    connect: float = Field(10.0, gt=0, description="Seconds to open the connection.")
    read: float = Field(30.0, gt=0, description="Seconds any single read may wait.")
    total: float = Field(30.0, gt=0, description="Seconds for the whole request and answer.")


class CacheSpec(Strict):
    """`cache: {ttl}`: reuse a stored response to the same request younger than `ttl`."""

    ttl: float | str = Field(description="Time to live: 30s, 10m, 1h, 2d, or seconds.")

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, value: float | str) -> float | str:
        parse_duration(value)
        return value

    @property
    def seconds(self) -> float:
        return parse_duration(self.ttl)


class FetchNode(NodeBase):
    method: Method = Field("GET", description="HTTP method: GET, POST, PUT, PATCH, DELETE, HEAD.")
    url: str = Field(description="The URL (a template); http or https.")
    params: dict[str, Any] | TemplateStr | None = Field(
        None, description="Query parameters (values are templates)."
    )
    headers: dict[str, Any] | TemplateStr | None = Field(
        None, description="Request headers (values are templates; secrets with secret('NAME'))."
    )
    json_: Any = Field(None, alias="json", description="A JSON body (its strings are templates).")
    body: str | None = Field(None, description="A text body (a template); not with json.")
    extract: str | None = Field(
        None,
        description="A JMESPath expression applied to the JSON answer (current.temperature, "
        "items[*].title); without it the output is the whole JSON, or the text.",
    )
    timeout: float | Timeouts | TemplateStr = Field(
        30.0, description="Seconds for the whole request, or {connect, read, total}."
    )
    retries: int = Field(
        3,
        ge=0,
        le=20,
        description="Retries of a request that failed to connect, timed out, or got 408/429/5xx "
        "(exponential backoff with jitter, honouring Retry-After). A POST or PATCH is retried "
        "only with an idempotency key.",
    )
    backoff: float = Field(1.0, gt=0, le=60, description="First retry delay in seconds; doubles.")
    cache: CacheSpec | None = Field(
        None, description="{ttl: 10m}: reuse a stored response to the same request within ttl."
    )
    concurrency: PositiveInt = Field(8, description="Most requests of this node in flight at once.")
    max_bytes: PositiveInt = Field(
        10 * 2**20, description="Largest response accepted, in bytes (default 10 MiB)."
    )
    hosts: list[str] = Field(
        default_factory=empty_list,
        description="Hosts this node may send its secrets to, besides the tree's secrets: list.",
    )
    idempotency_key: bool = Field(
        True,
        description="Send an Idempotency-Key header (from run, node and foreach index) with "
        "POST and PATCH, so they may be retried; false: never retry them once sent.",
    )
    # A mapping (not the AssembleSpec model) so that its strings render as templates; it is
    # checked as an AssembleSpec when the tree is validated and again once rendered.
    assemble: dict[str, Any] | None = Field(
        None,
        description="A text model fills the request's parameters under a schema "
        "({model, from | schema, instructions}).",
    )
    # The executor re-runs a failed execution `retries` times; a fetch retries its request
    # itself (with backoff and Retry-After), so the field is moved here and the executor's
    # count set to 0: a request is never retried twice over.
    _http_retries: int = PrivateAttr(3)

    @model_validator(mode="after")
    def _own_retries(self) -> FetchNode:
        self._http_retries, self.retries = self.retries, 0
        return self

    @field_validator("assemble")
    @classmethod
    def _assemble(cls, value: Any, info: ValidationInfo) -> Any:
        return check_assemble_field(value, info.context)

    # A URL or timeout written out (no template) is checked before the run: a typo in it
    # would otherwise fail every execution of the node only once the run reaches it.
    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        import urllib.parse

        if "{{" in value or "{%" in value:
            return value
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"'{value}' is not an absolute http(s) URL: write it as"
                " https://api.example.com/v1/items"
            )
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: Any) -> Any:
        if isinstance(value, int | float) and value <= 0:
            raise ValueError(f"timeout must be more than 0 seconds, not {value}")
        return value

    @field_validator("extract")
    @classmethod
    def _extract(cls, value: str | None) -> str | None:
        if value is None:
            return value
        import jmespath

        try:
            jmespath.compile(value)
        except jmespath.exceptions.JMESPathError as exc:
            detail = str(exc).splitlines()[0]
            raise ValueError(f"extract '{value}' is not a JMESPath expression: {detail}") from None
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        from genarun.tree.secrets import HostRule

        for entry in value:
            HostRule.parse(entry)
        return value

    @model_validator(mode="after")
    def _one_body(self) -> FetchNode:
        if self.json_ is not None and self.body is not None:
            raise ValueError("give json or body, not both")
        return self

    def limits(self) -> Limits:
        timeout = self.timeout
        if isinstance(timeout, Timeouts):
            connect, read, total = timeout.connect, timeout.read, timeout.total
        else:
            total = float(timeout)
            if total <= 0:
                raise FetchError(f"timeout must be more than 0 seconds, not {timeout}")
            connect, read = min(10.0, total), total
        return Limits(
            connect=connect,
            read=read,
            total=total,
            max_bytes=self.max_bytes,
            retries=self._http_retries,
            backoff=self.backoff,
            concurrency=self.concurrency,
        )


# --- where the request's parameters come from ------------------------------------------------
def request_fields(ctx: ExecutionContext, node: FetchNode) -> Generator[Any, Any, FetchRequest]:
    """The request of this execution: the node's rendered fields, or, with `assemble:`, what a
    text model fills in under the parameter schema (genarun.nodes.assemble, which may yield
    model invocations). The one boundary between rendering and sending."""
    request = FetchRequest(
        method=node.method,
        url=str(node.url).strip(),
        params=_mapping(node.params, "params"),
        headers={str(k): _header_value(k, v) for k, v in _mapping(node.headers, "headers").items()},
        json=node.json_,
        body=node.body,
    )
    if node.assemble is not None:
        from genarun.nodes import assemble

        request = yield from assemble.assemble_request(ctx, node, request)
    return request


def _mapping(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FetchError(f"{name} must render to a mapping, got {type(value).__name__}")
    return value


def _header_value(name: Any, value: Any) -> str:
    if isinstance(value, dict | list) or value is None:
        raise FetchError(f"header {name}: a header value is text, not {type(value).__name__}")
    return str(value)


# --- running ---------------------------------------------------------------------------------
@dataclass
class Exchange:
    """What one request came to, made on the I/O thread: the stored response's row, and the
    output or the error that the answer gives."""

    row: dict[str, Any]
    value: Any = None
    error: FetchError | None = None
    attempts: int = 1


def run(ctx: ExecutionContext, node: FetchNode) -> Generator[Any, Any, Any]:
    request = yield from request_fields(ctx, node)
    names = check_secrets(request, ctx.secret_hosts(), node.hosts)
    cache_key = request.cache_key(node.extract)
    where = _Where(ctx.run_id, ctx.node_id, ctx.path, ctx.run_folder, cache_key)
    if node.cache is not None:
        stored = ctx.cached_response(cache_key, node.cache.seconds)
        if stored is not None:
            ctx.log(
                "info",
                f"{request.shown}: reused the response stored {_age(stored.fetched)} ago"
                f" (cache ttl {node.cache.ttl})",
            )
            done = _answer(
                request, node.extract, where, stored.status, stored.content_type, {},
                stored.text.encode(), stored.text, reused_from=stored.id,
            )  # fmt: skip
            return _finish(ctx, request, done)
    key = _idempotency_key(ctx) if node.idempotency_key else None
    host, port = request.host()
    # Sent once, on the executor's I/O pool (at most `concurrency` of this node at once). The
    # secrets are filled in there, and the answer is read, parsed and made into its stored row
    # there too: the scheduler thread never blocks, never sees a value, and only files the row.
    done = yield Call(
        functools.partial(_exchange, request, node.limits(), names, key, node.extract, where),
        host=f"{host}:{port}",
        label=request.shown,
        host_limit=node.concurrency,
    )
    return _finish(ctx, request, done)


@dataclass(frozen=True)
class _Where:
    """Where a response is stored: its run, execution, run folder and cache key."""

    run_id: str
    node_id: str
    path: tuple[int, ...]
    folder: Any
    cache_key: str


def _exchange(
    request: FetchRequest,
    limits: Limits,
    names: list[str],
    key: str | None,
    extract: str | None,
    where: _Where,
) -> Exchange:
    """On the I/O thread: send, then read the answer."""
    response = send(request, limits, names, key)
    headers = dict(response.headers)
    done = _answer(
        request, extract, where, response.status, content_type(response), headers,
        response.body, response.text(), elapsed=response.elapsed, attempts=response.attempts,
    )  # fmt: skip
    return done


def _answer(
    request: FetchRequest,
    extract: str | None,
    where: _Where,
    status: int,
    kind: str,
    headers: dict[str, str],
    body: bytes,
    text: str,
    *,
    elapsed: float = 0.0,
    attempts: int = 0,
    reused_from: int | None = None,
) -> Exchange:
    from genarun.store.responses import response_row

    row = response_row(
        run_id=where.run_id,
        node_id=where.node_id,
        path=where.path,
        request=request.to_json(),
        status=status,
        content_type=kind,
        headers=headers,
        text=text,
        folder=where.folder,
        cache_key=where.cache_key,
        elapsed=elapsed,
        attempts=attempts,
        reused_from=reused_from,
    )
    try:
        if request.method == "HEAD":  # no body: the answer is its status and headers
            value: Any = {"status": status, "headers": headers}
        else:
            value = answer_value(status, kind, body, text, request.shown, extract)
    except FetchError as exc:
        return Exchange(row, error=exc, attempts=attempts)
    return Exchange(row, value, attempts=attempts)


def _finish(ctx: ExecutionContext, request: FetchRequest, done: Exchange) -> Any:
    """On the scheduler thread: file the response (with the execution's commit)."""
    ctx.file_response(done.row)
    if done.attempts > 1:
        ctx.log("info", f"{request.shown}: answered after {done.attempts} attempts")
    if done.error is not None:
        raise done.error
    return done.value


def _idempotency_key(ctx: ExecutionContext) -> str:
    """The same for every attempt and resume of this execution, new for a rerun (new run)."""
    seed = f"{ctx.run_id}/{ctx.node_id}/{list(ctx.path)}"
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


def _age(fetched: float) -> str:
    import time

    seconds = max(0, int(time.time() - fetched))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def check(*, node: Any, scope: dict[str, Any], resolve: Any) -> list[FieldProblem]:
    """Before the run: every secret the node's fields name is set in the environment."""
    from genarun.graph.secret_policy import secret_names_in

    problems: list[FieldProblem] = []
    spec = node.spec
    seen: set[str] = set()
    for name in type(spec).model_fields:
        if name in ("extract", "cache", "hosts", "assemble", "vars", "children"):
            continue
        for secret in secret_names_in(getattr(spec, name)):
            if secret in seen:
                continue
            seen.add(secret)
            # Only before a run (its scope names the run): `validate` needs no secrets set.
            if scope.get("run") and not os.environ.get(secret, "").strip():
                alias = type(spec).model_fields[name].alias or name
                problems.append(
                    FieldProblem(
                        alias,
                        f"secret '{secret}': the environment variable {secret} is not set;"
                        f" export it (export {secret}=...) before running the tree",
                    )
                )
    return problems


def assemble_model_refs(*, node: Any, scope: dict[str, Any]) -> list[ModelRef]:
    """The model an `assemble:` names (checked before the run, unless it is a template)."""
    spec = node.spec.assemble
    if spec is None or "{{" in json.dumps(spec.get("model")):
        return []
    return [ModelRef(spec["model"], "generate", "assemble")]


KIND = NodeKind(
    name="fetch",
    params=FetchNode,
    run=run,
    description="HTTP API call: `method`, `url`, `params`, `headers`, `json`, `body`, `extract` "
    "(JMESPath), `timeout`, `retries`, `cache`, `concurrency`, `hosts`, `assemble`.",
    output="JSON or text",
    # The outside world changes: a fetch is never reused from the content cache (only a
    # `cache: {ttl}` reuses a stored response, within its time to live).
    cacheable=False,
    # `assemble` is rendered like other fields (its instructions name the scope's values).
    raw_fields=frozenset({"extract", "cache", "hosts"}),
    model_refs=assemble_model_refs,
    check=check,
    output_type=lambda spec: None,
)
