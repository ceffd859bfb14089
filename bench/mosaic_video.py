"""Benchmark: `genarun export video` of 64 runs x 100 steps (issue 15: under 60 s).

Usage: python bench/mosaic_video.py [--runs 64] [--steps 100] [--size 512] [--tile 128]

Builds a store of `--runs` runs, each a trajectory whose every step is a `--size` square PNG
(the worst case: a text-to-image/caption network has half as many), then times
genarun.experiments.mosaic.write_video over all of them and checks the MP4's frame count.
Images are smooth gradients with noise (they compress and decode like generated images, not
like flat colour); 100 distinct images are written once per step index and copied to every run,
so each of the runs x steps files is decoded on its own.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from measure import cpu_seconds, machine


def build(root: Path, runs: int, steps: int, size: int) -> Path:
    import io

    import numpy as np
    from PIL import Image

    from genarun.store import trajectories as tstore
    from genarun.store.db import Store

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    images = []
    for s in range(steps):
        base = np.stack([x * (s % 7) / 7, y, (x + y) / 2], axis=-1) * 255
        noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noisy).save(buffer, format="PNG")
        images.append(buffer.getvalue())
    store = Store(root / "bench.db")
    experiment = store.create_experiment(name="bench", out_dir=str(root))
    for r in range(runs):
        folder = root / f"run{r:02d}"
        (folder / "assets").mkdir(parents=True)
        run_id = store.create_run(
            experiment_id=experiment, name="bench", out_dir=str(folder), status="completed"
        )
        tstore.begin_trajectory(
            store,
            {"run_id": run_id, "node_id": "traj", "path": "[]", "network": '["painter"]', "start": "x",
             "max_steps": steps, "embed_models": "[]", "status": "done", "length": steps},
        )  # fmt: skip
        with store.transaction():
            for s in range(steps):
                name = f"assets/traj-{s}.png"
                (folder / name).write_bytes(images[s])
                tstore.add_step(
                    store,
                    {"run_id": run_id, "node_id": "traj", "path": "[]", "step": s, "model": "painter",
                     "kind": "image", "value": name, "sha256": "", "seed": 0, "embeddings": "{}"},
                )  # fmt: skip
    store.close()
    return root / "bench.db"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--tile", type=int, default=128)
    args = parser.parse_args()
    import imageio_ffmpeg

    from genarun.experiments.mosaic import write_video
    from genarun.store.db import Store

    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        db = build(root, args.runs, args.steps, args.size)
        print(
            f"built {args.runs} runs x {args.steps} steps of {args.size}px PNGs in {time.perf_counter() - started:.1f} s"
        )
        store = Store(db)
        runs = store.runs_of_experiment(
            store.conn.exec_driver_sql("SELECT id FROM experiments").scalar()
        )
        started = time.perf_counter()
        cpu = cpu_seconds()
        frames, count, width, height = write_video(store, runs, root / "mosaic.mp4", tile=args.tile)
        wall = time.perf_counter() - started
        print(f"video: {frames} frames of {count} trajectories, {width}x{height}: wall {wall:.1f} s, "
              f"cpu {cpu_seconds() - cpu:.1f} s (this process and ffmpeg)")  # fmt: skip
        reader = imageio_ffmpeg.read_frames(str(root / "mosaic.mp4"))
        meta = next(reader)
        counted = sum(1 for _ in reader)
        print(
            f"check: {counted} frames of {meta['size']} read back; {(root / 'mosaic.mp4').stat().st_size / 1e6:.1f} MB"
        )
        store.close()


if __name__ == "__main__":
    main()
