"""Benchmark: 1,000 `fetch` executions (a foreach) against a local server that answers each
request in 20 ms, with `concurrency: 32`, against a hand-written httpx loop with the same
concurrency (a thread pool of 32 over one client), in one process.

    python bench/fetch.py [--requests 1000] [--concurrency 32] [--delay 0.02] [--rounds 3]

The server runs in its own process (a threaded HTTP/1.1 server with keep-alive), so it does not
compete with the client for this interpreter's GIL. Each round times the hand loop, then
genarun (`run_tree`: compiling, the run, every execution and response stored in SQLite, the
output folder); the medians and their ratio are printed, and the CPU seconds each way used
(on a busy machine, wall time follows them). Target: genarun within 1.5x.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SERVER = r"""
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DELAY = float(sys.argv[1])

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        time.sleep(DELAY)
        body = json.dumps({"path": self.path, "value": len(self.path)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def start_server(delay: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(delay)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    port = int(process.stdout.readline())
    return process, f"http://127.0.0.1:{port}"


def hand_loop(url: str, requests: int, concurrency: int) -> float:
    """The baseline: one httpx client, `concurrency` threads, every answer parsed."""
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(limits=limits, timeout=30) as client:

        def one(i: int) -> int:
            response = client.get(f"{url}/item/{i}")
            response.raise_for_status()
            return int(response.json()["value"])

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            results = list(pool.map(one, range(requests)))
        elapsed = time.perf_counter() - started
    assert len(results) == requests
    return elapsed


def genarun_run(url: str, requests: int, concurrency: int, folder: Path) -> float:
    from genarun.run.runner import RunOptions, run_tree

    tree = folder / "fetch_bench.yaml"
    tree.write_text(
        json.dumps(
            {
                "genarun": 1,
                "name": "fetch-bench",
                "seed": 1,
                "vars": {"base": url},
                "nodes": [
                    {
                        "id": "call",
                        "kind": "fetch",
                        "foreach": f"range({requests})",
                        "url": "{{ base }}/item/{{ item }}",
                        "extract": "value",
                        "concurrency": concurrency,
                    }
                ],
            }
        )
    )
    db = folder / "genarun.db"  # one database for every round, as a project has
    started = time.perf_counter()
    outcome = run_tree(tree, RunOptions(db=db, out=folder / "out"))
    elapsed = time.perf_counter() - started
    assert outcome.status == "completed", outcome.failures[:3]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    process, url = start_server(args.delay)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            # Warm both paths once (imports, the first connections), untimed.
            hand_loop(url, 50, args.concurrency)
            genarun_run(url, 50, args.concurrency, folder)
            hand: list[float] = []
            ours: list[float] = []
            cpu: dict[str, list[float]] = {"hand": [], "genarun": []}
            for _ in range(args.rounds):
                started = time.process_time()
                hand.append(hand_loop(url, args.requests, args.concurrency))
                cpu["hand"].append(time.process_time() - started)
                started = time.process_time()
                ours.append(genarun_run(url, args.requests, args.concurrency, folder))
                cpu["genarun"].append(time.process_time() - started)
    finally:
        process.terminate()
        process.wait(timeout=10)
    ideal = args.requests * args.delay / args.concurrency
    print(
        f"{args.requests} requests, {args.delay * 1000:.0f} ms each, concurrency"
        f" {args.concurrency} (ideal {ideal:.2f} s); {os.cpu_count()} CPUs"
    )
    print("hand httpx loop: " + ", ".join(f"{t:.2f}" for t in hand) + " s")
    print("genarun fetch:   " + ", ".join(f"{t:.2f}" for t in ours) + " s")
    h, g = statistics.median(hand), statistics.median(ours)
    print(f"median: hand {h:.2f} s, genarun {g:.2f} s, ratio {g / h:.2f}x (target <= 1.5x)")
    # CPU seconds of this process (all threads): what a busy machine's wall time follows.
    ch, cg = statistics.median(cpu["hand"]), statistics.median(cpu["genarun"])
    print(f"CPU seconds (median): hand {ch:.2f}, genarun {cg:.2f}, ratio {cg / ch:.2f}x")


if __name__ == "__main__":
    main()
