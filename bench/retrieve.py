"""Benchmark: vector search over stored embeddings, and the cost of growing the index while a
run writes embeddings.

    python bench/retrieve.py [--rows 100000] [--dim 384] [--queries 200] [--growth 10000]

1. Search: `--rows` float32 vectors of `--dim` dimensions (of a low intrinsic
   dimension, like real embeddings) stored in a fresh SQLite database as one run's `embeddings` rows.
   The first search loads the cached matrix; then `--queries` exact top-10 searches (numpy over
   the normalised matrix) are timed one by one, and the same queries through the approximate
   index (usearch HNSW, the `ann` extra), whose recall@10 is measured against the exact
   results. Targets: exact under 20 ms a query after the first, approximate under 2 ms at
   recall@10 >= 0.95.
2. Growth: `genarun run` of a tree whose foreach of `--growth` items stores one 384-d vector
   per item as it is produced (`index:`), each item's `retrieve` searching the earlier items
   (progressive): the matrix grows by the rows written since the last search. The time spent
   growing it (reading the new rows, appending them) is compared with the run's wall time.
   Target: under 10 %.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genarun.retrieval import stored as stored_module
from genarun.retrieval.stored import RunSelector, stored_matrix
from genarun.store.db import Store

IDENTITY = "dummy:bench-vectors"


# Embeddings of real texts occupy a low-dimensional part of their space: rows here are a random
# 384 x 24 projection of 24-d Gaussian points, with a little noise. (Equidistant points, such
# as noisy copies of a few centres, make "the 10 nearest" a tie that no index can recall.)
INTRINSIC_DIM = 24


def clustered(rows: int, dim: int, seed: int) -> np.ndarray:
    basis = np.random.default_rng(0).standard_normal((INTRINSIC_DIM, dim)).astype(np.float32)
    rng = np.random.default_rng(seed)
    points = rng.standard_normal((rows, INTRINSIC_DIM)).astype(np.float32) @ basis
    return points + 0.05 * rng.standard_normal((rows, dim)).astype(np.float32)


def fill(store: Store, rows: int, dim: int) -> str:
    model = {
        "bench": {"model": "bench-vectors", "provider": "dummy", "revision": "", "weights": ""}
    }
    run_id = store.create_run(name="bench", status="completed", models=json.dumps(model))
    vectors = clustered(rows, dim, 0)
    batch = 5000
    for start in range(0, rows, batch):
        with store.transaction():
            store.add_embeddings(
                [
                    {
                        "run_id": run_id,
                        "node_id": "notes",
                        "path": f"[{i}]",
                        "item": 0,
                        "model": "bench",
                        "dim": dim,
                        "vector": vectors[i].astype("<f4").tobytes(),
                        "source": f"note {i}",
                    }
                    for i in range(start, min(rows, start + batch))
                ]
            )
    return run_id


def search_bench(rows: int, dim: int, queries: int, folder: Path) -> dict[str, float]:
    store = Store(folder / "search.db")
    started = time.perf_counter()
    run_id = fill(store, rows, dim)
    filled = time.perf_counter() - started
    selector = RunSelector("ids", ids=(run_id,))
    started = time.perf_counter()
    matrix = stored_matrix(store, IDENTITY, selector, None)
    first = time.perf_counter() - started
    grown = matrix.matrix
    assert grown is not None and len(grown) == rows, "every stored row is in the matrix"
    probes = clustered(queries, dim, 2)
    exact_times, exact_sets = [], []
    for query in probes:
        t = time.perf_counter()
        stored_matrix(store, IDENTITY, selector, None)  # the refresh a search does
        found = grown.top(query, 10)
        exact_times.append(time.perf_counter() - t)
        exact_sets.append({row for row, _ in found})
    t = time.perf_counter()
    index = grown.approximate_index()
    build = time.perf_counter() - t
    approx_times, hits = [], 0
    for query, exact in zip(probes, exact_sets, strict=True):
        t = time.perf_counter()
        found = grown.top(query, 10, approximate=True)
        approx_times.append(time.perf_counter() - t)
        hits += len(exact & {row for row, _ in found})
    store.close()
    return {
        "fill_s": filled,
        "first_search_s": first,
        "exact_median_ms": 1000 * statistics.median(exact_times),
        "exact_p95_ms": 1000 * sorted(exact_times)[int(0.95 * len(exact_times)) - 1],
        "approx_build_s": build if index is not None else float("nan"),
        "approx_median_ms": 1000 * statistics.median(approx_times),
        "approx_p95_ms": 1000 * sorted(approx_times)[int(0.95 * len(approx_times)) - 1],
        "recall_at_10": hits / (10 * len(probes)),
    }


GROWTH_TREE = """genarun: 1
name: growth
seed: 1
models:
  vec: {{provider: dummy, id: dummy-text-embed, options: {{dim: 384}}}}
nodes:
  - id: note
    kind: template
    foreach: range({items})
    text: "note {{{{ item }}}} about [geckos | dragons | skinks | iguanas] and [heat | food | light]"
    index: vec
    children:
{children}"""

GROWTH_CHILD = """      - id: near
        kind: retrieve
        query: "{{ note }}"
        from: note
        model: vec
        k: 5
"""


def growth_bench(items: int, folder: Path) -> dict[str, float]:
    from genarun.run.runner import RunOptions, run_tree

    out: dict[str, float] = {}
    for label, children in (("write_only", "      []\n"), ("write_and_search", GROWTH_CHILD)):
        tree = folder / f"{label}.yaml"
        tree.write_text(
            GROWTH_TREE.format(items=items, children=children).replace(
                "    children:\n      []\n", ""
            )
        )
        stored_module.forget_matrices()
        started = time.perf_counter()
        outcome = run_tree(tree, RunOptions(db=folder / f"{label}.db", out=folder / "out"))
        wall = time.perf_counter() - started
        assert outcome.status == "completed", outcome.failures
        growing = sum(m.refresh_seconds for m in stored_module._matrices.values())
        rows = sum(len(m.rows) for m in stored_module._matrices.values())
        out[f"{label}_s"] = wall
        out[f"{label}_growth_s"] = growing
        out[f"{label}_matrix_rows"] = rows
    out["growth_share"] = out["write_and_search_growth_s"] / out["write_and_search_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--growth", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results = search_bench(args.rows, args.dim, args.queries, folder)
        for key, value in results.items():
            print(f"{key:>28}: {value:.4g}")
        if args.growth:
            for key, value in growth_bench(args.growth, folder).items():
                print(f"{key:>28}: {value:.4g}")


if __name__ == "__main__":
    main()
