"""The runs pages of `genarun serve`: the runs (filtered by status, tree, text), and one run:
its executions with status, reuse, duration, model, seed and errors, a timeline of what ran
when (and at once), its images and its human requests. Server-rendered, autoescaped, no script.
"""

from __future__ import annotations

import json
from typing import Any

from jinja2 import Environment, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from genarun.store.processes import RUN_STATUSES, display_status

STYLE = """<style>
body{font-family:system-ui,sans-serif;max-width:75rem;margin:2rem auto;padding:0 1rem}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.25rem .5rem;text-align:left;font-size:.9em}
.badge{border-radius:4px;padding:0 .3rem;font-size:.8em;background:#eee}
.done,.completed{background:#d4f4d4}.failed{background:#f8d0d0}.waiting{background:#fdf0c0}
.interrupted,.crashed{background:#fbe0c8}.skipped,.expired{background:#e4e4e4}.running{background:#d0e4f8}
.bar{position:relative;height:.8rem;background:#f4f4f4}.bar span{position:absolute;height:100%;background:#6a9}
.images{display:flex;flex-wrap:wrap;gap:.5rem}.images figure{margin:0}.images img{width:128px;image-rendering:pixelated}
</style>"""

_RUNS = (
    """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>genarun runs</title>"""
    + STYLE
    + """</head><body><h1>Runs</h1><p><a href="/inbox">Inbox</a> · <a href="/trees">Trees</a> · <a href="/experiments">Experiments</a> · <a href="/diff">Diff</a>{% if can_start %} · <a href="/start">Start a run</a>{% endif %}</p>
<form method="get"><label>Status <select name="status"><option value="">any</option>
{% for s in statuses %}<option{% if s == status %} selected{% endif %}>{{ s }}</option>{% endfor %}</select></label>
<label>Tree <input name="tree" value="{{ tree }}"></label> <label>Search <input name="q" value="{{ q }}"></label>
<button>Filter</button></form>
{% if not runs %}<p>No runs{% if status or tree or q %} match{% endif %}.</p>{% else %}
<table><tr><th>run</th><th>tree</th><th>status</th><th>started</th><th>executions</th></tr>
{% for r in runs %}<tr><td><a href="/runs/{{ r.id }}">{{ r.id[:8] }}</a></td><td>{{ r.name }}</td>
<td><span class="badge {{ r.status }}">{{ r.status }}</span>{% if r.paused %} <span class="badge waiting">paused</span>{% endif %}</td><td>{{ r.started_text }}</td><td>{{ r.executions or 0 }}</td></tr>{% endfor %}
</table>{% endif %}</body></html>"""
)

_RUN = (
    """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>run {{ run.id[:8] }}</title>"""
    + STYLE
    + """</head><body><p><a href="/runs">All runs</a> · <a href="/inbox">Inbox</a></p>
<h1>{{ run.name }} <span class="badge {{ run.status }}">{{ run.status }}</span></h1>
{{ controls }}
<p>run {{ run.id }} · seed {{ run.seed if run.seed is not none else "none" }} · started {{ started }}{% if took %} · {{ took }}{% endif %}<br>folder {{ run.out_dir }}</p>
{% if run.error %}<p class="failed">{{ run.error }}</p>{% endif %}
{% if graph %}<h2>Tree</h2>{{ graph }}{% endif %}
{% if human %}<h2>Human requests</h2><ul>{% for h in human %}<li>{{ h.target }} ({{ h.ask }}): <span class="badge {{ 'done' if h.status == 'answered' else h.status }}">{{ h.status }}</span> {{ h.question }}{% for a in h.answers %}<br>{{ a.value | shown }} by {{ a.responder }} via {{ a.via }}{% endfor %}</li>{% endfor %}</ul>{% endif %}
{{ usage_html }}
<h2>Nodes</h2>
<table><tr><th>node</th><th>kind</th><th>executions</th><th>time (sum · slowest)</th><th>models</th><th>when it ran</th></tr>
{% for n in nodes %}<tr><td><a href="?node={{ n.node | urlencode }}">{{ n.node }}</a></td><td>{{ n.kind }}</td>
<td>{% for status, count in n.statuses.items() %}<a class="badge {{ status }}" href="?node={{ n.node | urlencode }}&amp;status={{ status }}">{{ count }} {{ status }}</a> {% endfor %}{% if n.reused %}<span class="badge">{{ n.reused }} reused</span>{% endif %}</td>
<td>{{ '%.2f' % n.seconds }}s · {{ '%.2f' % n.slowest }}s</td><td>{{ n.models | join(', ') }}</td>
<td><div class="bar"><span style="left:{{ n.left }}%;width:{{ n.width }}%"></span></div></td></tr>{% endfor %}
</table>
{% if images %}<h2>Images{% if more_pages or page > 1 %} on this page{% endif %}</h2><div class="images">{% for i in images %}<figure><img src="{{ i.src }}" alt="{{ i.label }}" loading="lazy"><figcaption>{{ i.label }}</figcaption></figure>{% endfor %}</div>{% endif %}
<h2 id="executions">Executions{% if node or status %}: {{ node }} {{ status }} <a href="?">(all)</a>{% endif %}</h2>
<p>{{ shown_from }}-{{ shown_to }} of {{ total }}{% if page > 1 %} · <a href="?{{ nav(page - 1) }}#executions">previous</a>{% endif %}{% if more_pages %} · <a href="?{{ nav(page + 1) }}#executions">next</a>{% endif %}</p>
<table><tr><th>node</th><th>kind</th><th>status</th><th>time</th><th>model</th><th>seed</th><th>timeline</th><th>output / error</th></tr>
{% for e in executions %}<tr><td>{{ e.target }}</td><td>{{ e.kind }}</td><td><span class="badge {{ e.status }}">{{ e.status }}</span>{% if e.reused %} <span class="badge">reused</span>{% endif %}</td>
<td>{{ e.duration }}</td><td>{{ e.model or '' }}</td><td>{{ e.seed if e.seed is not none else '' }}</td>
<td><div class="bar"><span style="left:{{ e.left }}%;width:{{ e.width }}%"></span></div></td><td>{{ e.text }}</td></tr>{% endfor %}
</table></body></html>"""
)

_MISSING = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>not found</title></head>
<body><h1>Not found</h1><p>{{ message }}</p><p><a href="/runs">All runs</a></p></body></html>"""


def shown(value: Any) -> str:
    """A stored value as a person reads it: text as it is, anything else as JSON (`true`,
    `null`, `["a", 2]`), never Python's repr (`True`, `None`, `['a', 2]`)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_env.filters["shown"] = shown
_runs_template = _env.from_string(_RUNS)
_run_template = _env.from_string(_RUN)
_missing_template = _env.from_string(_MISSING)
STATUSES = RUN_STATUSES  # as the API's ?status= takes them


def run_page_routes(pages: Any) -> list[Route]:
    """/runs and /runs/{run}, behind the pages' session check."""

    async def runs_page(request: Request) -> Response:
        if not pages.signed_in(request):
            return pages.refused()
        query = {k: request.query_params.get(k, "")[:200] for k in ("status", "tree", "q")}
        rows = await run_in_threadpool(lambda: _runs_rows(pages.store(), query))
        html = _runs_template.render(
            runs=rows, statuses=STATUSES, can_start=pages.start is not None, **query
        )
        return HTMLResponse(html)

    async def run_page(request: Request) -> Response:
        if not pages.signed_in(request):
            return pages.refused()
        run_ref = request.path_params["run_id"]
        query = {k: request.query_params.get(k, "")[:200] for k in ("node", "status", "page")}
        found = await run_in_threadpool(lambda: _run_context(pages.store(), run_ref, query))
        if isinstance(found, str):
            return HTMLResponse(_missing_template.render(message=found), 404)
        from genarun.server.run_controls import render_controls

        controls = render_controls(pages, request, found["run"])
        return HTMLResponse(_run_template.render(**found, controls=controls))

    return [
        Route("/runs", runs_page, methods=["GET"]),
        Route("/runs/{run_id}", run_page, methods=["GET"]),
    ]


def _runs_rows(store: Any, query: dict[str, str]) -> list[dict[str, Any]]:
    from genarun.store.db import iso

    text = query["q"].lower()
    out = []
    for row in store.list_runs(1000):
        row["status"] = display_status(row)
        if query["status"] and row["status"] != query["status"]:
            continue
        if query["tree"] and row["name"] != query["tree"]:
            continue
        if text and text not in f"{row['id']} {row['name']} {row['tree_path']}".lower():
            continue
        out.append({**row, "started_text": iso(row["started"])})
    return out[:200]


def _run_context(store: Any, ref: str, query: dict[str, str]) -> dict[str, Any] | str:
    """The run page's values: the run, a summary per node, and one page of executions
    (`query`: node, status, page) — never every execution of a long run."""
    import urllib.parse

    from genarun.errors import StoreError
    from genarun.human.history import run_summaries
    from genarun.server.graph_pages import run_graph_svg
    from genarun.server.pages import file_url
    from genarun.server.run_summary import (
        PAGE_SIZE,
        execution_page,
        node_summaries,
        run_span,
        target,
    )
    from genarun.store.db import iso
    from genarun.store.pauses import paused_since

    try:
        run = store.resolve_run(ref)
    except StoreError as exc:
        return str(exc)
    run["status"] = display_status(run)  # `crashed`, and no stop button, for a killed run
    run["paused"] = paused_since(store, run["id"])  # the controls show it
    summaries = node_summaries(store, run["id"])
    begin, end = run_span(run, summaries)
    span = end - begin

    def bar(start: float | None, length: float) -> dict[str, float]:
        return {
            "left": round(100 * max(0.0, (start or begin) - begin) / span, 2),
            "width": max(0.5, round(100 * length / span, 2)),
        }

    nodes = [
        {**vars(n), **bar(n.first, (n.last or n.first or begin) - (n.first or begin))}
        for n in summaries
    ]
    node, status = query.get("node", ""), query.get("status", "")
    page = int(query["page"]) if query.get("page", "").isdigit() else 1
    page = max(page, 1)
    total = sum(
        count
        for n in summaries
        if not node or n.node == node
        for s, count in n.statuses.items()
        if not status or s == status
    )
    rows, images = [], []
    for e in execution_page(store, run["id"], node=node, status=status, page=page):
        name = target(e["node_id"], e["path"])
        output = json.loads(e["output"]) if e["output"] else None
        if isinstance(output, dict) and isinstance(output.get("$image"), str):
            images.append({"src": file_url(run["id"], output["$image"]), "label": name})
        text = e["error"] if e["status"] != "done" else json.dumps(output, default=str)
        rows.append(
            {
                "target": name,
                "kind": e["kind"],
                "status": e["status"],
                "reused": e["reused_from"] is not None,
                "duration": f"{e['duration'] or 0:.2f}s",
                "model": e["model"],
                "seed": e["seed"],
                **bar(e["started"], e["duration"] or 0),
                "text": (text or "")[:160],
            }
        )
    human = [
        {**h, "target": h["node"] + "".join(f"[{i}]" for i in h["path"])}
        for h in run_summaries(store, run["id"])
    ]
    took = f"{run['ended'] - run['started']:.2f}s" if run["ended"] else ""
    first = (page - 1) * PAGE_SIZE

    def nav(to: int) -> str:
        kept = {"node": node, "status": status, "page": str(to)}
        return urllib.parse.urlencode({k: v for k, v in kept.items() if v})

    from genarun.usage.page import usage_html
    from genarun.usage.summary import run_usage

    return {
        "graph": run_graph_svg(store, run, {n.node: dict(n.statuses) for n in summaries}),
        # the same figures as `genarun runs show` and the API's run JSON
        "usage_html": usage_html(run_usage(store, run)),
        "run": run,
        "started": iso(run["started"]),
        "took": took,
        "nodes": nodes,
        "executions": rows,
        "images": images,
        "human": human,
        "node": node,
        "status": status,
        "page": page,
        "total": total,
        "shown_from": min(first + 1, total),
        "shown_to": first + len(rows),
        "more_pages": first + len(rows) < total,
        "nav": nav,
    }
