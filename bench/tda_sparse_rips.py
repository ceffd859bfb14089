"""Benchmark: would a sparse Rips filtration (Sheehy; gudhi's ``RipsComplex(sparse=eps)``) make
H0-H2 of a 1000-step trajectory fast, with a bound worth stating?

Usage: python bench/tda_sparse_rips.py [--steps 1000] [--dims 768] [--seeds 0 1 2]
                                       [--data walk attractor] [--eps 0.01 0.03 0.1 0.3 1]

For each data set and seed: genarun's exact default H0-H2 (its time, and the scale its early cut
runs the kernel to), then for each epsilon the edges of gudhi's sparse Rips complex below that
scale against the exact complex's (the kernel's work grows with the triangles on those edges,
about as their count to the power 3/2), and the share of the exact H1 and H2 points that a
multiplicative (1 + eps) interleaving could remove or invent: points with death / birth <=
(1 + eps)^2 lie within log(1 + eps) of the diagonal in log scale, so a diagram that carries
that bound says nothing about them. (gudhi's sparse Rips is interleaved with the Rips
filtration by a factor of at least 1 + eps.)
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tda_persistence import DATA

from genarun.analysis import pairwise_distances, persistence_from_distances
from genarun.analysis import persistence as persistence_module
from genarun.analysis._link_cut import without_duplicates


def edges_below(distances: np.ndarray, scale: float, eps: float | None) -> int:
    """Edges of the exact (``eps`` None) or sparse Rips complex with filtration <= ``scale``."""
    import gudhi

    complex_ = gudhi.RipsComplex(distance_matrix=distances, max_edge_length=scale, sparse=eps)
    tree = complex_.create_simplex_tree(max_dimension=1)
    return sum(1 for simplex, value in tree.get_skeleton(1) if len(simplex) == 2 and value <= scale)


def within(diagram: np.ndarray, eps: float) -> float:
    """Share of the finite points with death / birth <= (1 + eps)^2 (births > 0)."""
    finite = diagram[np.isfinite(diagram[:, 1]) & (diagram[:, 0] > 0)]
    if not len(finite):
        return math.nan
    return float(np.mean(finite[:, 1] / finite[:, 0] <= (1 + eps) ** 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--dims", type=int, default=768)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data", nargs="+", choices=sorted(DATA), default=["walk", "attractor"])
    parser.add_argument("--eps", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3, 1.0])
    args = parser.parse_args()
    import gudhi

    print(
        f"{args.steps} steps x {args.dims} dims, H0..H2, cosine; gudhi {gudhi.__version__}; "
        f"{os.cpu_count()} CPUs, {platform.machine()}, load average {os.getloadavg()[0]:.2f}"
    )
    for data in args.data:
        for seed in args.seeds:
            dist = pairwise_distances(DATA[data](args.steps, args.dims, seed), "cosine")
            start = time.process_time()
            exact = persistence_from_distances(dist, 2, metric="cosine")
            cpu = time.process_time() - start
            d = without_duplicates(np.ascontiguousarray(dist, dtype=np.float32))
            radius = float(d.max(axis=1).min())
            cuts = persistence_module._h2_cut_scales(d, radius)
            scale = cuts[0] if cuts else radius
            h1, h2 = exact.diagrams[1], exact.diagrams[2]
            finite = h2[np.isfinite(h2[:, 1]) & (h2[:, 0] > 0)]
            ratios = finite[:, 1] / finite[:, 0] if len(finite) else np.array([math.nan])
            print(
                f"{data} seed {seed}: exact default {cpu:.2f} s CPU, {len(h1)} / {len(h2)} points "
                f"in H1 / H2 (H2 death/birth median {np.median(ratios):.4f}, max "
                f"{ratios.max():.4f}); kernel scale {scale:.4f}, "
                f"{edges_below(d.astype(np.float64), scale, None)} edges below it"
            )
            for eps in args.eps:
                kept = edges_below(d.astype(np.float64), scale, eps)
                print(
                    f"  sparse eps {eps:<5}: {kept:7d} edges below the scale; the bound could "
                    f"remove {within(h1, eps):6.1%} of H1 and {within(h2, eps):6.1%} of H2 points"
                )


if __name__ == "__main__":
    main()
