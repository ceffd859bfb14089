"""The tree pages of `genarun serve`: `/trees` (the tree files of the trees folder), `/trees/<file>`
(a tree file drawn before it runs, its validation errors on their nodes), `/runs/<run>/nodes/<node>`
(one node's executions, where a click on the run page's graph goes), and their JSON under
`/api/v1` (`/api/v1/trees`, `/api/v1/trees/<file>`, `/api/v1/runs/<run>/graph`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import urllib.parse
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from genarun.server.graph_view import (
    Graph,
    GraphNode,
    render_svg,
    run_graph,
    status_counts,
    tree_file_graph,
)
from genarun.server.run_pages import STYLE

_NAV = """<p><a href="/runs">Runs</a> · <a href="/trees">Trees</a> · <a href="/experiments">Experiments</a> · <a href="/diff">Diff</a> · <a href="/inbox">Inbox</a></p>"""

_TREES = (
    """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>genarun trees</title>"""
    + STYLE
    + "</head><body>"
    + _NAV
    + """<h1>Trees</h1><p>The tree files of {{ folder }}: open one to see it drawn and checked before it runs.</p>
{% if not trees %}<p>No tree files (.yaml, .yml, .json) here.</p>{% else %}<ul>
{% for t in trees %}<li><a href="/trees/{{ t|urlencode }}">{{ t }}</a>{% if can_edit %} · <a href="/trees/{{ t|urlencode }}/edit">edit</a>{% endif %}</li>{% endfor %}</ul>{% endif %}
</body></html>"""
)

_TREE = (
    """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>tree {{ tree }}</title>"""
    + STYLE
    + "</head><body>"
    + _NAV
    + """<h1>{{ g.name or tree }} <small>{{ tree }}</small></h1>
{% if can_edit %}<p><a href="/trees/{{ tree|urlencode }}/edit" id="edit-tree">Edit {{ tree }}</a></p>{% endif %}
{% if problem_count %}<p class="failed" role="alert">{{ problem_count }} problem{{ 's' if problem_count != 1 }}: this tree does not run as it is.</p>
{% else %}<p><span class="badge done">valid</span> {{ g.nodes|length }} nodes{% if can_start %} · <a href="/start?tree={{ tree|urlencode }}">Start a run of it</a>{% endif %}</p>{% endif %}
{% if g.problems %}<h2>Problems of the file</h2><ul class="problems">{% for p in g.problems %}<li class="error" style="white-space:pre-wrap">{{ p }}</li>{% endfor %}</ul>{% endif %}
{% if g.nodes %}<h2>The tree</h2>{{ svg }}
<h2>Nodes</h2><table><tr><th>node</th><th>kind</th><th>line</th><th>parent</th><th>problems</th></tr>
{% for n in g.nodes.values() %}<tr id="node-{{ n.id }}"><td>{{ n.id }}{% if n.foreach %} <span class="badge">foreach</span>{% endif %}</td><td>{{ n.kind }}</td><td>{{ n.line or '' }}</td><td>{{ n.parent or '' }}</td>
<td>{% for p in n.problems %}<div class="failed">{{ p }}</div>{% endfor %}</td></tr>{% endfor %}</table>{% endif %}
</body></html>"""
)

_NODE = (
    """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{{ node }} of run {{ run.id[:8] }}</title>"""
    + STYLE
    + "</head><body>"
    + _NAV
    + """<p><a href="/runs/{{ run.id }}">Back to run {{ run.id[:8] }}</a></p>
<h1>{{ node }} <small>({{ kind }}) of {{ run.name }}</small></h1>
{% if not executions %}<p>No executions of {{ node }} in this run (it has not run yet, or was skipped).</p>{% else %}
<table><tr><th>item</th><th>status</th><th>time</th><th>model</th><th>seed</th><th>output / error</th></tr>
{% for e in executions %}<tr><td>{{ e.target }}</td><td><span class="badge {{ e.status }}">{{ e.status }}</span>{% if e.reused %} <span class="badge">reused</span>{% endif %}</td>
<td>{{ e.duration }}</td><td>{{ e.model or '' }}</td><td>{{ e.seed if e.seed is not none else '' }}</td>
<td>{% if e.image %}<img src="{{ e.image }}" alt="{{ e.target }}" style="width:128px;image-rendering:pixelated">{% else %}<pre style="white-space:pre-wrap;margin:0">{{ e.text }}</pre>{% endif %}</td></tr>{% endfor %}
</table>{% if more %}<p>The first {{ executions|length }} of {{ total }}: <a href="/runs/{{ run.id }}?{{ more }}">all of them, page by page, on the run page</a>.</p>{% endif %}{% endif %}</body></html>"""
)

_MISSING = (
    """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>not found</title></head><body>"""
    + _NAV
    + """<h1>Not found</h1><p>{{ message }}</p><p><a href="{{ back }}">{{ back_text }}</a></p></body></html>"""
)

_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_trees_template = _env.from_string(_TREES)
_tree_template = _env.from_string(_TREE)
_node_template = _env.from_string(_NODE)
missing_template = _env.from_string(_MISSING)


def missing_page(message: str, back: str, back_text: str) -> HTMLResponse:
    """A 404 page that says what was not found and links back."""
    return HTMLResponse(
        missing_template.render(message=message, back=back, back_text=back_text), 404
    )


def _node_href(run_id: str) -> Any:
    return lambda n: f"/runs/{run_id}/nodes/{urllib.parse.quote(n.id)}"


def run_graph_svg(
    store: Any, run: dict[str, Any], statuses: dict[str, dict[str, int]] | None = None
) -> Any:
    """The run page's drawing of its tree, each node coloured by its executions (`statuses`:
    counted already, by node and status); nothing for a run whose tree text is not stored."""
    graph = cached_run_graph(store, run, statuses)
    return render_svg(graph, _node_href(run["id"])) if graph.nodes else ""


def cached_run_graph(
    store: Any, run: dict[str, Any], statuses: dict[str, dict[str, int]] | None = None
) -> Graph:
    """The run's tree as drawn (compiled and laid out once per tree text), with the
    executions counted now (or as `statuses` counted them)."""
    base = _run_layout(run["id"], run["tree_text"] or "", run["tree_path"] or "", run["name"])
    counted = run_graph_statuses(store, run["id"]) if statuses is None else statuses
    nodes = {
        k: dataclasses.replace(n, statuses=counted.get(k, {}), problems=list(n.problems))
        for k, n in base.nodes.items()
    }
    return dataclasses.replace(base, nodes=nodes, problems=list(base.problems))


@functools.lru_cache(maxsize=64)
def _run_layout(run_id: str, tree_text: str, tree_path: str, name: str) -> Graph:
    run = {"id": run_id, "tree_text": tree_text, "tree_path": tree_path, "name": name}
    return run_graph(run)


def run_graph_statuses(store: Any, run_id: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for node_id, status, count in status_counts(store, run_id):
        out.setdefault(node_id, {})[status] = count
    return out


def _tree_graph(trees: Path, name: str) -> Graph | str:
    """The drawn tree file, or why there is none (a file not in the trees folder)."""
    from genarun.server.control import ControlError, _tree_path

    try:
        path = _tree_path(trees, name)
    except ControlError as exc:
        return str(exc).removeprefix("tree: ")
    return tree_file_graph(path, name)


def _node_rows(store: Any, run: dict[str, Any], node_id: str) -> list[dict[str, Any]]:
    """The node's first page of executions (a foreach of 5,000 items: the run page's node
    filter pages through the rest)."""
    from genarun.server.pages import file_url
    from genarun.server.run_summary import execution_page

    rows = []
    for e in execution_page(store, run["id"], node=node_id):
        path = json.loads(e["path"]) if e["path"] else []
        output = json.loads(e["output"]) if e["output"] else None
        image = None
        if isinstance(output, dict) and isinstance(output.get("$image"), str):
            image = file_url(run["id"], output["$image"])
        text = e["error"] if e["status"] != "done" else json.dumps(output, default=str, indent=1)
        rows.append(
            {
                "target": node_id + "".join(f"[{i}]" for i in path),
                "status": e["status"],
                "reused": e["reused_from"] is not None,
                "duration": f"{e['duration'] or 0:.2f}s",
                "model": e["model"],
                "seed": e["seed"],
                "image": image,
                "text": (text or "")[:4000],
            }
        )
    return rows


def graph_page_routes(pages: Any, trees: Path | None) -> list[Route]:
    """/trees, /trees/{tree} and /runs/{run}/nodes/{node}, behind the pages' session check."""

    async def trees_page(request: Request) -> Response:
        from genarun.server.start_page import tree_files

        if not pages.signed_in(request):
            return pages.refused()
        listed = await run_in_threadpool(tree_files, trees) if trees else []
        html = _trees_template.render(
            trees=listed,
            folder=str(trees or "-"),
            can_edit=trees is not None and not pages.read_only,
        )
        return HTMLResponse(html)

    async def tree_page(request: Request) -> Response:
        if not pages.signed_in(request):
            return pages.refused()
        name = request.path_params["tree"][:300]
        if trees is None:
            return missing_page("this server shows no tree files", "/runs", "All runs")
        found = await run_in_threadpool(_tree_graph, trees, name)
        if isinstance(found, str):
            return missing_page(found, "/trees", "All tree files")
        html = _tree_template.render(
            g=found,
            tree=name,
            svg=render_svg(found, lambda n: f"#node-{n.id}") if found.nodes else "",
            problem_count=len(found.problems) + sum(len(n.problems) for n in found.nodes.values()),
            can_start=pages.start is not None,
            can_edit=not pages.read_only,
        )
        return HTMLResponse(html)

    def node_context(run_ref: str, node_id: str) -> dict[str, Any] | Response:
        from genarun.errors import StoreError

        store = pages.store()
        try:
            run = store.resolve_run(run_ref)
        except StoreError as exc:
            return missing_page(str(exc), "/runs", "All runs")
        graph = cached_run_graph(store, run)
        rows = _node_rows(store, run, node_id)
        if node_id not in graph.nodes and not rows:
            return missing_page(
                f"run {run['id'][:8]} has no node '{node_id}'",
                f"/runs/{run['id']}",
                f"Back to run {run['id'][:8]}",
            )
        kind = graph.nodes[node_id].kind if node_id in graph.nodes else "?"
        total = sum(graph.nodes[node_id].statuses.values()) if node_id in graph.nodes else 0
        more = urllib.parse.urlencode({"node": node_id}) if total > len(rows) else ""
        return {
            "run": run,
            "node": node_id,
            "kind": kind,
            "executions": rows,
            "total": total,
            "more": more,
        }

    async def node_page(request: Request) -> Response:
        if not pages.signed_in(request):
            return pages.refused()
        found = await run_in_threadpool(
            node_context, request.path_params["run_id"], request.path_params["node_id"]
        )
        if isinstance(found, Response):
            return found
        return HTMLResponse(_node_template.render(**found))

    return [
        Route("/trees", trees_page, methods=["GET"]),
        Route("/trees/{tree:path}", tree_page, methods=["GET"]),
        Route("/runs/{run_id}/nodes/{node_id}", node_page, methods=["GET"]),
    ]


def graph_api_routes(store: Any, token: str | None, trees: Path | None) -> list[Route]:
    """GET /api/v1/trees, /api/v1/trees/{tree} and /api/v1/runs/{run}/graph."""
    from genarun.server.api import ApiError, _authorise, _find_run

    async def answer(request: Request, fn: Any) -> JSONResponse:
        try:
            _authorise(request, token)
            return JSONResponse(await run_in_threadpool(fn))
        except ApiError as exc:
            return JSONResponse({"error": str(exc), **exc.extra}, status_code=exc.status)

    async def tree_list(request: Request) -> JSONResponse:
        from genarun.server.start_page import tree_files

        return await answer(request, lambda: {"trees": tree_files(trees) if trees else []})

    def one_tree(name: str) -> dict[str, Any]:
        if trees is None:
            raise ApiError(404, "this server shows no tree files")
        found = _tree_graph(trees, name)
        if isinstance(found, str):
            raise ApiError(404, found)
        return {"tree": name, **found.to_json()}

    async def tree_graph(request: Request) -> JSONResponse:
        return await answer(request, lambda: one_tree(request.path_params["tree"][:300]))

    def one_run(ref: str) -> dict[str, Any]:
        run = _find_run(store(), ref)
        return {"run": run["id"], **cached_run_graph(store(), run).to_json()}

    async def run_graph_json(request: Request) -> JSONResponse:
        return await answer(request, lambda: one_run(request.path_params["run_id"]))

    return [
        Route("/api/v1/trees", tree_list, methods=["GET"]),
        Route("/api/v1/trees/{tree:path}", tree_graph, methods=["GET"]),
        Route("/api/v1/runs/{run_id}/graph", run_graph_json, methods=["GET"]),
    ]


def graph_openapi_paths() -> dict[str, Any]:
    """The OpenAPI paths of the graph routes (merged into the API's document)."""
    node = {
        "type": "object",
        "required": ["id", "kind", "foreach", "layer", "x", "y", "problems"],
        "properties": {
            "id": {"type": "string"},
            "kind": {"type": "string"},
            "foreach": {"type": "boolean"},
            "parent": {"type": ["string", "null"]},
            "line": {"type": ["integer", "null"]},
            "layer": {"type": "integer", "description": "topological generation (column)"},
            "x": {"type": "integer"},
            "y": {"type": "integer"},
            "problems": {"type": "array", "items": {"type": "string"}},
            "status": {"type": "string", "description": "runs only: the node's colour"},
            "executions": {
                "type": "object",
                "additionalProperties": {"type": "integer"},
                "description": "runs only: its executions by status",
            },
        },
    }
    graph = {
        "type": "object",
        "required": ["name", "compiled", "nodes", "edges", "problems"],
        "properties": {
            "name": {"type": "string"},
            "compiled": {
                "type": "boolean",
                "description": "false: the file does not compile; its stated structure, no references",
            },
            "nodes": {"type": "array", "items": node},
            "edges": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "source": {"type": "string"},
                        "target": {"type": "string"},
                        "edge": {"enum": ["child", "ref"]},
                    },
                },
            },
            "problems": {
                "type": "array",
                "items": {"type": "string"},
                "description": "problems that name no node of the graph",
            },
            "width": {"type": "integer"},
            "height": {"type": "integer"},
        },
    }

    def ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    error = ok("not found", {"$ref": "#/components/schemas/Error"})
    auth = {"401": ok("no token", {"$ref": "#/components/schemas/Error"})}
    return {
        "/api/v1/trees": {
            "get": {
                "summary": "the tree files of the trees folder",
                "responses": {
                    "200": ok(
                        "tree files, relative to the trees folder",
                        {
                            "type": "object",
                            "properties": {"trees": {"type": "array", "items": {"type": "string"}}},
                        },
                    ),
                    **auth,
                },
            }
        },
        "/api/v1/trees/{tree}": {
            "get": {
                "summary": "a tree file drawn: its compiled graph and laid-out positions, with "
                "validation problems on their nodes",
                "parameters": [
                    {"name": "tree", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": ok("the graph", graph), "404": error, **auth},
            }
        },
        "/api/v1/runs/{run_id}/graph": {
            "get": {
                "summary": "a run's tree as it ran, with each node's executions by status",
                "parameters": [
                    {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": ok("the graph", graph), "404": error, **auth},
            }
        },
    }


__all__ = ["GraphNode", "graph_api_routes", "graph_openapi_paths", "graph_page_routes"]
