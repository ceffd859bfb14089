"""The experiments pages of `genarun serve`: `/experiments` (each experiment with its runs by
status and its matrix) and `/experiments/<experiment>`: its progress by stage and runs (as
`genarun experiments show`), its trajectories, its TDA tables (the persistence diagrams stored
by `persistence` nodes or `genarun tda compute`: points, features, entropy and the longest
bar per dimension) and its trajectory plots (the PNG files `genarun tda plots` wrote into the
experiment's `plots/` folder, each with its CSV).

A request only reads what is stored or written: no diagram is computed and no plot drawn in a
handler. "Draw the plots" (not in read-only mode) runs `genarun tda plots` in a worker process.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from genarun.server.graph_pages import _NAV, missing_page
from genarun.server.run_pages import STYLE

PLOTS = "plots"  # the folder of an experiment's folder that its page shows
LOG = "tda-plots.log"  # what the last "Draw the plots" worker said
PLOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.(png|csv)")
MAX_PLOTS = 200

_EXPERIMENTS = (
    """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>genarun experiments</title>"""
    + STYLE
    + "</head><body>"
    + _NAV
    + """<h1>Experiments</h1>
{% if not experiments %}<p>No experiments yet: each <code>genarun run</code> of a tree makes one (a matrix makes one of many runs).</p>{% else %}
<table><tr><th>experiment</th><th>tree</th><th>created</th><th>runs</th><th>status</th><th>matrix</th></tr>
{% for e in experiments %}<tr><td><a href="/experiments/{{ e.id }}">{{ e.id[:8] }}</a></td><td>{{ e.name }}</td><td>{{ e.created }}</td><td>{{ e.runs }}</td>
<td>{% for s, n in e.statuses %}<span class="badge {{ s }}">{{ n }} {{ s }}</span> {% endfor %}</td><td>{{ e.matrix }}</td></tr>{% endfor %}
</table>{% endif %}</body></html>"""
)

_EXPERIMENT = (
    """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>experiment {{ p.experiment[:8] }}</title>"""
    + STYLE
    + """<style>.plots{display:flex;flex-wrap:wrap;gap:1rem}.plots figure{margin:0;max-width:36rem}.plots img{max-width:100%;border:1px solid #ddd}
.meta{color:#666;font-size:.9em}.num{text-align:right;font-variant-numeric:tabular-nums}</style></head><body>"""
    + _NAV
    + """<p><a href="/experiments">All experiments</a></p>
<h1>{{ p.tree }} <small>experiment {{ p.experiment[:8] }}</small></h1>
<p>{{ p.experiment }} · created {{ created }} · folder {{ p.folder }}<br>matrix {{ matrix or '-' }}</p>
{% if message %}<p class="{{ 'failed' if failed else 'done' }}" role="status">{{ message }}</p>{% endif %}
<h2>Progress</h2><table><tr><th>stage</th><th>done</th><th>of</th><th></th></tr>
{% for name, s in p.stages.items() %}<tr><td>{{ name }}</td><td class="num">{{ s.done }}</td><td class="num">{{ s.total }}</td>
<td><div class="bar"><span style="left:0;width:{{ (100 * s.done / s.total)|round(1) if s.total else 0 }}%"></span></div></td></tr>{% endfor %}</table>
<h2>Runs</h2><table><tr><th>run</th><th>status</th><th>bindings</th><th>trajectory</th><th>embeddings</th><th>diagrams</th></tr>
{% for r in p.runs %}<tr><td><a href="/runs/{{ r.run }}">{{ r.run[:8] }}</a></td><td><span class="badge {{ r.status }}">{{ r.status }}</span></td>
<td>{{ r.bindings_text }}</td><td>{{ r.trajectory or '-' }}</td><td class="num">{{ r.embeddings }}</td><td class="num">{{ r.diagrams }}</td></tr>{% endfor %}</table>
{% if trajectories %}<h2>Trajectories</h2><table><tr><th>run</th><th>trajectory</th><th>network</th><th>steps</th><th>stopped</th><th>embedded by</th></tr>
{% for t in trajectories %}<tr><td>{{ t.run[:8] }}</td><td>{{ t.where }}</td><td>{{ t.network }}</td><td class="num">{{ t.length }}/{{ t.max_steps }}</td><td>{{ t.stopped }}</td><td>{{ t.embedded }}</td></tr>{% endfor %}</table>{% endif %}
<h2>Topology</h2>
{% if not diagrams %}<p>No persistence diagrams stored yet (a <code>persistence</code> node, or <code>genarun tda compute {{ p.experiment[:8] }}</code>).</p>{% else %}
<table class="tda"><tr><th>run</th><th>trajectory</th><th>embedding</th><th>points</th>{% for d in dims %}<th>H{{ d }} features</th><th>H{{ d }} entropy</th><th>H{{ d }} longest</th>{% endfor %}</tr>
{% for d in diagrams %}<tr><td>{{ d.run[:8] }}</td><td>{{ d.where }}</td><td>{{ d.model }}</td><td class="num">{{ d.points }}</td>
{% for h in d.dims %}<td class="num">{{ h.features }}</td><td class="num">{{ h.entropy }}</td><td class="num">{{ h.longest }}</td>{% endfor %}</tr>{% endfor %}</table>
{% if summary %}<h3>Entropy by matrix value</h3><table><tr><th>key</th><th>value</th><th>embedding</th>{% for d in dims %}<th>H{{ d }} mean entropy</th>{% endfor %}<th>diagrams</th></tr>
{% for s in summary %}<tr><td>{{ s.key }}</td><td>{{ s.value }}</td><td>{{ s.model }}</td>{% for m in s.means %}<td class="num">{{ m }}</td>{% endfor %}<td class="num">{{ s.count }}</td></tr>{% endfor %}</table>{% endif %}{% endif %}
<h2>Trajectory plots</h2>
{% if plots %}<p class="meta">From {{ plots_folder }}, written {{ plots_when }}.</p><div class="plots">
{% for f in plots %}<figure><img src="{{ f.src }}" alt="{{ f.name }}"><figcaption>{{ f.name }}{% if f.csv %} · <a href="{{ f.csv }}">data (CSV)</a>{% endif %}</figcaption></figure>{% endfor %}</div>
{% else %}<p>No plots in {{ plots_folder }} yet{% if not can_draw %}: <code>genarun tda plots {{ p.experiment[:8] }} --out {{ plots_folder }}</code> draws them{% endif %}.</p>{% endif %}
{% if log %}<details><summary>what the last <code>genarun tda plots</code> said</summary><pre style="white-space:pre-wrap">{{ log }}</pre></details>{% endif %}
{% if can_draw %}<form method="post" action="/experiments/{{ p.experiment }}/plots"><input type="hidden" name="csrf" value="{{ csrf }}">
<button>{{ 'Draw the plots again' if plots else 'Draw the plots' }}</button> <span class="meta">runs <code>genarun tda plots {{ p.experiment[:8] }} --out {{ plots_folder }}</code> in a worker; reload to see them</span></form>{% endif %}
</body></html>"""
)

_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_experiments_template = _env.from_string(_EXPERIMENTS)
_experiment_template = _env.from_string(_EXPERIMENT)


def _experiments_rows(store: Any) -> list[dict[str, Any]]:
    from genarun.experiments.report import experiment_rows

    return experiment_rows(store, 200)


def _number(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.4g}"


def _tda_rows(store: Any, runs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[int]]:
    """The stored diagrams, one row each, with per dimension: features, entropy, longest bar."""
    from genarun.store.trajectories import persistence_of

    rows, dims = [], 0
    for row in persistence_of(store, [r["id"] for r in runs]):
        data = json.loads(row["diagrams"])
        entropy = json.loads(row["entropy"])
        per_dim = []
        for dim, bars in enumerate(data.get("diagrams", [])):
            finite = [d - b for b, d in bars if d is not None]
            per_dim.append(
                {
                    "features": len(bars),
                    "entropy": _number(entropy[dim]) if dim < len(entropy) else "",
                    "longest": _number(max(finite)) if finite else "-",
                    "entropy_value": entropy[dim] if dim < len(entropy) else None,
                }
            )
        dims = max(dims, len(per_dim))
        path = "" if row["path"] == "[]" else row["path"]
        rows.append(
            {
                "run": row["run_id"],
                "where": f"{row['node_id']}{path}",
                "model": row["embedding_model"],
                "points": row["points"],
                "dims": per_dim,
            }
        )
    for r in rows:  # every row as wide as the widest
        r["dims"] += [{"features": "", "entropy": "", "longest": "", "entropy_value": None}] * (
            dims - len(r["dims"])
        )
    return rows, list(range(dims))


def _entropy_summary(
    runs: list[dict[str, Any]], diagrams: list[dict[str, Any]], dims: list[int]
) -> list[dict[str, Any]]:
    """Mean entropy per dimension for each value of each matrix key that varies: the table
    behind `tda plots`' entropy box plots, from the stored numbers."""
    bindings = {r["id"]: json.loads(r["bindings"] or "{}") for r in runs}
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    values: dict[str, set[str]] = {}
    for d in diagrams:
        for key, value in bindings.get(d["run"], {}).items():
            shown = ">".join(map(str, value)) if isinstance(value, list) else str(value)
            values.setdefault(key, set()).add(shown)
            groups.setdefault((key, shown, d["model"]), []).append(d)
    out = []
    for (key, shown, model), members in sorted(groups.items()):
        if len(values[key]) < 2:  # one value compares nothing
            continue
        means = []
        for dim in dims:
            found = [m["dims"][dim]["entropy_value"] for m in members]
            found = [v for v in found if v is not None]
            means.append(_number(sum(found) / len(found)) if found else "")
        out.append(
            {"key": key, "value": shown, "model": model, "means": means, "count": len(members)}
        )
    return out


def _trajectory_rows(store: Any, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from genarun.store.trajectories import trajectories_of

    rows = []
    for t in trajectories_of(store, [r["id"] for r in runs]):
        stopped = t["stop_reason"] or t["status"]
        if stopped == "repeat" and t["loop_length"]:
            stopped = f"repeat (loop {t['loop_length']})"
        path = "" if t["path"] == "[]" else t["path"]
        rows.append(
            {
                "run": t["run_id"],
                "where": f"{t['node_id']}{path}",
                "network": " > ".join(json.loads(t["network"] or "[]")),
                "length": t["length"],
                "max_steps": t["max_steps"],
                "stopped": stopped,
                "embedded": ", ".join(json.loads(t["embed_models"] or "[]")),
            }
        )
    return rows


def plots_folder(experiment: dict[str, Any]) -> Path | None:
    return Path(experiment["out_dir"]) / PLOTS if experiment.get("out_dir") else None


def _plot_files(experiment: dict[str, Any]) -> tuple[list[dict[str, Any]], str, str]:
    """The PNGs of the experiment's plots folder (with their CSV), when written, the log."""
    from genarun.store.confined import is_file, read_bytes
    from genarun.store.db import iso

    folder = plots_folder(experiment)
    if folder is None or not folder.is_dir():
        return [], "", ""
    base = f"/experiments/{experiment['id']}/plots/"
    names = sorted(p.name for p in folder.iterdir() if PLOT_NAME.fullmatch(p.name))
    files = []
    newest = 0.0
    for name in names:
        if not name.endswith(".png") or not is_file(folder, name):
            continue
        newest = max(newest, (folder / name).stat().st_mtime)
        csv = name.removesuffix(".png") + ".csv"
        files.append({"name": name, "src": base + name, "csv": base + csv if csv in names else ""})
    log = ""
    if is_file(folder, LOG):
        log = read_bytes(folder, LOG).decode(errors="replace")[-3000:]
    return files[:MAX_PLOTS], iso(newest) if newest else "", log


def _experiment_context(store: Any, ref: str) -> dict[str, Any] | str:
    from genarun.errors import StoreError
    from genarun.experiments.report import experiment_progress
    from genarun.store.db import iso
    from genarun.store.trajectories import resolve_experiment

    try:
        experiment = resolve_experiment(store, ref)
    except StoreError as exc:
        return str(exc)
    progress = experiment_progress(store, experiment)
    runs = store.runs_of_experiment(experiment["id"])
    varying = [k for k, v in progress["matrix"].items() if len(v) > 1]
    for r in progress["runs"]:
        r["bindings_text"] = " ".join(
            f"{k}={'>'.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in r["bindings"].items()
            if k in varying or k not in progress["matrix"]
        )
    diagrams, dims = _tda_rows(store, runs)
    plots, when, log = _plot_files(experiment)
    folder = plots_folder(experiment)
    return {
        "p": progress,
        "created": iso(progress["created"]),
        "matrix": " x ".join(f"{k} ({len(v)})" for k, v in progress["matrix"].items()),
        "trajectories": _trajectory_rows(store, runs),
        "diagrams": diagrams,
        "dims": dims,
        "summary": _entropy_summary(runs, diagrams, dims),
        "plots": plots,
        "plots_when": when,
        "plots_folder": str(folder) if folder else "-",
        "log": log,
    }


def _start_plots(store: Any, db: Path, ref: str) -> tuple[bool, str]:
    """Start `genarun tda plots` for the experiment in a worker; (started, what to say)."""
    from genarun.errors import StoreError
    from genarun.server.control import _reap_later
    from genarun.store.trajectories import resolve_experiment

    try:
        experiment = resolve_experiment(store, ref)
    except StoreError as exc:
        return False, str(exc)
    folder = plots_folder(experiment)
    if folder is None:
        return False, "this experiment has no folder to draw its plots into"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        log = (folder / LOG).open("wb")
    except OSError as exc:
        return False, f"cannot write {folder}: {exc.strerror}"
    command = [sys.executable, "-m", "genarun", "tda", "plots", experiment["id"]]
    command += ["--out", str(folder), "--db", str(db)]
    with log:
        log.write(f"$ genarun tda plots {experiment['id'][:8]} --out {folder}\n".encode())
        log.flush()
        worker = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=folder,
            start_new_session=True,
        )
    _reap_later(worker)
    return True, f"drawing the plots in a worker (pid {worker.pid}); reload in a moment"


def experiments_page_routes(pages: Any, db: Path, read_only: bool) -> list[Route]:
    """/experiments, /experiments/{id}, its plot files and (not read-only) POST .../plots."""

    async def experiments_page(request: Request) -> Response:
        if not pages.signed_in(request):
            return pages.refused()
        rows = await run_in_threadpool(lambda: _experiments_rows(pages.store()))
        return HTMLResponse(_experiments_template.render(experiments=rows))

    async def experiment_page(request: Request) -> Response:
        if not pages.signed_in(request):
            return pages.refused()
        ref = request.path_params["ref"][:100]
        found = await run_in_threadpool(lambda: _experiment_context(pages.store(), ref))
        if isinstance(found, str):
            return missing_page(found, "/experiments", "All experiments")
        html = _experiment_template.render(
            **found,
            can_draw=not read_only,
            csrf=pages.csrf(request),
            message=request.query_params.get("message", "")[:300],
            failed=request.query_params.get("failed") == "1",
        )
        return HTMLResponse(html)

    def read_plot(ref: str, name: str) -> bytes | None:
        from genarun.errors import StoreError
        from genarun.store.confined import read_bytes
        from genarun.store.trajectories import resolve_experiment

        if not PLOT_NAME.fullmatch(name):
            return None
        try:
            experiment = resolve_experiment(pages.store(), ref)
            folder = plots_folder(experiment)
            return read_bytes(folder, name) if folder is not None else None
        except (StoreError, OSError):
            return None

    async def plot_file(request: Request) -> Response:
        if not pages.signed_in(request):
            return pages.refused()
        name = request.path_params["name"]
        data = await run_in_threadpool(read_plot, request.path_params["ref"][:100], name)
        if data is None:
            return Response("not found", 404, media_type="text/plain")
        media = "image/png" if name.endswith(".png") else "text/csv; charset=utf-8"
        return Response(data, media_type=media, headers={"Cache-Control": "private"})

    async def draw(request: Request) -> Response:
        import urllib.parse

        form = await pages.check_form(request)
        if isinstance(form, Response):
            return form
        ref = request.path_params["ref"][:100]
        started, message = await run_in_threadpool(lambda: _start_plots(pages.store(), db, ref))
        query = urllib.parse.urlencode({"message": message, "failed": "0" if started else "1"})
        return RedirectResponse(f"/experiments/{urllib.parse.quote(ref)}?{query}", 303)

    routes = [
        Route("/experiments", experiments_page, methods=["GET"]),
        Route("/experiments/{ref}", experiment_page, methods=["GET"]),
        Route("/experiments/{ref}/plots/{name}", plot_file, methods=["GET"]),
    ]
    if not read_only:
        routes.append(Route("/experiments/{ref}/plots", draw, methods=["POST"]))
    return routes
