"""The JSON API, version 1 (`/api/v1`): runs, their executions and human requests, the inbox,
and answers. Documented by the OpenAPI document at `/api/v1/openapi.json`.

Authorisation: with a server token (`serve --token`), every API route but the OpenAPI
document needs `Authorization: Bearer <token>`. POSTs must be `application/json`: a page of
another site cannot send that without a CORS preflight, which this server never grants, so a
browser cannot be made to answer for its user (CSRF).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from genarun.server.hooks import MAX_BODY, accepted_body
from genarun.server.openapi import RUN_STATUSES, openapi_document
from genarun.store.processes import display_status

Handler = Callable[[Request], Awaitable[JSONResponse]]


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.extra = status, extra


def api_routes(
    store: Callable[[], Any],
    token: str | None,
    on_answer: Callable[[str], None],
    control: Any = None,
    *,
    read_only: bool = False,
) -> list[Route]:
    """The /api/v1 routes over the store of the calling thread; `on_answer(run_id)` is told of
    an answer that closed a request (the server may continue the run)."""

    def guarded(
        fn: Callable[..., dict[str, Any] | list[Any]], *, body: bool = False, empty: bool = False
    ) -> Handler:
        """`body`: a POST with a JSON body; `empty`: one that may also come with no body at
        all (a command such as stop), read as {}."""

        async def endpoint(request: Request) -> JSONResponse:
            try:
                _authorise(request, token)
                payload = await _json_body(request, empty_ok=empty) if body else None
                args = (request, payload) if body else (request,)
                # store() inside the pool thread: each thread has its own Store (its
                # connection is not shared), and opening one never blocks the event loop.
                result = await run_in_threadpool(lambda: fn(store(), *args))
            except ApiError as exc:
                return JSONResponse({"error": str(exc), **exc.extra}, status_code=exc.status)
            return JSONResponse(result)

        return endpoint

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(openapi_document(read_only=read_only))

    def answer(store_: Any, request: Request, payload: Any) -> dict[str, Any]:
        result = _answer(store_, request.path_params["run_id"], payload)
        if result["status"] == "answered" and not result["replayed"]:
            on_answer(result["run"])
        return result

    async def events(request: Request) -> Any:
        from genarun.server.events import _after, event_stream

        try:
            _authorise(request, token)
            run = await run_in_threadpool(lambda: _find_run(store(), request.path_params["run_id"]))
        except ApiError as exc:
            return JSONResponse({"error": str(exc), **exc.extra}, status_code=exc.status)
        return event_stream(store, run["id"], _after(request))

    def start(store_: Any, request: Request, payload: Any) -> dict[str, Any]:
        from genarun.server.control import ControlError, start_run

        if control is None:
            raise ApiError(403, "this server does not start runs")
        try:
            return start_run(store_, control.db, control.trees, payload)
        except ControlError as exc:
            raise ApiError(exc.status, str(exc)) from None

    def command(action: Callable[[Any, str], dict[str, Any]]) -> Handler:
        """A command on one run (stop, pause, unpause): no body, or {}."""

        def run_command(store_: Any, request: Request, payload: Any) -> dict[str, Any]:
            from genarun.server.control import ControlError

            _no_fields(payload)
            try:
                return action(store_, request.path_params["run_id"])
            except ControlError as exc:
                raise ApiError(exc.status, str(exc)) from None

        return guarded(run_command, body=True, empty=True)

    def stop(store_: Any, run_ref: str) -> dict[str, Any]:
        from genarun.server.control import stop_run

        return stop_run(store_, run_ref)

    def pause(store_: Any, run_ref: str) -> dict[str, Any]:
        from genarun.server.control import pause

        return pause(store_, run_ref, by="api")

    def unpause(store_: Any, run_ref: str) -> dict[str, Any]:
        from genarun.server.control import unpause

        return unpause(store_, run_ref)

    def rerun_nodes(store_: Any, request: Request, payload: Any) -> dict[str, Any]:
        from genarun.server.control import ControlError, rerun

        if control is None:
            raise ApiError(403, "this server does not start runs")
        try:
            return rerun(store_, control.db, request.path_params["run_id"], payload)
        except ControlError as exc:
            raise ApiError(exc.status, str(exc)) from None

    return [
        Route("/api/v1/openapi.json", openapi, methods=["GET"]),
        Route("/api/v1/runs/{run_id}/rerun", guarded(rerun_nodes, body=True), methods=["POST"]),
        Route("/api/v1/runs", guarded(start, body=True), methods=["POST"]),
        Route("/api/v1/runs/{run_id}/stop", command(stop), methods=["POST"]),
        Route("/api/v1/runs/{run_id}/pause", command(pause), methods=["POST"]),
        Route("/api/v1/runs/{run_id}/unpause", command(unpause), methods=["POST"]),
        Route("/api/v1/runs/{run_id}/events", events, methods=["GET"]),
        Route("/api/v1/runs", guarded(_runs), methods=["GET"]),
        Route("/api/v1/runs/{run_id}", guarded(_run), methods=["GET"]),
        Route("/api/v1/inbox", guarded(_inbox), methods=["GET"]),
        Route("/api/v1/runs/{run_id}/answers", guarded(answer, body=True), methods=["POST"]),
    ]


def _authorise(request: Request, token: str | None) -> None:
    if token is None:
        return
    given = request.headers.get("authorization", "")
    if not given.lower().startswith("bearer "):
        raise ApiError(401, "this server needs its token: Authorization: Bearer <token>")
    if not hmac.compare_digest(given[7:].strip().encode(), token.encode()):
        raise ApiError(403, "wrong token")


def _no_fields(payload: Any) -> None:
    """A command's body: nothing, or an empty JSON object."""
    if payload != {}:
        raise ApiError(422, "send no body, or {}")


async def _json_body(request: Request, *, empty_ok: bool = False) -> Any:
    """The JSON body; `empty_ok`: no body at all reads as {}. A browser sends `Origin` with
    every cross-site POST, and a page of another site may only ever act through this
    server's own pages: such a POST is refused whatever its body."""
    origin = request.headers.get("origin")
    if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise ApiError(403, "refused: a request sent by a page of another site")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise ApiError(413, f"the body is over {MAX_BODY} bytes")
    if empty_ok and not body.strip():
        return {}
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise ApiError(415, "send the body as application/json")
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(422, "the body is not JSON") from None


def _find_run(store: Any, ref: str) -> dict[str, Any]:
    from genarun.errors import StoreError

    try:
        return store.resolve_run(ref)
    except StoreError as exc:
        raise ApiError(404, str(exc)) from None


def _runs(store: Any, request: Request) -> dict[str, Any]:
    query = request.query_params
    status = query.get("status")
    if status is not None and status not in RUN_STATUSES:
        raise ApiError(422, f"status: one of {', '.join(RUN_STATUSES)}")
    try:
        limit = min(max(int(query.get("limit", "50")), 1), 1000)
    except ValueError:
        raise ApiError(422, "limit: a whole number") from None
    text = (query.get("q") or "").lower()
    rows = []
    for row in store.list_runs(10_000 if (status or text or query.get("tree")) else limit):
        row["status"] = display_status(row)  # ?status=running leaves out killed runs
        if status and row["status"] != status:
            continue
        if query.get("tree") and row["name"] != query["tree"]:
            continue
        if query.get("experiment") and not str(row["experiment_id"]).startswith(
            query["experiment"]
        ):
            continue
        if text and text not in f"{row['id']} {row['name']} {row['tree_path']}".lower():
            continue
        rows.append(_run_row(row))
        if len(rows) >= limit:
            break
    return {"runs": rows}


def _run_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "experiment": row["experiment_id"],
        "tree": row["name"],
        "status": display_status(row),
        "paused": row.get("paused"),  # when it was paused, or null
        "seed": row["seed"],
        "started": row["started"],
        "ended": row["ended"],
        "executions": row.get("executions") or 0,
        "folder": row["out_dir"],
    }


def _run(store: Any, request: Request) -> dict[str, Any]:
    from genarun.human.history import run_summaries
    from genarun.store.pauses import paused_since
    from genarun.store.reports import run_report_json
    from genarun.usage.summary import run_usage

    run = _find_run(store, request.path_params["run_id"])
    run["paused"] = paused_since(store, run["id"])
    executions = store.run_executions(run["id"])
    report = run_report_json(run, executions)
    report["human"] = run_summaries(store, run["id"])
    report["usage"] = run_usage(store, run).to_json()  # as `runs show` has it
    return report


def _inbox(store: Any, request: Request) -> dict[str, Any]:
    from genarun.human.inbox import inbox_row
    from genarun.store.human import waiting_requests

    return {"requests": [inbox_row(store, r) for r in waiting_requests(store)]}


def _answer(store: Any, run_ref: str, payload: Any) -> dict[str, Any]:
    from genarun.human.answers import AnswerInvalid, accepted
    from genarun.store.human import AnswerRefused, RequestNotFound, locate, record_answer

    if not isinstance(payload, dict) or "node" not in payload or "answer" not in payload:
        raise ApiError(
            422, 'send {"node": ID, "path": [INDEX...], "answer": VALUE, "responder": ...}'
        )
    path = payload.get("path") or []
    if not isinstance(path, list) or not all(isinstance(i, int) and i >= 0 for i in path):
        raise ApiError(422, "path: a list of foreach indexes, such as [2]")
    responder = payload.get("responder") or "api"
    if not isinstance(responder, str) or len(responder) > 100:
        raise ApiError(422, "responder: text of up to 100 characters")
    try:
        request = locate(store, run_ref, str(payload["node"]), tuple(path))
    except RequestNotFound as exc:
        raise ApiError(404, str(exc)) from None
    try:
        recorded = record_answer(store, request, payload["answer"], responder=responder, via="api")
    except AnswerInvalid as exc:
        raise ApiError(422, f"invalid answer: {exc}", accepted=accepted(request.schema)) from None
    except AnswerRefused as exc:
        raise ApiError(409, str(exc)) from None
    return accepted_body(recorded)
