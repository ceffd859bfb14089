"""Benchmark: persistence (H0+H1, or up to H2) of a 1000-step trajectory of 768-d embeddings.

Usage: python bench/tda_persistence.py [--steps 1000] [--dims 768] [--seeds 0 1 2]
                                       [--data walk attractor] [--repeats 3] [--maxdim 1]
                                       [--ways ripser.py 'gudhi whole' default ...]
                                       [--baseline CHECKOUT]

For each data set and seed it times, on the same distance matrix in the same process, round
robin over --repeats rounds (medians reported, so that other work on the machine hits every
way alike):
  ripser.py   the reference engine (``engine="ripser"``; what genarun used before)
  gudhi       gudhi's Ripser on the whole filtration (up to the enclosing radius)
  default     genarun's exact default: gudhi (holos-tda's kernel for H2 where it is installed),
              stopped early where no class can be left (H0/H1: witness-free edges; H2: edges
              whose link may be disconnected), vertices by degree
  default gudhi   the same with gudhi's kernel throughout (``engine="gudhi"``)
  giotto-ph   ``gph.ripser_parallel`` on 1 and 2 threads, when it is installed (not a dependency)
  baseline    with --baseline CHECKOUT: the default of another genarun checkout (an older commit in
              a ``git worktree``), loaded beside this one, so that before and after are timed in
              one run, round robin, on the same data and load
For genarun's ways it also gives the CPU seconds spent inside the Ripser kernel (gudhi's or
holos-tda's, the rest being bounds, ordering and checks in Python/numpy).
and checks that every exact way gives the same diagrams as the first way run (ripser.py unless
--ways leaves it out), with each way's speed against it. Then the approximations:
  threshold   the filtration stopped at a scale (exact for classes that die below it)
  n_perm      a greedy subsample, with its guaranteed bound and its measured bottleneck distance
              to the exact H1 diagram
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from genarun.analysis import bottleneck, pairwise_distances, persistence_from_distances
from genarun.analysis import persistence as persistence_module


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def looping_walk(steps: int, dims: int, seed: int) -> np.ndarray:
    """A seeded random walk on the unit sphere that now and then walks back to an earlier step.

    Each step moves by isotropic noise of norm ~0.5 (consecutive cosine distance ~0.1, like
    caption/image round trips), so far-apart steps end up nearly orthogonal. Every 40-120 steps
    the walk heads back to a random earlier step over 15-40 steps, closing a loop in the
    trajectory ("has it done this before?").
    """
    rng = np.random.default_rng(seed)
    step = 0.5
    x = unit(rng.standard_normal(dims))
    out = [x]
    next_loop = 80
    while len(out) < steps:
        if len(out) >= next_loop:
            target, start = out[int(rng.integers(0, len(out) - 15))], out[-1]
            length = int(rng.integers(15, 40))
            for i in range(1, length + 1):
                a = i / length
                noise = 0.5 * step * rng.standard_normal(dims) / np.sqrt(dims)
                out.append(unit((1 - a) * start + a * target + noise))
            x = out[-1]
            next_loop = len(out) + int(rng.integers(40, 120))
        else:
            x = unit(x + step * rng.standard_normal(dims) / np.sqrt(dims))
            out.append(x)
    return np.asarray(out[:steps], dtype=np.float32)


def attractor_walk(steps: int, dims: int, seed: int) -> np.ndarray:
    """A trajectory that settles into an attractor, as text->image->text loops tend to.

    A 50-150 step random walk (as in :func:`looping_walk`), then a period-2 cycle in a basin:
    every other step is a caption, one of 2-4 fixed embeddings repeated exactly (a captioner
    that keeps returning the same sentences), and the steps between are images, noisy around
    the basin's image (cosine distance ~0.06 between them). Half to 70 % of the way in, a
    20-40 step excursion leads to a second basin. Many near-duplicate and duplicate points.
    """
    rng = np.random.default_rng(seed)

    def walk(x: np.ndarray) -> np.ndarray:
        return unit(x + 0.5 * rng.standard_normal(dims) / np.sqrt(dims))

    def basin(centre: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        image = unit(centre + 0.3 * rng.standard_normal(dims) / np.sqrt(dims))
        captions = [
            unit(centre + 0.4 * rng.standard_normal(dims) / np.sqrt(dims))
            for _ in range(int(rng.integers(2, 5)))
        ]
        return image, captions

    x = unit(rng.standard_normal(dims))
    out = [x]
    transient = int(rng.integers(50, 150))
    while len(out) < transient:
        x = walk(x)
        out.append(x)
    image, captions = basin(x)
    switch = int(rng.integers(int(steps * 0.5), int(steps * 0.7)))
    while len(out) < steps:
        if len(out) == switch:
            for _ in range(int(rng.integers(20, 40))):
                x = walk(x)
                out.append(x)
            image, captions = basin(x)
        elif len(out) % 2:
            out.append(unit(image + 0.25 * rng.standard_normal(dims) / np.sqrt(dims)))
        else:
            out.append(captions[int(rng.integers(len(captions)))])
    return np.asarray(out[:steps], dtype=np.float32)


DATA: dict[str, Callable[[int, int, int], np.ndarray]] = {
    "walk": looping_walk,
    "attractor": attractor_walk,
}


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float, float]:
    """(value, wall seconds, CPU seconds of this process)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start, time.process_time() - start_cpu


def gudhi_whole(dist: np.ndarray, maxdim: int) -> Any:
    """genarun's gudhi engine without the early cut (bench only: flips a module constant)."""
    saved = persistence_module._CUT_MAX_POINTS, persistence_module._HUB_CUT_MAX_POINTS
    persistence_module._CUT_MAX_POINTS = persistence_module._HUB_CUT_MAX_POINTS = 0
    try:
        return persistence_from_distances(dist, maxdim, metric="cosine", engine="gudhi")
    finally:
        persistence_module._CUT_MAX_POINTS, persistence_module._HUB_CUT_MAX_POINTS = saved


def baseline_persistence(checkout: str) -> ModuleType:
    """``genarun.analysis.persistence`` of another checkout, loaded beside this one.

    genarun's modules are taken out of ``sys.modules`` while the other checkout's are imported
    (its functions keep references to its own modules), then put back.
    """
    root = str(Path(checkout).resolve())
    ours = {k: m for k, m in sys.modules.items() if k == "genarun" or k.startswith("genarun.")}
    for name in ours:
        del sys.modules[name]
    sys.path.insert(0, root)
    try:
        module = importlib.import_module("genarun.analysis.persistence")
    finally:
        sys.path.remove(root)
        for name in [k for k in sys.modules if k == "genarun" or k.startswith("genarun.")]:
            del sys.modules[name]
        sys.modules.update(ours)
    if not str(module.__file__).startswith(root):
        raise SystemExit(f"--baseline {checkout}: no genarun package there")
    return module


class KernelClock:
    """CPU seconds spent inside a persistence module's Ripser kernels (gudhi's dense and sparse
    ones, holos-tda's).

    The kernel runs in the calling thread (on one thread of its own), so the process's CPU time
    across the call is the kernel's own.
    """

    def __init__(self, module: ModuleType) -> None:
        self.seconds = 0.0
        # Newer modules reach both kernels through _gudhi_ripser, older ones had _gudhi_kernel.
        self._wrap(module, "_gudhi_ripser" if hasattr(module, "_gudhi_ripser") else "_gudhi_kernel")
        if hasattr(module, "_holos_kernel"):
            self._wrap(module, "_holos_kernel")

    def _wrap(self, module: ModuleType, name: str) -> None:
        find = getattr(module, name)

        def timed_find(*args: Any) -> Any:
            kernel = find(*args)
            if kernel is None:
                return None

            def call(*a: Any, **k: Any) -> Any:
                start = time.process_time()
                try:
                    return kernel(*a, **k)
                finally:
                    self.seconds += time.process_time() - start

            return call

        setattr(module, name, timed_find)


def ways(
    maxdim: int, baseline: ModuleType | None = None
) -> tuple[dict[str, Callable[[np.ndarray], list[np.ndarray]]], dict[str, KernelClock]]:
    """Each exact way: distance matrix -> [H0..Hmaxdim] sorted by birth then death; and the
    kernel clocks of genarun's default ways."""

    def genarun(engine: str, module: ModuleType) -> Callable[[np.ndarray], list[np.ndarray]]:
        return lambda dist: (
            module.persistence_from_distances(dist, maxdim, metric="cosine", engine=engine).diagrams
        )

    clocks = {"default": KernelClock(persistence_module)}
    found: dict[str, Callable[[np.ndarray], list[np.ndarray]]] = {
        "ripser.py": genarun("ripser", persistence_module),
        "gudhi whole": lambda dist: gudhi_whole(dist, maxdim).diagrams,
        "default": genarun("auto", persistence_module),
        "default gudhi": genarun("gudhi", persistence_module),
    }
    clocks["default gudhi"] = clocks["default"]  # one clock per module, read before and after
    if baseline is not None:
        clocks["baseline"] = KernelClock(baseline)
        found["baseline"] = genarun("auto", baseline)
    try:
        from gph import ripser_parallel
    except ImportError:
        return found, clocks
    for threads in (1, 2):
        found[f"giotto-ph {threads}t"] = lambda dist, t=threads: [
            persistence_module._sorted(d)
            for d in ripser_parallel(dist, maxdim=maxdim, metric="precomputed", n_threads=t)["dgms"]
        ]
    return found, clocks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--dims", type=int, default=768)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data", nargs="+", choices=sorted(DATA), default=["walk", "attractor"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--n-perm", type=int, default=600)
    parser.add_argument("--maxdim", type=int, default=1, choices=[1, 2])
    parser.add_argument(
        "--ways", nargs="+", help="exact ways to run (default: all); the first is the reference"
    )
    parser.add_argument("--no-approx", action="store_true", help="skip threshold and n_perm")
    parser.add_argument(
        "--baseline",
        metavar="CHECKOUT",
        help="also time the default of this genarun checkout (way 'baseline'), side by side",
    )
    args = parser.parse_args()

    baseline = baseline_persistence(args.baseline) if args.baseline else None
    exact, clocks = ways(args.maxdim, baseline)
    if args.ways:
        unknown = sorted(set(args.ways) - set(exact))
        if unknown:
            parser.error(f"unknown or missing ways {unknown}; have {sorted(exact)}")
        exact = {name: exact[name] for name in args.ways}
    first = next(iter(exact))
    warm = pairwise_distances(looping_walk(50, 8, 0), "cosine")
    for way in exact.values():  # imports (ripser.py's take about 0.8 s) stay out of the timings
        way(warm)
    print(
        f"{args.steps} steps x {args.dims} dims, H0..H{args.maxdim}, cosine; {os.cpu_count()} CPUs, "
        f"{platform.machine()}, load average {os.getloadavg()[0]:.2f}; medians of "
        f"{args.repeats} rounds; ways: {', '.join(exact)}"
    )
    for data in args.data:
        totals: list[float] = []
        for seed in args.seeds:
            points = DATA[data](args.steps, args.dims, seed)
            dist, t_dist, _ = timed(pairwise_distances, points, "cosine")
            walls: dict[str, list[float]] = {name: [] for name in exact}
            cpus: dict[str, list[float]] = {name: [] for name in exact}
            kernels: dict[str, list[float]] = {name: [] for name in clocks}
            results: dict[str, list[np.ndarray]] = {}
            for _ in range(args.repeats):
                for name, way in exact.items():
                    before = clocks[name].seconds if name in clocks else 0.0
                    results[name], wall, cpu = timed(way, dist)
                    walls[name].append(wall)
                    cpus[name].append(cpu)
                    if name in clocks:
                        kernels[name].append(clocks[name].seconds - before)
            reference = results[first]
            wall = {name: statistics.median(times) for name, times in walls.items()}
            main_way = "default" if "default" in wall else first
            total = t_dist + wall[main_way]
            totals.append(total)
            h1 = reference[1]
            radius = float(dist.astype(np.float32).max(axis=1).min())
            print(
                f"{data} seed {seed}: exact total {total:.2f} s (distance matrix "
                f"{t_dist * 1000:.0f} ms + {main_way} {wall[main_way]:.2f} s); "
                f"{' / '.join(str(len(r)) for r in reference)} points in H0..H{args.maxdim}, "
                f"last H1 death {h1[:, 1].max():.3f}, enclosing "
                f"radius {radius:.3f}, median distance {np.median(dist):.3f}"
            )
            for name in exact:
                same = all(
                    np.array_equal(a, b) for a, b in zip(results[name], reference, strict=True)
                )
                kernel = (
                    f" (Ripser kernel {statistics.median(kernels[name]):5.2f})"
                    if kernels.get(name)
                    else ""
                )
                print(
                    f"  {name:13s} {wall[name]:5.2f} s wall ({min(walls[name]):.2f}-"
                    f"{max(walls[name]):.2f}), {statistics.median(cpus[name]):5.2f} s CPU{kernel}, "
                    f"{wall[first] / wall[name]:5.1f}x {first}, identical: {same}"
                )
            if args.no_approx:
                continue
            cut, t_cut, _ = timed(
                persistence_from_distances, dist, 1, metric="cosine", threshold=args.threshold
            )
            sub, t_sub, _ = timed(
                persistence_from_distances, dist, 1, metric="cosine", n_perm=args.n_perm
            )
            print(
                f"  threshold {args.threshold}: {t_cut:.2f} s, "
                f"{np.isinf(cut.diagrams[1][:, 1]).sum()} H1 classes open at the threshold, "
                f"{(h1[:, 0] > args.threshold).sum()} born above it\n"
                f"  n_perm {args.n_perm}: {t_sub:.2f} s, bound {sub.error_bound:.3f}, measured "
                f"bottleneck H1 {bottleneck(h1, sub.diagrams[1]):.3f}"
            )
        print(
            f"{data}: exact total over seeds: median {statistics.median(totals):.2f} s, "
            f"max {max(totals):.2f} s; load average now {os.getloadavg()[0]:.2f}"
        )


if __name__ == "__main__":
    main()
