"""Benchmark: 10,000 template nodes (100 groups x a foreach of 100) run end to end by genarun,
against a hand-written loop doing the same renders and the same SQLite inserts, in one process.

    python bench/core_templates.py [--groups 100] [--items 100]
    python bench/core_templates.py --hand-only DB GROUPS ITEMS   (the loop alone; bench/startup.py)

Also times `genarun --help` in a fresh interpreter. Prints both and the ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_tree(groups: int, items: int) -> dict:
    nodes = []
    for g in range(groups):
        nodes.append(
            {
                "id": f"group_{g}",
                "kind": "template",
                "text": f"{{{{ range({items}) | list }}}}",
                "children": [
                    {
                        "id": f"line_{g}",
                        "kind": "template",
                        "foreach": f"group_{g}",
                        "as": "n",
                        "text": "Item {{ n }} of {{ topic }}: a [red | green | blue] {{ thing }}",
                    }
                ],
            }
        )
    return {
        "genarun": 1,
        "name": "bench",
        "seed": 1,
        "vars": {"topic": "lizards", "thing": "gecko"},
        "nodes": nodes,
    }


def hand_written(db_path: Path, groups: int, items: int) -> float:
    """The same work without genarun: render each template, insert and commit each row."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    start = time.perf_counter()
    env = SandboxedEnvironment(undefined=StrictUndefined)
    con = sqlite3.connect(db_path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute(
        "CREATE TABLE executions (id INTEGER PRIMARY KEY, run_id TEXT, node_id TEXT, path TEXT, kind TEXT,"
        " params TEXT, input_hash TEXT, output TEXT, seed INTEGER, status TEXT, started REAL, ended REAL,"
        " duration REAL, picks TEXT)"
    )
    sql = (
        "INSERT INTO executions (run_id, node_id, path, kind, params, input_hash, output, seed, status,"
        " started, ended, duration, picks) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
    )
    template = env.from_string("Item {{ n }} of {{ topic }}: a {{ color }} {{ thing }}")
    lists = env.from_string("{{ range(items) | list }}")
    for g in range(groups):
        t0 = time.time()
        out = lists.render(items=items)
        params = json.dumps({"text": out})
        digest = hashlib.sha256(params.encode()).hexdigest()
        t1 = time.time()
        con.execute(
            sql,
            (
                "run",
                f"group_{g}",
                "[]",
                "template",
                params,
                digest,
                params,
                g,
                "done",
                t0,
                t1,
                t1 - t0,
                None,
            ),
        )
        con.commit()
        for n in range(items):
            t0 = time.time()
            rng = random.Random(f"{g}:{n}")
            color = rng.choice(["red", "green", "blue"])
            text = template.render(n=n, topic="lizards", thing="gecko", color=color)
            params = json.dumps({"text": text})
            digest = hashlib.sha256(params.encode()).hexdigest()
            t1 = time.time()
            row = (
                "run",
                f"line_{g}",
                json.dumps([n]),
                "template",
                params,
                digest,
                json.dumps(text),
                n,
                "done",
                t0,
                t1,
                t1 - t0,
                json.dumps([color]),
            )
            con.execute(sql, row)
            con.commit()
    con.close()
    return time.perf_counter() - start


def with_genarun(tree_path: Path, db_path: Path) -> tuple[float, int]:
    from genarun.run.runner import RunOptions, run_tree

    start = time.perf_counter()
    outcome = run_tree(tree_path, RunOptions(db=db_path, out=tree_path.parent / "out"))
    elapsed = time.perf_counter() - start
    assert outcome.status == "completed", outcome.failures
    return elapsed, outcome.runs[0].counts["done"]


def help_time() -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "genarun", "--help"], check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    if sys.argv[1:2] == ["--hand-only"]:  # the hand-written script alone, as a process
        db, groups, items = sys.argv[2:5]
        hand_written(Path(db), int(groups), int(items))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--items", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        tree_path = tmp_path / "bench.yaml"
        import yaml

        tree_path.write_text(yaml.safe_dump(make_tree(args.groups, args.items), sort_keys=False))
        import genarun.run.runner  # noqa: F401 - import cost is not part of the run

        hand = hand_written(tmp_path / "hand.db", args.groups, args.items)
        ours, done = with_genarun(tree_path, tmp_path / "genarun.db")
    nodes = args.groups * (args.items + 1)
    print(f"nodes executed:      {done} (expected {nodes})")
    print(f"hand-written loop:   {hand:.2f} s")
    print(f"genarun run:         {ours:.2f} s")
    print(f"ratio genarun/hand:  {ours / hand:.2f}x  (target <= 2x, and under 10 s)")
    print(f"genarun --help:      {help_time():.3f} s  (target < 0.5 s)")


if __name__ == "__main__":
    main()
