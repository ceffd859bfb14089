"""Mosaics of trajectories' images: a video (a grid of runs stepping in time, MP4 through
imageio-ffmpeg's bundled ffmpeg) and an image (one row per run, one column per image step).

Images are decoded on a thread pool (PIL releases the GIL while decoding and resizing), each
straight to its tile size (JPEG `draft`, then a reduce for PNG), and frames are streamed to
ffmpeg one at a time: memory holds the tiles, not the full images.
"""

from __future__ import annotations

import io
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genarun.errors import UserError
from genarun.store import trajectories as tstore
from genarun.store.confined import UnsafePath, read_bytes

if TYPE_CHECKING:
    import numpy as np

    from genarun.store.db import Store


@dataclass
class Strip:
    """One trajectory's images in step order."""

    label: str
    folder: Path
    paths: list[str]


def strips(store: Store, runs: list[dict[str, Any]], every: int = 1) -> list[Strip]:
    out = []
    for run in runs:
        folder = Path(run.get("out_dir") or ".")
        by_key: dict[tuple[str, str], list[str]] = {}
        for s in tstore.stored_steps(store, run["id"]):
            if s["kind"] == "image":
                by_key.setdefault((s["node_id"], s["path"]), []).append(s["value"])
        for (node_id, path), paths in sorted(by_key.items()):
            out.append(Strip(f"{run['id'][:8]} {node_id}{path}", folder, paths[::every]))
    if not out:
        raise UserError(
            "no trajectory images in these runs (a cycle with an image model makes them); "
            "nothing was written"
        )
    return out


def _tile(folder: Path, relative: str, size: int) -> np.ndarray:
    import numpy as np
    from PIL import Image

    try:
        data = read_bytes(folder, relative)
    except (OSError, UnsafePath):
        return np.zeros((size, size, 3), np.uint8)  # a missing image is a black tile
    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", (size, size))
        image = img.convert("RGB")
        if image.width >= 2 * size:
            image = image.reduce(image.width // size)
        return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR))


def _load_tiles(items: list[tuple[Path, str]], size: int, workers: int) -> list[np.ndarray]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda it: _tile(it[0], it[1], size), items))


def grid_shape(n: int, columns: int | None = None) -> tuple[int, int]:
    cols = columns or max(1, math.ceil(math.sqrt(n)))
    return math.ceil(n / cols), cols


def write_video(
    store: Store,
    runs: list[dict[str, Any]],
    out: Path,
    *,
    fps: float = 10.0,
    tile: int = 128,
    columns: int | None = None,
    every: int = 1,
    workers: int | None = None,
) -> tuple[int, int, int, int]:
    """An MP4 whose frame t shows each trajectory's t-th image in a grid (a trajectory that
    ended holds its last image); returns (frames, trajectories, width, height)."""
    import imageio_ffmpeg
    import numpy as np

    if tile % 16:
        raise UserError(
            f"--tile {tile}: give a multiple of 16 (video codecs work in 16-pixel blocks)"
        )
    found = strips(store, runs, every)
    rows, cols = grid_shape(len(found), columns)
    width, height = cols * tile, rows * tile
    frames = max(len(s.paths) for s in found)
    workers = workers or min(8, (os.cpu_count() or 2) * 2)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(
        str(out),
        (width, height),
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        macro_block_size=16,
        output_params=["-crf", "20", "-preset", "veryfast"],
    )
    writer.send(None)  # start ffmpeg
    try:
        # Frames are loaded a chunk at a time: a chunk's tiles decode in parallel.
        chunk = max(1, 256 // len(found))
        last: dict[int, np.ndarray] = {}
        for start in range(0, frames, chunk):
            wanted = [
                (i, t)
                for t in range(start, min(frames, start + chunk))
                for i, s in enumerate(found)
                if t < len(s.paths)
            ]
            tiles = _load_tiles(
                [(found[i].folder, found[i].paths[t]) for i, t in wanted], tile, workers
            )
            by_frame: dict[int, dict[int, np.ndarray]] = {}
            for (i, t), array in zip(wanted, tiles, strict=True):
                by_frame.setdefault(t, {})[i] = array
            for t in range(start, min(frames, start + chunk)):
                frame = np.zeros((height, width, 3), np.uint8)
                for i in range(len(found)):
                    held = by_frame.get(t, {}).get(i, last.get(i))
                    if held is None:
                        continue
                    last[i] = held
                    r, c = divmod(i, cols)
                    frame[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = held
                writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()
    return frames, len(found), width, height


def write_mosaic_image(
    store: Store,
    runs: list[dict[str, Any]],
    out: Path,
    *,
    tile: int = 128,
    every: int = 1,
    workers: int | None = None,
) -> tuple[int, int]:
    """A PNG with one row per trajectory and one column per (every-th) image step; returns
    (rows, columns)."""
    import numpy as np
    from PIL import Image

    found = strips(store, runs, every)
    columns = max(len(s.paths) for s in found)
    items = [(i, t) for i, s in enumerate(found) for t in range(len(s.paths))]
    tiles = _load_tiles(
        [(found[i].folder, found[i].paths[t]) for i, t in items],
        tile,
        workers or min(8, (os.cpu_count() or 2) * 2),
    )
    canvas = np.full((len(found) * tile, columns * tile, 3), 255, np.uint8)
    for (i, t), array in zip(items, tiles, strict=True):
        canvas[i * tile : (i + 1) * tile, t * tile : (t + 1) * tile] = array
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(out)
    return len(found), columns
