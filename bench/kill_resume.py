"""kill -9 `genarun run` at random moments, then `genarun resume`, and check nothing was lost.

For each kill: a fresh database, `python -m genarun run tests/trees/resume_slow.yaml` in a
subprocess, SIGKILL at a random moment of the run's execution (uniform between the moment the
run is stored and the uninterrupted run's length), then `python -m genarun resume RUN` (also a real
process). Checks: the run completes; every (node, item) has exactly one executed `done` row
(no finished execution lost or executed twice); output.json equals an uninterrupted run's.

    python bench/kill_resume.py --kills 24 --seed 1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

TREE = Path(__file__).resolve().parent.parent / "tests" / "trees" / "resume_slow.yaml"
ENV = {**os.environ, "GENARUN_DEVICE": "cpu"}


def genarun(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "genarun", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )


def rows(db: Path, sql: str, *params: object) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:  # killed before the tables were created
        return []
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=24)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="genarun-kill-"))
    tree = work / TREE.name
    shutil.copy(TREE, tree)

    started = time.time()
    ref = genarun(
        "run", str(tree), "--db", str(work / "ref.db"), "--out", str(work / "ref"), cwd=work
    )
    assert ref.returncode == 0, ref.stderr
    uninterrupted = time.time() - started
    ref_run = rows(work / "ref.db", "SELECT out_dir, started, ended FROM runs")[0]
    ref_folder = ref_run["out_dir"]
    body = ref_run["ended"] - ref_run["started"]  # from the run being stored to its end
    reference = json.loads((Path(ref_folder) / "output.json").read_text())
    expected = len(rows(work / "ref.db", "SELECT id FROM executions WHERE status = 'done'"))
    print(
        f"uninterrupted run: {uninterrupted:.2f}s as a process, {body:.2f}s executing, {expected} executions"
    )

    outcomes: Counter[str] = Counter()
    finished_at_kill: list[int] = []
    resume_times: list[float] = []
    failures: list[str] = []
    for k in range(args.kills):
        db = work / f"kill{k}.db"
        delay = rng.uniform(0, body)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "genarun",
                "run",
                str(tree),
                "--db",
                str(db),
                "--out",
                str(work / f"out{k}"),
            ],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=ENV,
        )
        while proc.poll() is None and not (db.exists() and rows(db, "SELECT id FROM runs")):
            time.sleep(0.005)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        run = rows(db, "SELECT id, status FROM runs") if db.exists() else []
        if not run:
            outcomes["before the run was stored"] += 1
            print(f"kill {k:2d} at {delay:5.2f}s: before the run was stored")
            continue
        done = len(rows(db, "SELECT id FROM executions WHERE status = 'done'"))
        if run[0]["status"] == "completed":
            outcomes["after the run completed"] += 1
            print(f"kill {k:2d} at {delay:5.2f}s: after the run completed")
            continue
        outcomes["mid-run"] += 1
        finished_at_kill.append(done)
        t0 = time.time()
        resumed = genarun("resume", run[0]["id"], "--db", str(db), cwd=work)
        resume_times.append(time.time() - t0)
        executed = rows(
            db,
            "SELECT node_id, path FROM executions WHERE run_id = ? AND status = 'done' AND reused_from IS NULL",
            run[0]["id"],
        )
        per_item = Counter((r["node_id"], r["path"]) for r in executed)
        final = rows(db, "SELECT status, out_dir FROM runs")[0]
        output = (
            json.loads((Path(final["out_dir"]) / "output.json").read_text())
            if final["status"] == "completed"
            else None
        )
        ok = (
            resumed.returncode == 0
            and final["status"] == "completed"
            and len(per_item) == expected
            and set(per_item.values()) == {1}
            and output == reference
        )
        print(
            f"kill {k:2d} at {delay:5.2f}s: {done:2d}/{expected} finished; resume {resume_times[-1]:.2f}s {'ok' if ok else 'FAILED'}"
        )
        if not ok:
            failures.append(
                f"kill {k}: rc={resumed.returncode} status={final['status']} {resumed.stderr[-300:]}"
            )

    print()
    print(f"kills: {args.kills} ({', '.join(f'{n} {what}' for what, n in outcomes.items())})")
    if finished_at_kill:
        print(
            f"finished executions at the kill (mid-run): min {min(finished_at_kill)}, max {max(finished_at_kill)} of {expected}"
        )
        print(f"resume (a new process): mean {sum(resume_times) / len(resume_times):.2f}s")
    print(f"lost or doubly executed executions, or output.json differences: {len(failures)}")
    for failure in failures:
        print("  " + failure)
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
