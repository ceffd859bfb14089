"""Benchmark: how long genarun's scheduler holds the next model batch back (CPU, no GPU).

The shape of bench/gpu_trajectories.py (R runs x S steps of painter > captioner, every output
embedded, one batch of all R runs per step) with instant fake models that return what the real
providers return (512 px PIL images with their pixel digest started, texts, 512-d vectors), so
what is timed is the scheduler alone: for each finished batch, the time from its arrival to the
dispatch of the batch it frees (`Executor._on_batch`, which advances every run's generator).
On the GPU that is time with no model busy (issue 18: 1.97 s of an 11.7 s run on an H100).
Also printed: the run's end, from the executor's return to run_tree's (the runs' rows, their
folders and latest/), which a hand-written loop does not pay.

    python bench/scheduler_gap.py [--runs 64 --steps 10 --size 512 --model-seconds 0.05 --rounds 6]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument(
        "--model-seconds", type=float, default=0.05, help="each fake batch's duration"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="runs of the tree; the first warms up"
    )
    args = parser.parse_args()

    import numpy as np
    from PIL import Image

    from genarun.models.base import GeneratedText, LoadedModel, Provider, mark_prompt_tokens
    from genarun.models.catalog import CatalogEntry
    from genarun.models.pixels import attach_digest
    from genarun.plugins import registry
    from genarun.run import executor as executor_module
    from genarun.run.runner import RunOptions, run_tree

    size = args.size
    ys, xs = np.mgrid[0:size, 0:size]
    bases = [
        np.stack([(k * 40 + xs * (c + 1) + ys * (3 - c)) % 256 for c in range(3)], axis=-1).astype(
            np.uint8
        )
        for k in range(8)
    ]

    class Fast(LoadedModel):
        max_batch = 1024

        def __init__(self, spec: Any) -> None:
            self.spec = spec

        def run(self, task: str, batch: Any) -> list[Any]:
            out: list[Any] = []
            for inv in batch:
                if task == "image":
                    pixels = bases[hash((str(inv.input), inv.seed)) % len(bases)]
                    image = Image.fromarray(pixels, "RGB")
                    attach_digest(image, pixels)
                    mark_prompt_tokens(image, 10, 77)
                    out.append(image)
                elif task == "caption":
                    text = f"a caption {id(inv.input) % 97} of twenty tokens"
                    out.append(GeneratedText(text, hit_limit=False, tokens=20))
                else:
                    out.append(np.full(512, 1 / np.sqrt(512), np.float32))
            time.sleep(args.model_seconds)
            return out

    class FastProvider(Provider):
        name = "bench-fast"
        uses_torch = False

        def tasks(self, spec: Any) -> frozenset[str]:
            return frozenset({"image", "caption", "embed_text", "embed_image"})

        def load(self, spec: Any, device: str) -> LoadedModel:
            return Fast(spec)

        def weights_present(self, spec: Any) -> bool | None:
            return True

    reg = registry()
    reg.add_provider(FastProvider())
    for name, tasks in (("fast-t2i", {"image"}), ("fast-i2t", {"caption"})):
        reg.add_model(CatalogEntry(name, "bench-fast", name, frozenset(tasks), "dummy"))
    reg.add_model(
        CatalogEntry(
            "fast-embed",
            "bench-fast",
            "fast-embed",
            frozenset({"embed_text", "embed_image"}),
            "dummy",
        )
    )
    from trajectory_tree import cycle_tree, fake_models

    models = fake_models(
        "bench-fast", ("fast-t2i", "fast-i2t", "fast-embed"), size=size, batch=args.runs
    )
    seeds = list(range(1, args.runs + 1))
    tree = cycle_tree(
        "scheduler-gap", models, seeds, start="a lighthouse", steps=args.steps, tokens=20
    )
    gaps: list[float] = []
    on_batch = executor_module.Executor._on_batch

    def timed(self: Any, batch: Any, results: Any, error: Any) -> None:
        began = time.perf_counter()
        on_batch(self, batch, results, error)
        if batch[0].invoke.invocation.task in ("image", "caption", "embed_image", "embed_text"):
            gaps.append(time.perf_counter() - began)

    executor_module.Executor._on_batch = timed  # type: ignore[method-assign]
    # The run's end: from the executor's return (every model done) to run_tree's return
    # (the runs' rows and logs, 64 run folders, latest/), which a hand loop does not pay.
    execute = executor_module.Executor.execute
    executed: list[float] = []

    def execute_timed(self: Any) -> None:
        try:
            execute(self)
        finally:
            executed.append(time.perf_counter())

    executor_module.Executor.execute = execute_timed  # type: ignore[method-assign]
    ends: list[float] = []
    with tempfile.TemporaryDirectory(prefix="genarun-gap-") as tmp:
        work = Path(tmp)
        for round_ in range(max(2, args.rounds)):  # the first warms up
            gaps.clear()
            path = work / f"tree{round_}.json"
            path.write_text(json.dumps(tree))
            began = time.perf_counter()
            outcome = run_tree(
                path,
                RunOptions(
                    db=work / "gap.db",
                    out=work / "out",
                    batch_size=args.runs,
                    workers=4,
                    cache=False,  # an identical cycle would be taken from the cache
                ),
            )
            done = time.perf_counter()
            wall = done - began
            if outcome.status != "completed":
                raise SystemExit(f"run failed: {outcome.failures[:3]}")
            if round_:
                ends.append(done - executed[-1])
                held = sorted(gaps)
                print(
                    f"{args.runs} runs x {args.steps} steps, {size}px, fake batches of"
                    f" {args.model_seconds} s: wall {wall:.2f} s; batch arrival -> next dispatch"
                    f" over {len(gaps)} batches: total {sum(gaps):.2f} s, median"
                    f" {statistics.median(held) * 1000:.0f} ms, max {held[-1] * 1000:.0f} ms;"
                    f" end of run (last model done -> run_tree returns) {ends[-1]:.3f} s",
                    flush=True,
                )
    if len(ends) > 1:
        print(f"end of run over {len(ends)} rounds: median {statistics.median(ends):.3f} s")


if __name__ == "__main__":
    main()
