"""`genarun experiments list/show`: experiments and their per-stage progress."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from genarun.store import trajectories as tstore
from genarun.store.db import iso
from genarun.store.processes import display_status
from genarun.store.reports import table, trajectory_summary

if TYPE_CHECKING:
    from genarun.store.db import Store


def experiment_rows(store: Store, limit: int = 50) -> list[dict[str, Any]]:
    """The newest experiments, each with its runs counted by status and its matrix's shape
    (`genarun experiments list` and the server's experiments page)."""
    out = []
    for e in tstore.list_experiments(store, limit):
        runs = store.runs_of_experiment(e["id"])
        statuses: dict[str, int] = {}
        for r in runs:
            status = display_status(r)
            statuses[status] = statuses.get(status, 0) + 1
        matrix = json.loads(e["matrix"]) if e.get("matrix") else {}
        out.append(
            {
                "id": e["id"],
                "name": e["name"],
                "created": iso(e["created"]),
                "runs": len(runs),
                "statuses": sorted(statuses.items()),
                "matrix": " x ".join(f"{len(v)} {k}" for k, v in matrix.items()) or "-",
            }
        )
    return out


def experiments_table(rows: list[dict[str, Any]]) -> str:
    body = [
        [
            e["id"][:8],
            e["name"],
            e["created"],
            str(e["runs"]),
            ", ".join(f"{n} {s}" for s, n in e["statuses"]),
            e["matrix"][:50],
        ]
        for e in rows
    ]
    return table(body, ["EXPERIMENT", "TREE", "CREATED", "RUNS", "STATUS", "MATRIX"])


def experiment_progress(store: Store, experiment: dict[str, Any]) -> dict[str, Any]:
    """Per-stage progress of an experiment: invocations, embeddings, persistence diagrams."""
    runs = store.runs_of_experiment(experiment["id"])
    run_ids = [r["id"] for r in runs]
    counts = tstore.progress_counts(store, run_ids)
    trajs = tstore.trajectories_of(store, run_ids)
    by_run: dict[str, list[dict[str, Any]]] = {}
    for t in trajs:
        by_run.setdefault(t["run_id"], []).append(t)
    expected_steps = sum(t["max_steps"] for t in trajs)
    # A finished trajectory expects what it embedded (it may have stopped early); an unfinished
    # one, the start prompt and each output by each model that takes its kind (a text-only
    # model embeds half the outputs of a painter and captioner network).
    model_kinds, step_kinds = tstore.embedding_plan(store, run_ids)
    expected_embeddings = 0
    for run_id, run_trajs in by_run.items():
        if all(t["status"] == "done" for t in run_trajs):
            expected_embeddings += counts[run_id]["embeddings"]  # finished: what it embedded
        else:
            expected_embeddings += sum(
                tstore.expected_embeddings(
                    t, model_kinds, step_kinds.get((t["run_id"], t["node_id"], t["path"]), {})
                )
                for t in run_trajs
            )
    expected_diagrams = sum(len(json.loads(t["embed_models"] or "[]")) for t in trajs)
    done_steps = sum(t["length"] for t in trajs)
    finished_steps = sum(t["max_steps"] - t["length"] for t in trajs if t["status"] == "done")
    stages = {
        "runs": {
            "done": sum(r["status"] == "completed" for r in runs),
            "failed": sum(r["status"] == "failed" for r in runs),
            "total": len(runs),
        },
        "invocations": {
            "done": done_steps,
            "total": expected_steps - finished_steps,
            "max": expected_steps,
        },
        "embeddings": {
            "done": (embedded := sum(c["embeddings"] for c in counts.values())),
            "total": max(expected_embeddings, embedded),
        },
        "persistence": {
            "done": sum(c["diagrams"] for c in counts.values()),
            "total": expected_diagrams,
        },
    }
    rows = []
    for r in runs:
        c = counts[r["id"]]
        status = display_status(r)
        rows.append(
            {
                "run": r["id"],
                "status": status,
                "bindings": json.loads(r["bindings"]) if r["bindings"] else {},
                "seed": r["seed"],
                "trajectory": trajectory_summary(by_run.get(r["id"], []), status),
                "steps": c["steps"],
                "embeddings": c["embeddings"],
                "diagrams": c["diagrams"],
                "executions": c["executions"],
                "failed": c["failed"],
                "error": r["error"],
            }
        )
    return {
        "experiment": experiment["id"],
        "tree": experiment["name"],
        "created": experiment["created"],
        "folder": experiment["out_dir"],
        "matrix": json.loads(experiment["matrix"] or "{}"),
        "stages": stages,
        "runs": rows,
    }


def experiment_report(progress: dict[str, Any]) -> str:
    lines = [
        f"experiment  {progress['experiment']}",
        f"tree        {progress['tree']}",
        f"created     {iso(progress['created'])}",
        f"folder      {progress['folder']}",
        "matrix      "
        + (" x ".join(f"{k} ({len(v)})" for k, v in progress["matrix"].items()) or "-"),
        "",
    ]
    for stage, c in progress["stages"].items():
        total = c["total"]
        pct = f"{100 * c['done'] / total:5.1f}%" if total else "    -"
        extra = f", {c['failed']} failed" if c.get("failed") else ""
        if stage == "invocations" and c["max"] != total:
            extra += f" (of at most {c['max']}; some stopped early on a repeat)"
        lines.append(f"{stage:<12} {c['done']:>6} / {total:<6} {pct}{extra}")
    unfinished = [
        r for r in progress["runs"] if r["status"] in ("crashed", "interrupted", "failed")
    ]
    if unfinished:
        lines.append(
            f"{len(unfinished)} run{'s' if len(unfinished) != 1 else ''} did not finish; to finish them: genarun resume {progress['experiment'][:8]}"
        )
    lines.append("")
    # Only the matrix keys that differ between runs: the shared ones are in the matrix line
    # above, and in a long row they pushed the ones that tell runs apart out of the cell.
    varying = [k for k, v in progress["matrix"].items() if len(v) > 1] or list(progress["matrix"])
    body = []
    for r in progress["runs"]:
        bindings = " ".join(
            f"{k}={_short(v)}"
            for k, v in r["bindings"].items()
            if k in varying or k not in progress["matrix"]
        )
        body.append(
            [
                r["run"][:8],
                r["status"],
                r["trajectory"] or "-",
                str(r["embeddings"]),
                str(r["diagrams"]),
                bindings[:80],
            ]
        )
    lines.append(table(body, ["RUN", "STATUS", "TRAJECTORY", "EMBEDDINGS", "DIAGRAMS", "BINDINGS"]))
    return "\n".join(lines)


def _short(value: Any) -> str:
    return ">".join(map(str, value)) if isinstance(value, list) else str(value)
