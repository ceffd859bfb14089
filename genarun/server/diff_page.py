"""The diff page of `genarun serve` (`/diff?a=RUN&b=RUN`) and its JSON (`/api/v1/diff`): two
runs compared per node and foreach item by the same code as `genarun diff`
(genarun/store/diff.py), so the page, the API and the CLI agree on what is same, changed, or
only in one run. Changed texts are shown side by side line by line, images side by side.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from jinja2 import Environment, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from genarun.server.graph_pages import _NAV, missing_page
from genarun.server.run_pages import STYLE

MAX_ROWS = 400  # lines of one side-by-side text; the rest is counted, not shown
MAX_IMAGES = 8  # images of one output shown per side
STATUS_NAMES = {"same": "same", "changed": "changed", "only_a": "only in A", "only_b": "only in B"}

_DIFF = (
    """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>genarun diff</title>"""
    + STYLE
    + """<style>
.sbs{table-layout:fixed}.sbs td{font-family:ui-monospace,monospace;white-space:pre-wrap;vertical-align:top;font-size:.8em;padding:0 .4rem;border:0}
.sbs .del{background:#fbe0e0}.sbs .ins{background:#dcf5dc}.sbs .rep{background:#fdf3c8}.sbs .pad{background:#f6f6f6}
.entry{border:1px solid #ddd;border-radius:6px;padding:.5rem 1rem;margin:1rem 0}
.entry h3{margin:.2rem 0}.pair{display:grid;grid-template-columns:1fr 1fr;gap:1rem}
.pair img{width:192px;image-rendering:pixelated}.changed{background:#fdf0c0}.only_a{background:#f8d0d0}.only_b{background:#d4f4d4}
</style></head><body>"""
    + _NAV
    + """<h1>Diff of two runs</h1>
<form method="get" action="/diff">
<label>A <select name="a">{% for r in runs %}<option value="{{ r.id }}"{% if r.id == a_id %} selected{% endif %}>{{ r.label }}</option>{% endfor %}</select></label>
<label>B <select name="b">{% for r in runs %}<option value="{{ r.id }}"{% if r.id == b_id %} selected{% endif %}>{{ r.label }}</option>{% endfor %}</select></label>
<label><input type="checkbox" name="all" value="1"{% if show_same %} checked{% endif %}> unchanged too</label>
<button>Compare</button></form>
{% if not runs %}<p>No runs yet.</p>{% endif %}
{% if entries is not none %}
<p>A <a href="/runs/{{ a.id }}">{{ a.id[:8] }}</a> ({{ a.name }}) · B <a href="/runs/{{ b.id }}">{{ b.id[:8] }}</a> ({{ b.name }})</p>
<p class="summary" role="status">{{ counts.same }} same, {{ counts.changed }} changed, {{ counts.only_a }} only in A, {{ counts.only_b }} only in B</p>
{% for e in entries %}<section class="entry" id="{{ e.label }}" data-status="{{ e.status }}">
<h3>{{ e.label }} <span class="badge {{ e.status }}">{{ e.status_name }}</span>{% if e.short %} <small>{{ e.short }}</small>{% endif %}</h3>
{% if e.images_a or e.images_b %}<div class="pair images">
<div>{% for i in e.images_a %}<figure><img src="{{ i.src }}" alt="A {{ e.label }}"><figcaption>A · {{ i.sha }}</figcaption></figure>{% else %}<p>A: no image</p>{% endfor %}</div>
<div>{% for i in e.images_b %}<figure><img src="{{ i.src }}" alt="B {{ e.label }}"><figcaption>B · {{ i.sha }}</figcaption></figure>{% else %}<p>B: no image</p>{% endfor %}</div>
</div>{% endif %}
{% if e.rows %}<table class="sbs"><tr><th>A {{ a.id[:8] }}</th><th>B {{ b.id[:8] }}</th></tr>
{% for left, right, tag in e.rows %}<tr><td class="{{ 'pad' if left is none else tag }}">{{ left if left is not none else '' }}</td><td class="{{ 'pad' if right is none else tag }}">{{ right if right is not none else '' }}</td></tr>{% endfor %}
</table>{% if e.cut %}<p class="meta">{{ e.cut }} more lines not shown (genarun diff shows all).</p>{% endif %}{% endif %}
{% if e.unified %}<details><summary>unified diff (as <code>genarun diff</code> prints it)</summary><pre>{{ e.unified }}</pre></details>{% endif %}
</section>{% endfor %}
{% if not entries %}<p>No differences.</p>{% endif %}
{% endif %}
</body></html>"""
)

_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_diff_template = _env.from_string(_DIFF)


def _as_text(value: Any) -> str:
    """An output as `genarun diff` compares it: a text as itself, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def side_by_side(a: Any, b: Any) -> tuple[list[tuple[str | None, str | None, str]], int]:
    """Rows (line of A, line of B, tag: equal, rep, del or ins) and how many were cut."""
    left = _as_text(a).splitlines() if a is not None else []
    right = _as_text(b).splitlines() if b is not None else []
    rows: list[tuple[str | None, str | None, str]] = []
    matcher = difflib.SequenceMatcher(None, left, right, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            rows += [(line, line, "equal") for line in left[i1:i2]]
            continue
        tag = {"replace": "rep", "delete": "del", "insert": "ins"}[op]
        for k in range(max(i2 - i1, j2 - j1)):
            rows.append(
                (
                    left[i1 + k] if i1 + k < i2 else None,
                    right[j1 + k] if j1 + k < j2 else None,
                    tag,
                )
            )
    return rows[:MAX_ROWS], max(0, len(rows) - MAX_ROWS)


def _images(value: Any, run_id: str, found: list[dict[str, str]]) -> list[dict[str, str]]:
    """The images an output holds (at any depth), as links into the run's folder."""
    from genarun.server.pages import file_url

    if len(found) >= MAX_IMAGES:
        return found
    if isinstance(value, dict):
        if isinstance(value.get("$image"), str):
            found.append(
                {"src": file_url(run_id, value["$image"]), "sha": str(value.get("sha256"))[:12]}
            )
            return found
        for item in value.values():
            _images(item, run_id, found)
    elif isinstance(value, list):
        for item in value:
            _images(item, run_id, found)
    return found


def _is_image(value: Any) -> bool:
    return isinstance(value, dict) and "$image" in value


def _entry(entry: Any, a_id: str, b_id: str) -> dict[str, Any]:
    images_a = _images(entry.a, a_id, [])
    images_b = _images(entry.b, b_id, [])
    rows: list[tuple[str | None, str | None, str]] = []
    cut = 0
    if not (_is_image(entry.a) or _is_image(entry.b)):  # an image alone: the pictures say it
        rows, cut = side_by_side(entry.a, entry.b)
    multiline = bool(entry.detail and "\n" in entry.detail)
    return {
        "label": entry.label,
        "status": entry.status,
        "status_name": STATUS_NAMES[entry.status],
        "short": entry.detail if entry.detail and not multiline else "",
        "unified": entry.detail if multiline else "",
        "images_a": images_a,
        "images_b": images_b,
        "rows": rows,
        "cut": cut,
    }


def _diff_context(store: Any, query: dict[str, str]) -> dict[str, Any] | Response:
    from genarun.errors import StoreError
    from genarun.store.db import iso
    from genarun.store.diff import diff_runs, summary
    from genarun.store.processes import display_status

    runs = [
        {
            "id": r["id"],
            "label": f"{r['id'][:8]} {r['name']} ({display_status(r)}, {iso(r['started'])})",
        }
        for r in store.list_runs(200)
    ]
    context: dict[str, Any] = {
        "runs": runs,
        "entries": None,
        "a_id": runs[1]["id"] if len(runs) > 1 else "",
        "b_id": runs[0]["id"] if runs else "",
        "show_same": query["all"] == "1",
    }
    if not (query["a"] and query["b"]):
        return context
    try:
        a, b = store.resolve_run(query["a"]), store.resolve_run(query["b"])
    except StoreError as exc:
        return missing_page(str(exc), "/diff", "Pick two runs")
    entries = diff_runs(store, a["id"], b["id"])
    shown = [e for e in entries if context["show_same"] or e.status != "same"]
    context.update(
        a=a,
        b=b,
        a_id=a["id"],
        b_id=b["id"],
        counts=summary(entries),
        entries=[_entry(e, a["id"], b["id"]) for e in shown],
    )
    return context


def diff_page_routes(pages: Any) -> list[Route]:
    """GET /diff, behind the pages' session check."""

    async def diff_page(request: Request) -> Response:
        if not pages.signed_in(request):
            return pages.refused()
        query = {k: request.query_params.get(k, "")[:100] for k in ("a", "b", "all")}
        found = await run_in_threadpool(lambda: _diff_context(pages.store(), query))
        if isinstance(found, Response):
            return found
        return HTMLResponse(_diff_template.render(**found))

    return [Route("/diff", diff_page, methods=["GET"])]


def diff_api_routes(store: Any, token: str | None) -> list[Route]:
    """GET /api/v1/diff?a=RUN&b=RUN: `genarun diff --json`'s document."""
    from genarun.server.api import ApiError, _authorise, _find_run

    def compare(a_ref: str, b_ref: str) -> dict[str, Any]:
        from genarun.store.diff import diff_document, diff_runs

        if not a_ref or not b_ref:
            raise ApiError(422, "give two runs: ?a=RUN&b=RUN (ids, prefixes or latest)")
        a, b = _find_run(store(), a_ref), _find_run(store(), b_ref)
        return diff_document(a, b, diff_runs(store(), a["id"], b["id"]))

    async def diff_json(request: Request) -> JSONResponse:
        try:
            _authorise(request, token)
            a, b = (request.query_params.get(k, "")[:100] for k in ("a", "b"))
            return JSONResponse(await run_in_threadpool(compare, a, b))
        except ApiError as exc:
            return JSONResponse({"error": str(exc), **exc.extra}, status_code=exc.status)

    return [Route("/api/v1/diff", diff_json, methods=["GET"])]


def diff_openapi_paths() -> dict[str, Any]:
    run = {"type": "string", "description": "a run id, a unique prefix or latest"}
    error = {
        "description": "an error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    counts = {"type": "object", "additionalProperties": {"type": "integer"}}
    execution = {
        "type": "object",
        "properties": {
            "node": {"type": "string"},
            "index": {"type": "array", "items": {"type": "integer"}},
            "status": {"enum": ["same", "changed", "only_a", "only_b"]},
            "a": {},
            "b": {},
            "diff": {"type": ["string", "null"]},
        },
    }
    document = {
        "type": "object",
        "properties": {
            "a": {"type": "string"},
            "b": {"type": "string"},
            "summary": counts,
            "executions": {"type": "array", "items": execution},
        },
    }
    return {
        "/api/v1/diff": {
            "get": {
                "summary": "two runs compared per node and foreach item, as `genarun diff --json`",
                "parameters": [
                    {"name": "a", "in": "query", "required": True, "schema": run},
                    {"name": "b", "in": "query", "required": True, "schema": run},
                ],
                "responses": {
                    "200": {
                        "description": "the comparison",
                        "content": {"application/json": {"schema": document}},
                    },
                    "401": error,
                    "404": error,
                    "422": error,
                },
            }
        }
    }
