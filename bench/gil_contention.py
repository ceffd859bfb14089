"""Benchmark on CPU: GPU-like models sharing one interpreter (issue 18 items 1-2, no GPU).

The shape of bench/gpu_trajectories.py (R runs x S steps of painter > captioner, every output
and the start prompt embedded) with the fakes of bench/gil_models.py, which hold and release
the GIL as the real models do (launch-bound captioner, GPU-bound painter, PIL and numpy pre-
and post-processing). Ways, alternating in rounds in one process:

  (b) the hand-written lockstep loop (gpu_trajectories.lockstep), one thread;
  (p) the hand-written pipelined loop, 2 cohorts on 2 threads (gpu_hand_loops.pipelined);
  (c) genarun's executor on a `cycle` + `matrix` tree, once per `--variants` entry.

Printed per way: wall seconds, each model's seconds per batch (alone in (b); beside the others
in (c)), and whether its captions equal (b)'s.

    python bench/gil_contention.py [--runs 64 --steps 10 --batch 64 32 --rounds 3]

On a machine with few cores, use `--size 128`: at 512 px the C work that releases the GIL (PNG
compression, resampling, hashing), which a GPU host's many cores absorb, competes with the
models for the cores, and what is measured is no longer the interpreter.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
for folder in (str(BENCH.parent), str(BENCH)):
    if folder not in sys.path:
        sys.path.insert(0, folder)

from gil_models import GPU, FakeClip, FakeModels, register_provider  # noqa: E402
from gpu_hand_loops import pipelined  # noqa: E402
from gpu_trajectories import PROMPT, Way, genarun_captions, lockstep, run_seeds  # noqa: E402
from timeline import Timeline  # noqa: E402
from trajectory_tree import cycle_tree, fake_models  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, nargs="+", default=[64])
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cohorts", type=int, default=2, help="(p)'s cohorts; 0 leaves it out")
    parser.add_argument(
        "--switch-intervals",
        type=float,
        nargs="+",
        default=[],
        metavar="MS",
        help="also run genarun with the GIL switch interval at each (ms; Python's default: 5)",
    )
    parser.add_argument("--json", type=Path)
    return parser.parse_args(argv)


@contextlib.contextmanager
def switch_interval(ms: float | None) -> Iterator[None]:
    saved = sys.getswitchinterval()
    if ms is not None:
        sys.setswitchinterval(ms / 1000)
    try:
        yield
    finally:
        sys.setswitchinterval(saved)


def tree(runs: list[int], steps: int, size: int, tokens: int, batch: int) -> dict[str, Any]:
    models = fake_models(
        "bench-gil", ("fake-painter", "fake-captioner", "fake-embedder"), size=size, batch=batch
    )
    return cycle_tree("gil-contention", models, runs, start=PROMPT, steps=steps, tokens=tokens)


def with_genarun(
    work: Path, name: str, text: dict[str, Any], batch: int, switch_ms: float | None = None
) -> tuple[Way, Any]:
    """One genarun run of `text`; the way's parts are each model call's seconds per batch, and
    for each call what the process's other threads used of the CPU meanwhile (bench/timeline)."""
    from genarun.run.runner import RunOptions, run_tree

    path = work / f"{name}.json"
    path.write_text(json.dumps(text))
    with switch_interval(switch_ms), Timeline() as timeline:
        began = time.perf_counter()
        outcome = run_tree(
            path,
            RunOptions(
                db=work / f"{name}.db",
                out=work / "out",
                batch_size=batch,
                workers=4,
                cache=False,  # an identical cycle would be taken from the cache
            ),
        )
        way = Way(name, seconds=time.perf_counter() - began)
    if outcome.status != "completed":
        raise SystemExit(f"genarun run failed: {outcome.failures[:3]}")
    for stat in outcome.model_stats:
        way.parts[stat["task"]] = stat["seconds"] / max(1, stat["batches"])
    for task, row in timeline.beside_summary().items():
        way.parts.update({f"{task} beside {k}": v for k, v in row.items() if k != "batch"})
    return way, outcome


SPENT = ("cpu", "core_wait", "gil_wait", "gpu_wait")


def add_spent(way: Way) -> None:
    """Fold the fakes' account of their launches and syncs (gil_models.Spent) since the last
    call into `way.parts`: per model call, median seconds per batch of each."""
    for task, calls in GPU.take_spent().items():
        for field in SPENT:
            way.parts[f"{task} launches {field}"] = statistics.median(
                getattr(c, field) for c in calls
            )


def per_batch(way: Way, runs: int, steps: int, batch: int) -> dict[str, float]:
    """A hand loop's seconds per model call, from its totals per kind of call."""
    chunks = -(-runs // batch)
    calls = {
        "image": chunks * -(-steps // 2),
        "caption": chunks * (steps // 2),
        "embed_image": chunks * -(-steps // 2),
        "embed_text": chunks * (steps // 2 + 1),
    }
    return {k: v / calls[k] for k, v in way.parts.items() if k in calls}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import os

    matrix, seeds = run_seeds(args.runs)
    register_provider(args.size, args.tokens)
    models, clip = FakeModels(args.size, args.tokens), FakeClip()
    ways: list[Way] = []
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="genarun-gil-") as tmp:
        work = Path(tmp)
        # Warm-up: the fakes' calibration, genarun's imports and first run.
        lockstep(models, clip, seeds[:8], 2, args.size, 8)
        with_genarun(work, "warm", tree(matrix[:8], 2, args.size, args.tokens, 8), 8)
        for round_ in range(args.rounds):
            for batch in args.batch:
                GPU.take_spent()
                way = lockstep(models, clip, seeds, args.steps, args.size, batch)
                way.parts = per_batch(way, args.runs, args.steps, batch)
                add_spent(way)
                ways.append(way)
                report(way)
            if args.cohorts:
                way = Way(f"(p) hand pipelined {args.cohorts} cohorts")
                GPU.take_spent()
                # The GPU bench's `sync` is for CUDA; the fakes sync inside each call.
                ways.append(
                    pipelined(
                        way, models, clip, seeds, args.steps, args.size, args.cohorts, PROMPT,
                        lambda device: None,
                    )
                )  # fmt: skip
                add_spent(way)
                report(way)
            for batch in args.batch:
                for ms in [None, *args.switch_intervals]:
                    label = f"r{round_}-{batch}-{ms}"
                    GPU.take_spent()
                    way, outcome = with_genarun(
                        work,
                        label,
                        tree(matrix, args.steps, args.size, args.tokens, batch),
                        batch,
                        ms,
                    )
                    add_spent(way)
                    way.captions = genarun_captions(work, label, outcome, matrix)
                    way.name = f"(c) genarun x{batch}" + ("" if ms is None else f" si{ms:g}ms")
                    ways.append(way)
                    report(way)
    summarize(ways, args, load)


def report(way: Way) -> None:
    print(f"{way.name:<36} {way.seconds:7.2f} s   {_parts(way.parts)}", flush=True)


def _parts(parts: dict[str, float]) -> str:
    """Seconds per batch of each model call; per call, where its launches and syncs spent
    their time (gil_models.Spent), and the CPU seconds other threads used while it ran."""
    calls = {k: v for k, v in parts.items() if " " not in k}
    text = "per batch: " + "  ".join(f"{k} {v:.3f}" for k, v in sorted(calls.items()))
    for task in sorted({k.split(" ")[0] for k in parts if " launches " in k}):
        text += f"\n{'':>46}{task} launches: " + "  ".join(
            f"{field.replace('_', ' ')} {parts.get(f'{task} launches {field}', 0.0):.3f}"
            for field in SPENT
        )
    for task in sorted(calls):
        beside = {
            k.split(" beside ")[1]: v for k, v in parts.items() if k.startswith(f"{task} beside ")
        }
        if beside:
            text += f"\n{'':>46}beside {task}: " + "  ".join(
                f"{k} {v:.3f}" for k, v in sorted(beside.items())
            )
    return text


def summarize(ways: list[Way], args: argparse.Namespace, load: tuple[float, ...]) -> None:
    import os

    names = list(dict.fromkeys(w.name for w in ways))
    medians = {n: statistics.median(w.seconds for w in ways if w.name == n) for n in names}
    hand = [n for n in names if n.startswith("(b)")]
    best_hand = min(hand, key=medians.__getitem__)
    reference = next(w for w in ways if w.name == best_hand)
    print(
        f"\n{args.runs} runs x {args.steps} steps, load average {load[0]:.1f} at the start,"
        f" {os.getloadavg()[0]:.1f} at the end; medians of {args.rounds} rounds:"
    )
    out: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "ways": {}}
    for name in names:
        mine = [w for w in ways if w.name == name]
        parts = {
            k: statistics.median(w.parts[k] for w in mine if k in w.parts)
            for k in sorted({k for w in mine for k in w.parts})
        }
        same = "-"
        if mine[0].captions and name != best_hand:
            same = f"{sum(mine[0].captions.get(r) == reference.captions.get(r) for r in range(args.runs))}/{args.runs}"
        ratio = medians[best_hand] / medians[name]
        print(
            f"  {name:<34} {medians[name]:7.2f} s  {ratio:5.2f}x of {best_hand[4:]}"
            f"  captions equal: {same}  {_parts(parts)}"
        )
        out["ways"][name] = {
            "seconds": [round(w.seconds, 3) for w in mine],
            "median": round(medians[name], 3),
            "ratio": round(ratio, 3),
            "per_batch": {k: round(v, 4) for k, v in parts.items()},
            "captions_equal": same,
        }
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
