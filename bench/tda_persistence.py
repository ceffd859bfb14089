"""Benchmark: H0+H1 persistence of a 1000-step trajectory of 768-d embeddings.

Usage: python bench/tda_persistence.py [--steps 1000] [--dims 768] [--seeds 0 1 2]

For each seed it times, on the same data in the same process:
  exact      genarun.analysis: numpy cosine distance matrix, then ripser on it (full filtration)
  ripser     ripser's own ``metric="cosine"`` path on the points (the usual way), and the ratio
  threshold  the filtration stopped at a scale (exact for classes that die below it)
  n_perm     a greedy subsample, with its guaranteed bound and its measured bottleneck distance
             to the exact H1 diagram
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings

import numpy as np

from genarun.analysis import bottleneck, pairwise_distances, persistence_from_distances


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


def timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    """(value, wall seconds); the CPU seconds of the last call are kept in ``timed.cpu``."""
    start, start_cpu = time.perf_counter(), time.process_time()
    value = fn(*args, **kwargs)
    timed.cpu = time.process_time() - start_cpu  # type: ignore[attr-defined]
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--dims", type=int, default=768)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--n-perm", type=int, default=600)
    args = parser.parse_args()

    from ripser import ripser

    print(
        f"{args.steps} steps x {args.dims} dims, H0+H1, cosine; {os.cpu_count()} CPUs, "
        f"{platform.machine()}, load average {os.getloadavg()[0]:.2f}"
    )
    totals: list[float] = []
    for seed in args.seeds:
        points = looping_walk(args.steps, args.dims, seed)
        dist, t_dist = timed(pairwise_distances, points, "cosine")
        exact, t_rips = timed(persistence_from_distances, dist, 1, metric="cosine")
        cpu_rips = timed.cpu  # type: ignore[attr-defined]
        total = t_dist + t_rips
        totals.append(total)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "more columns than rows": expected for 768-d points
            theirs, t_theirs = timed(ripser, points, maxdim=1, metric="cosine")
        same = all(
            np.allclose(np.sort(a, axis=0), np.sort(b, axis=0), atol=1e-5)
            for a, b in zip(exact.diagrams, theirs["dgms"], strict=True)
        )
        cut, t_cut = timed(
            persistence_from_distances, dist, 1, metric="cosine", threshold=args.threshold
        )
        sub, t_sub = timed(persistence_from_distances, dist, 1, metric="cosine", n_perm=args.n_perm)
        h1 = exact.diagrams[1]
        print(
            f"seed {seed}: exact {total:.2f} s (distance matrix {t_dist * 1000:.0f} ms, "
            f"ripser {t_rips:.2f} s wall, {cpu_rips:.2f} s CPU), {len(h1)} H1 points, entropy H0 {exact.entropy[0]:.3f} "
            f"H1 {exact.entropy[1]:.3f}\n"
            f"  ripser metric='cosine': {t_theirs:.2f} s, same diagrams: {same}, "
            f"ratio {t_theirs / total:.2f}x\n"
            f"  threshold {args.threshold}: {t_cut:.2f} s, {np.isinf(cut.diagrams[1][:, 1]).sum()} "
            f"H1 classes open at the threshold, {(h1[:, 0] > args.threshold).sum()} born above it\n"
            f"  n_perm {args.n_perm}: {t_sub:.2f} s, bound {sub.error_bound:.3f}, measured "
            f"bottleneck H1 {bottleneck(h1, sub.diagrams[1]):.3f}, "
            f"H1 entropy {sub.entropy[1]:.3f}"
        )
    print(
        f"exact total over seeds: median {statistics.median(totals):.2f} s, "
        f"min {min(totals):.2f} s, max {max(totals):.2f} s; "
        f"load average now {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
