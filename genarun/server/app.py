"""`genarun serve`'s ASGI app (Starlette): the answer webhooks, the JSON API (`/api/v1`) and
the pages (the inbox).

Handlers read and write SQLite through a Store per worker thread (SQLAlchemy's connection is
not shared across threads); the blocking work runs in Starlette's thread pool, never on the
event loop.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from genarun.server.api import api_routes
from genarun.server.diff_page import diff_api_routes, diff_page_routes
from genarun.server.edit_page import edit_page_routes
from genarun.server.experiments_page import experiments_page_routes
from genarun.server.graph_pages import graph_api_routes, graph_page_routes
from genarun.server.hooks import MAX_BODY, answer_hook, parse_hook_path
from genarun.server.hosts import LoopbackHostOnly
from genarun.server.pages import Pages
from genarun.server.resumer import Resumer


@dataclass(frozen=True)
class ServeOptions:
    db: Path
    auto_resume: bool = True
    webhook_secret: str | None = None  # Standard Webhooks secret (whsec_...), from the env
    token: str | None = None  # guards the API and pages when the server listens beyond 127.0.0.1
    sweep_every: float = 15.0  # seconds between looks for requests whose timeout passed
    trees: Path | None = None  # the folder runs may be started from; None: no starting
    read_only: bool = False  # no POST route (no answers, starts, stops); pages hide controls


class _Stores(threading.local):
    store: Any = None


def create_app(options: ServeOptions) -> Starlette:
    """The app: `POST /runs/<run>/<node>[/<index>...]/hook`, `/api/v1/...` and `GET /health`."""
    from genarun.usage.prices import price_table

    # A price file ($GENARUN_PRICES) that cannot be used is said now, as the CLI says it, not
    # as a 500 from every page and API answer that shows a cost (one table per process).
    price_table()
    stores = _Stores()
    opened: list[Any] = []
    opened_in: list[str] = []  # the thread each Store was opened in (a test checks them)
    # Read-only changes nothing, so it continues no run either (and records no timeouts).
    resuming = options.auto_resume and not options.read_only
    resumer = Resumer(options.db, sweep_every=options.sweep_every) if resuming else None

    def store() -> Any:
        """The calling thread's Store; only ever from the thread pool (run_in_threadpool):
        opening one does file I/O, and a Store made on the event loop's thread would have its
        connection used by every pool thread at once."""
        if _on_event_loop():
            raise RuntimeError("store() called on the event loop: call it inside run_in_threadpool")
        from genarun.store.db import Store

        if stores.store is None or stores.store.path != options.db:
            if not options.db.exists():
                # Looking creates nothing: until a run makes the database, pages and the API
                # read an empty one in memory (kept by this thread; replaced once the file is
                # there). Starting a run is what creates the file.
                if stores.store is None:
                    stores.store = Store(":memory:")
                    opened.append(stores.store)
                return stores.store
            stores.store = Store(options.db)
            opened.append(stores.store)
            opened_in.append(threading.current_thread().name)
        return stores.store

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "auto_resume": resumer is not None})

    async def hook(request: Request) -> JSONResponse:
        parsed = parse_hook_path(request.path_params["rest"])
        if parsed is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return JSONResponse(
                    {"error": f"the body is over {MAX_BODY} bytes"}, status_code=413
                )
        node_id, path = parsed
        reply = await run_in_threadpool(
            lambda: answer_hook(
                store(),
                request.path_params["run_id"],
                node_id,
                path,
                headers=dict(request.headers),
                query=dict(request.query_params),
                body=body,
                webhook_secret=options.webhook_secret,
                client=request.client.host if request.client else "unknown",
            )
        )
        if reply.run_id and resumer is not None:
            resumer.want(reply.run_id)
            reply.body["resuming"] = True
        return JSONResponse(reply.body, status_code=reply.status)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if resumer is not None:
            resumer.start()
        try:
            yield
        finally:
            if resumer is not None:
                resumer.stop()
            for each in opened:
                with contextlib.suppress(Exception):
                    each.close()

    def continue_run(run_id: str) -> None:
        if resumer is not None:
            resumer.want(run_id)

    pages = Pages(
        store,
        options.token,
        continue_run,
        read_only=options.read_only,
        start=(options.db, options.trees) if options.trees else None,
    )
    routes = [
        Route("/health", health, methods=["GET"]),
        *graph_api_routes(store, options.token, options.trees),
        *diff_api_routes(store, options.token),
        *api_routes(
            store,
            options.token,
            continue_run,
            options if options.trees else None,
            read_only=options.read_only,
        ),
        *pages.routes(),
        # Before the tree page, whose `/trees/{tree:path}` would take `/trees/x.yaml/edit`.
        *edit_page_routes(pages, options.trees),
        *graph_page_routes(pages, options.trees),
        *diff_page_routes(pages),
        *experiments_page_routes(pages, options.db, options.read_only),
        # Last: any other POST under a run is an answer webhook (`/runs/RUN/NODE/hook`).
        Route("/runs/{run_id}/{rest:path}", hook, methods=["POST"]),
    ]
    if options.read_only:  # every POST route goes, webhooks and API included: a 405 for all
        routes = [r for r in routes if "GET" in (r.methods or set())]
    # Without a token only loopback names are answered: DNS rebinding (genarun/server/hosts.py).
    middleware = [] if options.token else [Middleware(LoopbackHostOnly)]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    app.state.options = options
    app.state.resumer = resumer
    app.state.store_threads = opened_in
    return app


def _on_event_loop() -> bool:
    """Whether this thread is running an asyncio event loop (Starlette's pool threads are not)."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
