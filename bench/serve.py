"""Benchmark: `genarun serve` with big runs (issue 14's performance targets).

    python bench/serve.py [--executions 10000] [--rate 1000] [--seconds 10] [--rounds 5]

1. The run page of a run of 10,000 executions (written through the store's API: a plan, 5,000
   texts, 4,998 images and 1 failure, as a run writes them) served by a real `genarun serve`
   process on 127.0.0.1: time to the last byte of `GET /runs/RUN`, cold (first request) and
   warm (median of the rest), and its size. Target: under 1 s.
2. The events stream while another process writes 1,000 executions a second (a commit of 50
   rows every 50 ms, each row's `ended` the time it was written) into a running run: the
   events that arrive, the rate, and the lag from write to arrival (median, p99, max). Target:
   every event arrives and the stream keeps up (lag bounded by the poll, not growing).
3. The replay of the whole 10,000-execution run's stream (a page opened after the run):
   events a second.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _rows(run_id: str, start: int, count: int, now: float) -> list[dict]:
    """Executions as the executor records them: texts and images of two foreach nodes."""
    rows = []
    for i in range(start, start + count):
        image = i % 2 == 1
        node = "cover" if image else "draft"
        index = i // 2
        output = (
            {"$image": f"assets/cover-{index}.png", "sha256": "0" * 64}
            if image
            else f"Draft {index}: a lizard story, with a gecko and a river, told plainly."
        )
        rows.append(
            {
                "run_id": run_id,
                "node_id": node,
                "path": json.dumps([index]),
                "kind": "image" if image else "generate",
                "params": json.dumps({"prompt": f"item {index}"}),
                "input_hash": f"{i:064x}",
                "cache_key": f"k{i:063x}",
                "output": json.dumps(output),
                "seed": 1000 + i,
                "model": "dummy",
                "status": "done",
                "started": now - 0.01,
                "ended": now,
                "duration": 0.01,
                "attempts": 1,
            }
        )
    return rows


def build_run(db: Path, executions: int, status: str = "completed") -> str:
    """A run of `executions` executions written through the store's API."""
    from genarun.store.db import Store

    store = Store(db)
    try:
        experiment = store.create_experiment(name="bench-serve")
        began = time.time() - 600
        run_id = store.create_run(
            name="bench-serve",
            experiment_id=experiment,
            status=status,
            seed=1,
            out_dir=str(db.parent / "out"),
            started=began,
        )
        plan = _rows(run_id, 0, 1, began)[0] | {"node_id": "plan", "path": "[]", "kind": "template"}
        failed = _rows(run_id, 2, 1, began)[0] | {
            "status": "failed",
            "output": None,
            "error": "draft[1]: the model said nothing (raise max_tokens)",
        }
        if executions:
            store.record_executions([plan, failed])
        step = 1000
        for start in range(2, executions, step):
            rows = _rows(run_id, start + 2, min(step, executions - start), began + start / 100)
            store.record_executions(rows)
        if status != "running":
            store.update_run(run_id, ended=began + 120)
        return run_id
    finally:
        store.close()


def write_live(db: Path, run_id: str, rate: int, seconds: float) -> None:
    """Another process's writes: `rate` executions a second, 20 commits a second."""
    from genarun.store.db import Store

    store = Store(db)
    per = max(1, rate // 20)
    began = time.monotonic()
    written = 0
    while time.monotonic() - began < seconds:
        store.record_executions(_rows(run_id, 10**6 + written, per, time.time()))
        written += per
        wait = began + written / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
    store.update_run(run_id, status="completed", ended=time.time())
    store.close()
    print(json.dumps({"written": written, "seconds": round(time.monotonic() - began, 2)}))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(db: Path) -> Iterator[str]:
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "genarun",
            "serve",
            "--db",
            str(db),
            "--port",
            str(port),
            "--no-auto-resume",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("genarun serve did not start")
            time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def run_page(base: str, run_id: str, rounds: int) -> dict:
    times, size = [], 0
    with httpx.Client(timeout=120) as client:
        for _ in range(rounds):
            began = time.perf_counter()
            response = client.get(f"{base}/runs/{run_id}")
            times.append(time.perf_counter() - began)
            assert response.status_code == 200, response.status_code
            size = len(response.content)
    return {
        "cold_s": round(times[0], 3),
        "warm_median_s": round(statistics.median(times[1:] or times), 3),
        "warm_max_s": round(max(times[1:] or times), 3),
        "bytes": size,
    }


def _stream(base: str, run_id: str, after: int = 0) -> Iterator[tuple[str, int, float]]:
    """(event, id, arrival time) of each event of the run's stream, until `end`."""
    url = f"{base}/api/v1/runs/{run_id}/events"
    with httpx.stream("GET", url, params={"after": after}, timeout=120) as response:
        name, event_id = None, 0
        for line in response.iter_lines():
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name:
                yield name, event_id, time.time()
                if name == "end":
                    return


def live_stream(base: str, db: Path, rate: int, seconds: float) -> dict:
    run_id = build_run(db, 0, status="running")
    writer = subprocess.Popen(
        [sys.executable, __file__, "--write", str(db), run_id, str(rate), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    arrivals = {i: at for name, i, at in _stream(base, run_id) if name == "execution"}
    out, _ = writer.communicate(timeout=60)
    written = json.loads(out)["written"]
    # When each row was written (its `ended`), read back from the file afterwards.
    conn = sqlite3.connect(db)
    ended = dict(conn.execute("SELECT id, ended FROM executions WHERE run_id = ?", (run_id,)))
    conn.close()
    lags = sorted(at - ended[i] for i, at in arrivals.items())
    # The rate from the first write to the last arrival: what the stream delivered while the
    # writer wrote (a stream that falls behind takes longer than the writes did).
    count, first, last = len(arrivals), min(ended.values()), max(arrivals.values())
    return {
        "written": written,
        "received": count,
        "rate_per_s": round(count / max(1e-9, (last or 0) - (first or 0)), 1),
        "lag_median_s": round(statistics.median(lags), 3),
        "lag_p99_s": round(lags[int(0.99 * (len(lags) - 1))], 3),
        "lag_max_s": round(lags[-1], 3),
    }


def replay(base: str, run_id: str) -> dict:
    began = time.perf_counter()
    count = sum(1 for name, _, _ in _stream(base, run_id) if name == "execution")
    took = time.perf_counter() - began
    return {"events": count, "seconds": round(took, 3), "per_s": round(count / took)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write:
        db, run_id, rate, seconds = args.write
        write_live(Path(db), run_id, int(rate), float(seconds))
        return
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        began = time.perf_counter()
        run_id = build_run(db, args.executions)
        built = time.perf_counter() - began
        print(f"built a run of {args.executions} executions in {built:.2f} s")
        with serving(db) as base:
            page = run_page(base, run_id, args.rounds)
            print(f"run page: {json.dumps(page)}")
            stream = live_stream(base, db, args.rate, args.seconds)
            print(f"live stream at {args.rate}/s for {args.seconds:g} s: {json.dumps(stream)}")
            print(
                f"replay of the {args.executions}-execution run: {json.dumps(replay(base, run_id))}"
            )
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
