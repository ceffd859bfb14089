"""Benchmark: the panic example (examples/panic, 4 trajectories on the built-in tiny models) with
the Ray executor against the local executor, in one process.

    python bench/ray_overhead.py [--steps 20] [--rounds 3] [--num-cpus 2] [--address ADDR]

Ray is started once (`ray.init(num_cpus=..., include_dashboard=False)`, or joined at
--address) before the rounds, as a cluster would be up before a run; its start is reported on
its own. Each round runs the tree locally, then on Ray (fresh databases and folders; every
execution, trajectory and diagram stored). The first round is cold on both sides: the local
executor loads the models into this process, the Ray one starts its model actors and loads the
models in them; later rounds find them loaded (the local model cache; Ray's actor pool, which
keeps actors across runs). Each round's ratio, the cold ratio and the warm rounds' medians and
their ratio are printed with the load average, and the outputs of both are compared (embedding
vectors and image pixels). Target on 2 CPU cores: under 1.3x.

With --tree, any tree (for the GPU trajectory benchmark, a tree of gpu_trajectories' setup).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the comparison is the one tests/test_ray.py makes

from tests.helpers import comparable_outputs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--address", default=None)
    parser.add_argument("--tree", type=Path, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import ray

    from genarun.run.runner import RunOptions, run_tree

    work = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    os.environ["GENARUN_HOME"] = str(work / "home")
    if args.tree is None:
        tree = work / "panic.yaml"
        text = (REPO / "examples/panic/tree.yaml").read_text()
        tree.write_text(text.replace("steps: 20", f"steps: {args.steps}"))
    else:
        tree = args.tree

    began = time.perf_counter()
    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - began

    print(
        "load average (1, 5, 15 min) at the start: "
        + ", ".join(f"{v:.1f}" for v in os.getloadavg())
    )
    times: dict[str, list[float]] = {"local": [], "ray": []}
    same = True
    for round_ in range(args.rounds):
        found = {}
        for executor in ("local", "ray"):
            db = work / f"{executor}-{round_}.db"
            options = RunOptions(
                db=db,
                out=work / f"{executor}-{round_}",
                executor=executor,
                batch_size=args.batch_size,
                device=args.device,
            )
            began = time.perf_counter()
            outcome = run_tree(tree, options)
            times[executor].append(time.perf_counter() - began)
            if outcome.status != "completed":
                sys.exit(f"{executor}: {outcome.status}: {outcome.failures[:3]}")
            found[executor] = [comparable_outputs(run.folder, db) for run in outcome.runs]
        same = same and found["local"] == found["ray"]
        print(
            f"round {round_ + 1}: local {times['local'][-1]:.2f} s, ray {times['ray'][-1]:.2f} s"
            f" ({times['ray'][-1] / times['local'][-1]:.2f}x)",
            flush=True,
        )
    ray.shutdown()
    print(f"ray.init: {ray_start:.2f} s (once, before the rounds)")
    cold_local, cold_ray = times["local"][0], times["ray"][0]
    print(f"cold: local {cold_local:.2f} s, ray {cold_ray:.2f} s: {cold_ray / cold_local:.2f}x")
    if args.rounds > 1:
        local = statistics.median(times["local"][1:])
        on_ray = statistics.median(times["ray"][1:])
        print(
            f"warm (median of rounds 2-{args.rounds}): local {local:.2f} s, ray {on_ray:.2f} s:"
            f" {on_ray / local:.2f}x"
        )
    print(
        "load average (1, 5, 15 min) at the end: " + ", ".join(f"{v:.1f}" for v in os.getloadavg())
    )
    print(f"outputs identical: {same}")


if __name__ == "__main__":
    main()
