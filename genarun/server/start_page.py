"""The start page of `genarun serve`: start a run of a tree file of the trees folder from a
form (its `--set` values, a seed, and its nodes as checkboxes that become `--skip` or
`--only`). The form posts to the same start logic as `POST /api/v1/runs` (checked as
`genarun run` checks it, run by a worker process), with the pages' session and CSRF checks.
Not served in read-only mode.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

TREE_SUFFIXES = (".yaml", ".yml", ".json")
MAX_TREES = 500  # a trees folder that is a whole home directory still lists quickly

_START = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>genarun: start a run</title>
<style>
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
.error{color:#a00;white-space:pre-wrap}fieldset{margin:1rem 0}label{display:inline-block;margin:.2rem .6rem .2rem 0}
</style></head><body>
<p><a href="/runs">Runs</a> · <a href="/inbox">Inbox</a></p><h1>Start a run</h1>
{% if message %}<p class="error" role="alert">{{ message }}</p>{% endif %}
{% if not trees %}<p>No tree files (.yaml, .yml, .json) in the trees folder {{ folder }}.</p>{% else %}
<form method="get" action="/start"><label>Tree file <select name="tree">
{% for t in trees %}<option{% if t == tree %} selected{% endif %}>{{ t }}</option>{% endfor %}
</select></label> <button>Choose</button></form>
{% endif %}
{% if tree %}
{% if problem %}<p class="error" role="alert">{{ tree }}: {{ problem }}</p>{% endif %}
<form method="post" action="/start" id="start">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="tree" value="{{ tree }}">
<fieldset><legend>Values (<code>--set name=value</code>, one a line)</legend>
<textarea name="set" rows="4" cols="60" placeholder="topic=geckos">{{ sets }}</textarea></fieldset>
<label>Seed <input name="seed" value="{{ seed }}" placeholder="the tree's; a number or random" size="30"></label>
{% if nodes %}<fieldset><legend>Nodes</legend>
{% for n in nodes %}<input type="hidden" name="shown" value="{{ n.id }}"><label><input type="checkbox" name="node" value="{{ n.id }}"{% if n.checked %} checked{% endif %}> {{ n.id }} <small>({{ n.kind }})</small></label>
{% endfor %}<br>
<label><input type="radio" name="mode" value="skip"{% if mode != 'only' %} checked{% endif %}> skip the unchecked nodes (<code>--skip</code>)</label>
<label><input type="radio" name="mode" value="only"{% if mode == 'only' %} checked{% endif %}> run only the checked nodes (<code>--only</code>)</label>
</fieldset>{% endif %}
<button>Start</button>
</form>
{% endif %}
</body></html>
"""

_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_start_template = _env.from_string(_START)


def tree_files(folder: Path) -> list[str]:
    """The tree files under the trees folder (relative, sorted): files that start a tree
    ('genarun:'), hidden folders and run output folders (a run's tree.yaml copy, its JSON
    outputs, `latest/`) left out, as `genarun validate FOLDER` finds them."""
    import os

    from genarun.store.folders import is_output_folder
    from genarun.tree.discover import is_tree_text

    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        depth = len(here.relative_to(folder).parts)
        if is_output_folder(here):
            dirnames.clear()
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if depth < 3 else []
        for name in sorted(filenames):
            path = here / name
            if name.startswith(".") or path.suffix.lower() not in TREE_SUFFIXES:
                continue
            try:
                with path.open("rb") as fh:  # the key is near the top; a huge JSON is not read
                    head = fh.read(65536).decode("utf-8", "replace")
            except OSError:
                continue
            if is_tree_text(head):
                found.append(path.relative_to(folder).as_posix())
                if len(found) >= MAX_TREES:
                    return sorted(found)
    return sorted(found)


def _tree_nodes(folder: Path, name: str) -> tuple[list[dict[str, Any]], str]:
    """The nodes of a tree file, in tree order, or the problem that keeps it from compiling."""
    from genarun.errors import GenarunError
    from genarun.run.runner import RunOptions, prepare
    from genarun.server.control import ControlError, _tree_path

    try:
        compiled = prepare(_tree_path(folder, name), RunOptions())
    except (ControlError, GenarunError) as exc:
        return [], str(exc)
    return [{"id": n.id, "kind": n.kind.name} for n in compiled.nodes.values()], ""


def start_page_routes(pages: Any, db: Path, trees: Path) -> list[Route]:
    """GET and POST /start, behind the pages' session and CSRF checks."""

    def render(request: Request, status: int = 200, **given: Any) -> Response:
        tree = given.get("tree", request.query_params.get("tree", ""))[:300]
        listed = tree_files(trees)
        nodes, problem = _tree_nodes(trees, tree) if tree else ([], "")
        checked = given.get("checked")
        for node in nodes:
            node["checked"] = checked is None or node["id"] in checked
        html = _start_template.render(
            trees=listed,
            folder=str(trees),
            tree=tree,
            nodes=nodes,
            problem=problem,
            csrf=pages.csrf(request),
            message=given.get("message", ""),
            sets=given.get("sets", ""),
            seed=given.get("seed", ""),
            mode=given.get("mode", "skip"),
        )
        return HTMLResponse(html, status)

    async def start_form(request: Request) -> Response:
        if not pages.signed_in(request):
            return pages.refused()
        return await run_in_threadpool(render, request)

    async def start(request: Request) -> Response:
        from genarun.server.control import ControlError, start_run

        refused = await pages.check_form(request)
        if isinstance(refused, Response):
            return refused
        form = refused
        field = {k: v[-1] for k, v in form.items()}
        tree = field.get("tree", "")
        sets = [line.strip() for line in field.get("set", "").splitlines() if line.strip()]
        seed_text = field.get("seed", "").strip()
        checked = set(form.get("node", []))
        shown = form.get("shown", [])
        mode = field.get("mode", "skip")
        again = {
            "tree": tree,
            "sets": field.get("set", ""),
            "seed": seed_text,
            "checked": checked,
            "mode": mode,
        }
        payload: dict[str, Any] = {"tree": tree, "set": sets}
        if seed_text:
            payload["seed"] = seed_text if seed_text == "random" else _whole(seed_text)
        if shown and mode == "only":
            payload["only"] = [n for n in shown if n in checked]
        elif shown:
            payload["skip"] = [n for n in shown if n not in checked]
        try:
            started = await run_in_threadpool(lambda: start_run(pages.store(), db, trees, payload))
        except ControlError as exc:
            status, message = exc.status, str(exc)
            return await run_in_threadpool(
                lambda: render(request, status, message=message, **again)
            )
        return RedirectResponse(f"/runs/{urllib.parse.quote(started['run'])}", 303)

    return [
        Route("/start", start_form, methods=["GET"]),
        Route("/start", start, methods=["POST"]),
    ]


def _whole(text: str) -> Any:
    """A seed typed in: a whole number, or the text itself (start_run says what is wrong)."""
    try:
        return int(text)
    except ValueError:
        return text
