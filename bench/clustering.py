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
import time

import numpy as np
from measure import cpu_seconds, machine


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
    cpu = cpu_seconds()
    result = cluster(x, min_cluster_size=args.min_cluster_size)
    wall = time.perf_counter() - started
    found = len(result.sizes) - (1 if -1 in result.sizes else 0)
    print(f"points {args.points} x {args.dims}, {args.clusters} true clusters")
    print(f"method: {result.method.text}")
    print(f"wall {wall:.1f} s, cpu {cpu_seconds() - cpu:.1f} s")
    print(f"clusters found {found}, noise {result.sizes.get(-1, 0)}")
    print(f"adjusted Rand index vs truth: {adjusted_rand_score(truth, result.labels):.3f}")


def bench_store(args: argparse.Namespace) -> None:
    """End to end as `genarun cluster` runs it: read the vectors from SQLite, cluster, store
    100,000 labels (runs of 100 steps, every step embedded)."""
    import sqlite3
    import tempfile
    from pathlib import Path

    from genarun.experiments.clusters import cluster_runs
    from genarun.store.db import Store

    x, _ = embeddings(args.points, args.dims, args.clusters)
    steps = 100
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        store = Store(db)
        experiment = store.create_experiment(name="bench")
        run_ids = [
            store.create_run(experiment_id=experiment, name="bench", status="completed")
            for _ in range(args.points // steps)
        ]
        store.close()
        conn = sqlite3.connect(db)
        with conn:
            conn.executemany(
                "INSERT INTO trajectories (run_id, node_id, path, network, start, max_steps, "
                "embed_models, seed_random, length, status) VALUES (?, 'traj', '[]', '[]', 'x', ?, "
                "'[\"m\"]', 0, ?, 'done')",
                [(r, steps, steps) for r in run_ids],
            )
            conn.executemany(
                "INSERT INTO trajectory_steps (run_id, node_id, path, step, model, kind, value, "
                "sha256, embeddings) VALUES (?, 'traj', '[]', ?, 'painter', 'text', ?, '', '{}')",
                [
                    (r, s, f"text {i}")
                    for i, (r, s) in enumerate((r, s) for r in run_ids for s in range(steps))
                ],
            )
            conn.executemany(
                "INSERT INTO embeddings (run_id, node_id, path, item, model, dim, vector, source) "
                "VALUES (?, 'traj', '[]', ?, 'm', ?, ?, '')",
                [
                    (run_ids[i // steps], i % steps, args.dims, x[i].tobytes())
                    for i in range(len(run_ids) * steps)
                ],
            )
        conn.close()
        store = Store(db)
        runs = store.runs_of_experiment(experiment)
        started = time.perf_counter()
        cpu = cpu_seconds()
        made = cluster_runs(store, runs, min_cluster_size=args.min_cluster_size)
        wall = time.perf_counter() - started
        print(f"end to end (read {made[0].points} vectors from SQLite, cluster, store labels): "
              f"wall {wall:.1f} s, cpu {cpu_seconds() - cpu:.1f} s; "
              f"{len(made[0].sizes) - (1 if -1 in made[0].sizes else 0)} clusters")  # fmt: skip
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=768)
    parser.add_argument("--clusters", type=int, default=40)
    parser.add_argument("--min-cluster-size", type=int, default=20)
    parser.add_argument("--store", action="store_true", help="End to end through SQLite.")
    args = parser.parse_args()
    print(machine())
    if args.store:
        bench_store(args)
    else:
        bench_clustering(args)


if __name__ == "__main__":
    main()
