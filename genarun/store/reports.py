"""Text and JSON reports of stored runs, for `genarun runs list` and `runs show`."""

from __future__ import annotations

import json
import time
from typing import Any

from genarun.store.db import iso
from genarun.store.processes import display_status, process_alive


def _index(path_json: str | None) -> str:
    path = json.loads(path_json) if path_json else []
    return "".join(f"[{i}]" for i in path)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines)


def bindings_text(bindings: dict[str, Any]) -> str:
    """Matrix values and --set overrides in full (`seed=545654 network=[painter, writer]`):
    cut to a width, `seed=54` read as another seed. The column is the table's last, so a long
    value widens the line and the terminal wraps it."""
    return " ".join(f"{k}={_plain(v)}" for k, v in bindings.items())


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def runs_table(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        summary = json.loads(r["summary"]) if r.get("summary") else {}
        duration = f"{r['ended'] - r['started']:.1f}s" if r.get("ended") else ""
        bindings = json.loads(r["bindings"]) if r.get("bindings") else {}
        body.append(
            [
                r["id"][:8],
                r["name"],
                display_status(r) + (", paused" if r.get("paused") else ""),
                iso(r["started"]),
                duration,
                str(r.get("executions") or 0),
                str(summary.get("failed", 0) or ""),
                str(r["seed"]),
                bindings_text(bindings),
            ]
        )
    header = ["RUN", "TREE", "STATUS", "STARTED", "TIME", "EXEC", "FAILED", "SEED", "BINDINGS"]
    if any(r.get("trajectory") for r in rows):  # cycle runs: length and why they stopped
        header.insert(6, "TRAJECTORY")
        for line, r in zip(body, rows, strict=True):
            line.insert(6, r.get("trajectory") or "")
    return table(body, header)


def trajectory_summary(trajectories: list[dict[str, Any]], run_status: str | None = None) -> str:
    """A run's cycles in one cell: `length/max stop reason` (loop length for a repeat).

    A trajectory still marked running in a run that is not (killed, Ctrl-C) shows as
    `interrupted`: `14/40 running` beside a crashed run read as if it were still going."""
    parts = []
    for t in trajectories:
        reason = t["stop_reason"] or t["status"]
        if reason == "running" and run_status not in (None, "running"):
            reason = "interrupted"
        if reason == "repeat" and t["loop_length"]:
            reason = f"repeat (loop {t['loop_length']})"
        cut = f", {t['hit_limit']} cut at max_tokens" if t.get("hit_limit") else ""
        parts.append(f"{t['length']}/{t['max_steps']} {reason}{cut}")
    return "; ".join(parts)


def execution_json(e: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": e["id"],
        "node": e["node_id"],
        "index": json.loads(e["path"]) if e["path"] else [],
        "kind": e["kind"],
        "status": e["status"],
        "seed": e["seed"],
        "model": e["model"],
        "duration": e["duration"],
        "attempts": e["attempts"],
        "reused": e["reused_from"] is not None,
        "reused_from": e["reused_from"],
        "cache_key": e["cache_key"],
        "error": e["error"],
        # the text a failed execution's model returned (or its template rendered)
        "raw_output": json.loads(e["raw_output"]) if e.get("raw_output") else None,
        "params": json.loads(e["params"]) if e["params"] else None,
        "output": json.loads(e["output"]) if e["output"] else None,
        "picks": json.loads(e["picks"]) if e["picks"] else [],
        # what its model calls used (genarun.usage.meter); None when no model ran for it
        "usage": json.loads(e["usage"]) if e.get("usage") else None,
    }


def run_models(run: dict[str, Any]) -> dict[str, dict[str, str]]:
    """runs.models: each model name the run used -> what it resolved to (model, provider,
    revision, weights); empty for runs stored before it was recorded."""
    return json.loads(run["models"]) if run.get("models") else {}


def run_report_json(run: dict[str, Any], executions: list[dict[str, Any]]) -> dict[str, Any]:
    models = run_models(run)
    rows = [execution_json(e) for e in executions]
    for row in rows:  # beside the tree's name(s) for its model, what they resolved to
        names = row["model"].split(" > ") if row["model"] else []
        row["resolved_models"] = {n: models[n] for n in names if n in models}
    return {
        "run": run["id"],
        "experiment": run["experiment_id"],
        "tree": run["name"],
        "tree_path": run["tree_path"],
        "status": display_status(run),
        # Paused (genarun runs pause): when, or null; the caller reads it (store/pauses.py).
        "paused": run.get("paused"),
        "seed": run["seed"],
        "seed_random": bool(run.get("seed_random")),
        "bindings": json.loads(run["bindings"]) if run["bindings"] else {},
        "picks": json.loads(run["picks"]) if run.get("picks") else {},
        "started": run["started"],
        "ended": run["ended"],
        "folder": run["out_dir"],
        "source_run": run["source_run_id"],
        "error": run["error"],
        "summary": json.loads(run["summary"]) if run["summary"] else None,
        "models": models,
        "executions": rows,
    }


def _paused_text(run: dict[str, Any]) -> str:
    if not run.get("paused"):
        return ""
    short = run["id"][:8]
    return f", paused since {iso(run['paused'])} (genarun runs unpause {short})"


def _status_text(run: dict[str, Any]) -> str:
    """The status as `runs list` shows it: a run stored as running whose process is gone (kill
    -9, a lost machine) is `crashed`, with how to finish it, never `running`."""
    status = display_status(run)
    if status == "crashed":
        return (
            f"crashed (stored as running, but its process is gone: genarun resume {run['id'][:8]})"
        )
    if status == "running" and process_alive(run) is None and run.get("host"):
        # Another host's process cannot be looked at from here: say whose word `running` is.
        beat = run.get("heartbeat")
        seen = f", last heartbeat {max(0, round(time.time() - beat))} s ago" if beat else ""
        return f"running (on host {run['host']}, process {run.get('pid')}{seen})"
    return status


def run_report(run: dict[str, Any], executions: list[dict[str, Any]]) -> str:
    lines = [
        f"run      {run['id']}",
        f"tree     {run['name']} ({run['tree_path']})",
        f"status   {_status_text(run)}" + _paused_text(run),
        f"seed     {run['seed']}" + (" (drawn: seed random)" if run.get("seed_random") else ""),
        f"started  {iso(run['started'])}"
        + (f"  ({run['ended'] - run['started']:.2f}s)" if run["ended"] else ""),
        f"folder   {run['out_dir']}",
    ]
    models = run_models(run)
    if models:
        from genarun.models.weights import resolved_text

        lines.append("models   " + "; ".join(resolved_text(n, r) for n, r in models.items()))
    picks = json.loads(run["picks"]) if run.get("picks") else {}
    if picks:  # the tree vars' draws; each execution's own are in --json
        drawn = "; ".join(
            f"{name}={records[0]['value']}" for name, records in picks.items() if records
        )
        lines.append(f"picks    {drawn}")
    if run["error"]:
        lines.append(f"error    {run['error']}")
    lines.append("")
    body = []
    for e in executions:
        output = e["error"] if e["status"] != "done" else (e["output"] or "")
        flags = "reused" if e["reused_from"] is not None else ""
        body.append(
            [
                e["node_id"] + _index(e["path"]),
                e["kind"],
                e["status"],
                str(e["seed"] or ""),
                f"{(e['duration'] or 0):.3f}s",
                flags,
                (output or "").replace("\n", " ")[:60],
            ]
        )
    lines.append(table(body, ["NODE", "KIND", "STATUS", "SEED", "TIME", "FLAGS", "OUTPUT / ERROR"]))
    for e in executions:  # a failure's text in full: it is what the model answered
        if e["status"] == "failed" and e.get("raw_output"):
            raw = json.loads(e["raw_output"])
            text = raw if isinstance(raw, str) else "\n---\n".join(raw)
            lines += ["", f"{e['node_id']}{_index(e['path'])} failed; the text it got:", text]
    return "\n".join(lines)
