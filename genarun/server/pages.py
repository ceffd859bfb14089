"""The first pages of `genarun serve`: the human inbox, with a form made from each request's
answer schema (buttons for a choice, images to pick for `best`, approve/reject, a number, text,
JSON), and the images of run folders.

Server-rendered Jinja2 (autoescaped), no script: a form posts, the page reloads. With a server
token, pages need a session cookie (`/login?token=...` sets it: HttpOnly, SameSite=Strict);
every form carries a CSRF token bound to that session, and a POST whose Origin is another
site's is refused. Images are served only as run assets (`assets/<name>.png`), read inside the
run's folder without following links.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from genarun.server.hooks import MAX_BODY
from genarun.server.run_controls import control_routes
from genarun.server.run_pages import run_page_routes

SESSION_COOKIE = "genarun_session"

_INBOX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>genarun inbox</title>
<style>
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
.request{border:1px solid #ccc;border-radius:6px;padding:1rem;margin:1rem 0}
.meta{color:#666;font-size:.9em}.error{color:#a00}.done{color:#070}
.images{display:flex;flex-wrap:wrap;gap:.5rem}.images img{width:160px;image-rendering:pixelated}
button{margin:.2rem}
</style></head><body>
<p><a href="/runs">Runs</a>{% if can_start %} · <a href="/start">Start a run</a>{% endif %}</p><h1>Inbox</h1>
{% if read_only %}<p class="meta">Read-only: answers are given elsewhere (genarun answer, webhooks).</p>{% endif %}
{% if message %}<p class="{{ 'error' if failed else 'done' }}" role="status">{{ message }}</p>{% endif %}
{% if not requests %}<p>No requests waiting for an answer.</p>{% endif %}
{% for r in requests %}
<section class="request" id="{{ r.id }}">
<p class="meta">run {{ r.run_id[:8] }} · {{ r.target }} · {{ r.ask }}{% if r.collect %} · poll {{ r.votes }}/{{ r.collect }}{% endif %}{% if r.expires_text %} · expires {{ r.expires_text }}{% endif %}</p>
<h2>{{ r.question }}</h2>
{% if r.images and (r.ask != 'best' or read_only) %}<div class="images">{% for src in r.images %}<img src="{{ src }}" alt="image {{ loop.index0 }}">{% endfor %}</div>{% endif %}
{% if not read_only %}<form method="post" action="answer">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="request" value="{{ r.id }}">
<label>Your name <input name="responder" maxlength="100" placeholder="optional"></label><br>
{% if r.ask == 'choice' %}
  {% for o in r.choices %}<button name="answer" value="{{ o.json }}">{{ o.label }}</button>{% endfor %}
{% elif r.ask == 'best' %}
  <div class="images">{% for o in r.choices %}<button name="answer" value="{{ loop.index0 }}" aria-label="pick {{ loop.index0 }}">{% if o.image %}<img src="{{ o.image }}" alt="option {{ loop.index0 }}">{% else %}{{ o.label }}{% endif %}</button>{% endfor %}</div>
{% elif r.ask == 'multi' %}
  {% for o in r.choices %}<label><input type="checkbox" name="item" value="{{ o.json }}"> {{ o.label }}</label> {% endfor %}
  <input type="hidden" name="answer" value="[]"><button>Answer</button>
{% elif r.ask == 'approve' %}
  <button name="answer" value="true">Approve</button><button name="answer" value="false">Reject</button>
{% elif r.ask == 'number' %}
  <input type="number" step="any" name="number" required><input type="hidden" name="answer" value="null"><button>Answer</button>
{% elif r.json_answer %}
  <textarea name="answer" rows="6" cols="60" placeholder="JSON"></textarea><br><button>Answer</button>
{% else %}
  <textarea name="text" rows="4" cols="60" required></textarea><input type="hidden" name="answer" value="null"><br><button>Answer</button>
{% endif %}
</form>{% endif %}
</section>
{% endfor %}
</body></html>
"""

_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_inbox_template = _env.from_string(_INBOX)


class Pages:
    """The page routes, their session and CSRF checks."""

    def __init__(
        self,
        store: Callable[[], Any],
        token: str | None,
        on_answer: Callable[[str], None],
        *,
        read_only: bool = False,
        start: tuple[Path, Path] | None = None,  # (database, trees folder): the start page
    ):
        self.store = store
        self.token = token
        self.on_answer = on_answer
        self.read_only = read_only
        self.start = None if read_only else start
        self.csrf_key = secrets.token_bytes(32)  # per process: a restart asks for a reload

    def routes(self) -> list[Route]:
        routes = [
            Route("/", lambda request: RedirectResponse("/runs", 303), methods=["GET"]),
            Route("/login", self.login, methods=["GET"]),
            Route("/inbox", self.inbox, methods=["GET"]),
            Route("/answer", self.answer, methods=["POST"]),
            Route("/runs/{run_id}/files/{rel:path}", self.file, methods=["GET"]),
            *run_page_routes(self),
            *control_routes(self),
        ]
        if self.start is not None:
            from genarun.server.start_page import start_page_routes

            routes += start_page_routes(self, *self.start)
        if self.read_only:  # no POST route at all: nothing a page or a client can change
            routes = [r for r in routes if "GET" in (r.methods or set())]
        return routes

    # --- session and CSRF ----------------------------------------------------------------
    def _session_value(self) -> str:
        assert self.token is not None
        return hmac.new(self.token.encode(), b"genarun-session", hashlib.sha256).hexdigest()

    def signed_in(self, request: Request) -> bool:
        if self.token is None:
            return True
        cookie = request.cookies.get(SESSION_COOKIE, "")
        return hmac.compare_digest(cookie.encode(), self._session_value().encode())

    def csrf(self, request: Request) -> str:
        session = request.cookies.get(SESSION_COOKIE, "local") if self.token else "local"
        return hmac.new(self.csrf_key, session.encode(), hashlib.sha256).hexdigest()

    async def login(self, request: Request) -> Response:
        if self.token is None:
            return RedirectResponse("/inbox", 303)
        given = request.query_params.get("token", "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return HTMLResponse("<p>Wrong or missing token: open /login?token=...</p>", 403)
        response = RedirectResponse("/inbox", 303)
        response.set_cookie(SESSION_COOKIE, self._session_value(), httponly=True, samesite="strict")
        return response

    def refused(self) -> Response:
        return HTMLResponse('<p>Sign in first: <a href="/login">/login?token=...</a></p>', 401)

    # --- pages ---------------------------------------------------------------------------
    async def inbox(self, request: Request) -> Response:
        if not self.signed_in(request):
            return self.refused()
        requests = await run_in_threadpool(self._inbox_rows)
        message = request.query_params.get("message", "")[:300]
        html = _inbox_template.render(
            requests=requests,
            csrf=self.csrf(request),
            read_only=self.read_only,
            can_start=self.start is not None,
            message=message,
            failed=request.query_params.get("failed") == "1",
        )
        return HTMLResponse(html)

    def _inbox_rows(self) -> list[dict[str, Any]]:
        from genarun.store.db import iso
        from genarun.store.human import vote_count, waiting_requests

        store = self.store()
        rows = []
        for r in waiting_requests(store):
            choices = []
            for option in r.options or []:
                image = option.get("$image") if isinstance(option, dict) else None
                label = image or (option if isinstance(option, str) else json.dumps(option))
                choices.append(
                    {
                        "json": json.dumps(option if image is None else image),
                        "label": label,
                        "image": file_url(r.run_id, image) if image else None,
                    }
                )
            images = [file_url(r.run_id, i) for i in r.images or [] if isinstance(i, str)]
            rows.append(
                {
                    "id": r.id,
                    "run_id": r.run_id,
                    "target": r.target,
                    "ask": r.ask,
                    "question": r.question,
                    "choices": choices,
                    "images": images,
                    "collect": r.collect if r.collect and r.collect < 2**31 else None,
                    "votes": vote_count(store, r.id) if r.collect else 0,
                    "expires_text": iso(r.expires) if r.expires else "",
                    "json_answer": r.ask == "text" and r.schema != {"type": "string"},
                }
            )
        return rows

    async def check_form(self, request: Request) -> dict[str, list[str]] | Response:
        """A posted page form's fields, once its session, origin and CSRF token are checked;
        otherwise the page that refuses it."""
        if not self.signed_in(request):
            return self.refused()
        origin = request.headers.get("origin")
        if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
            return HTMLResponse("<p>Refused: this form was sent from another site.</p>", 403)
        body = await request.body()
        if len(body) > MAX_BODY:
            return HTMLResponse("<p>The form is too large.</p>", 413)
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        sent = form.get("csrf", [""])[-1]
        if not hmac.compare_digest(sent.encode(), self.csrf(request).encode()):
            return HTMLResponse(
                "<p>Refused: the form is stale or forged; reload the page.</p>", 403
            )
        return form

    async def answer(self, request: Request) -> Response:
        form = await self.check_form(request)
        if isinstance(form, Response):
            return form
        field = {k: v[-1] for k, v in form.items()}
        status, message, run_id = await run_in_threadpool(self._record, field, form)
        if run_id:
            self.on_answer(run_id)
        query = urllib.parse.urlencode(
            {"message": message, "failed": "0" if status == 200 else "1"}
        )
        return RedirectResponse(f"/inbox?{query}", 303)

    def _record(
        self, field: dict[str, str], form: dict[str, list[str]]
    ) -> tuple[int, str, str | None]:
        from genarun.human.answers import AnswerInvalid, read_cli_value
        from genarun.store.human import AnswerRefused, RequestNotFound, get_request, record_answer

        store = self.store()
        try:
            request = get_request(store, int(field.get("request", "")))
        except (ValueError, RequestNotFound):
            return 404, "No such request.", None
        try:
            value = _form_value(request.ask, field, form, request.schema, read_cli_value)
        except ValueError as exc:
            return 422, f"{request.target}: {exc}", None
        responder = (field.get("responder") or "").strip()[:100] or "page"
        try:
            recorded = record_answer(store, request, value, responder=responder, via="page")
        except AnswerInvalid as exc:
            return 422, f"{request.target}: {exc}", None
        except AnswerRefused as exc:
            return 409, str(exc), None
        done = "answered" if recorded.closed else "vote recorded"
        return (
            200,
            f"{request.target} of run {request.run_id[:8]}: {done}",
            (request.run_id if recorded.closed else None),
        )

    async def file(self, request: Request) -> Response:
        if not self.signed_in(request):
            return self.refused()
        data = await run_in_threadpool(
            self._read_asset, request.path_params["run_id"], request.path_params["rel"]
        )
        if data is None:
            return Response("not found", 404, media_type="text/plain")
        return Response(data, media_type="image/png", headers={"Cache-Control": "private"})

    def _read_asset(self, run_id: str, rel: str) -> bytes | None:
        from genarun.errors import StoreError
        from genarun.store.confined import is_asset_ref, read_bytes

        if not is_asset_ref(rel):
            return None
        try:
            run = self.store().resolve_run(run_id)
            if run["id"] != run_id or not run["out_dir"]:
                return None
            return read_bytes(Path(run["out_dir"]), rel)
        except (StoreError, OSError):
            return None


def file_url(run_id: str, rel: str) -> str:
    return f"/runs/{run_id}/files/{urllib.parse.quote(rel)}"


def _form_value(
    ask: str,
    field: dict[str, str],
    form: dict[str, list[str]],
    schema: dict[str, Any],
    read: Callable[[str, dict[str, Any]], Any],
) -> Any:
    """The answer a form carries, as the question takes it."""
    if ask == "multi":
        return [json.loads(item) for item in form.get("item", [])]
    if ask == "number":
        return read(field.get("number", ""), schema)
    if ask == "text" and "text" in field:
        return field["text"]
    raw = field.get("answer", "")
    try:
        return json.loads(raw)
    except ValueError:
        raise ValueError(f"not JSON: {raw[:80]!r}") from None
