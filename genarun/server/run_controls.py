"""The run page's controls: pause, unpause and stop buttons for a running (or paused) run.

One form posts `action` to `POST /runs/{run}/control`, with the pages' session, origin and
CSRF checks; it does what the API's `pause`, `unpause` and `stop` do, then goes back to the run
page with what happened. Read-only servers show no buttons and have no such route.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from jinja2 import Environment, select_autoescape
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

_CONTROLS = """{% if message %}<p class="{{ 'failed' if failed else 'done' }}" role="status">{{ message }}</p>{% endif %}
{% if paused %}<p><span class="badge waiting">paused</span> since {{ since }}: no new executions start; those running finish.</p>{% endif %}
{% if show %}<form method="post" action="/runs/{{ run_id }}/control" class="controls">
<input type="hidden" name="csrf" value="{{ csrf }}">
{% if paused %}<button name="action" value="unpause">Unpause</button>{% elif running %}<button name="action" value="pause">Pause</button>{% endif %}
{% if running %}<button name="action" value="stop">Stop</button>{% endif %}
</form>{% endif %}"""

_template = Environment(
    autoescape=select_autoescape(default=True, default_for_string=True)
).from_string(_CONTROLS)
ACTIONS = ("pause", "unpause", "stop")


def render_controls(pages: Any, request: Request, run: dict[str, Any]) -> Markup:
    """The buttons (and the last action's message) for the run page; `run["paused"]` is when
    it was paused, or None."""
    from genarun.store.db import iso

    running = run["status"] == "running"
    html = _template.render(
        run_id=run["id"],
        paused=bool(run.get("paused")),
        since=iso(run.get("paused")),
        running=running,
        show=not pages.read_only and (running or bool(run.get("paused"))),
        csrf=pages.csrf(request),
        message=request.query_params.get("message", "")[:300],
        failed=request.query_params.get("failed") == "1",
    )
    return Markup(html)


def control_routes(pages: Any) -> list[Route]:
    """`POST /runs/{run}/control`: the buttons' form."""

    async def control(request: Request) -> Response:
        from genarun.server.control import ControlError, pause, stop_run, unpause

        form = await pages.check_form(request)
        if isinstance(form, Response):
            return form
        run_ref = request.path_params["run_id"]
        action = form.get("action", [""])[-1]
        done = {"pause": "paused", "unpause": "unpaused", "stop": "stopping"}
        try:
            if action not in ACTIONS:
                raise ControlError(422, f"action: one of {', '.join(ACTIONS)}")
            if action == "pause":
                await run_in_threadpool(lambda: pause(pages.store(), run_ref, by="page"))
            elif action == "unpause":
                await run_in_threadpool(lambda: unpause(pages.store(), run_ref))
            else:
                await run_in_threadpool(lambda: stop_run(pages.store(), run_ref))
            query = {"message": f"run {run_ref[:8]} {done[action]}", "failed": "0"}
        except ControlError as exc:
            query = {"message": str(exc), "failed": "1"}
        return RedirectResponse(
            f"/runs/{urllib.parse.quote(run_ref)}?{urllib.parse.urlencode(query)}", 303
        )

    return [Route("/runs/{run_id}/control", control, methods=["POST"])]
