"""The pixel digest of an image, computed where the pixels are made.

A `cycle` compares each image output with earlier ones by a sha256 of its mode, size and raw
pixels. On the scheduler thread that hashing (plus `tobytes`, a copy) took 5 ms per 512x512
image: a third of a second per batch of 64, during which no model had work. A provider that
has an image's pixels as a contiguous array (the diffusers provider, after converting on the
GPU) starts the digest at once on a small thread pool (hashlib releases the GIL, so they run in
parallel and beside the models) and attaches the future to the image; `pixel_digest` takes it
from there, or computes it as before. Both give the same hex digest.
"""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

INFO_KEY = "genarun:pixel_sha256"
_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _digest(mode: str, size: tuple[int, int], data: Any) -> str:
    h = hashlib.sha256(f"{mode}{size}".encode())
    h.update(data)
    return h.hexdigest()


def attach_digest(image: Any, pixels: Any) -> None:
    """Start hashing `pixels` (a C-contiguous uint8 array holding exactly `image.tobytes()`)
    off this thread, and attach the future to `image`."""
    global _pool
    with _lock:
        if _pool is None:
            workers = max(1, min(4, os.cpu_count() or 1))
            _pool = ThreadPoolExecutor(workers, thread_name_prefix="genarun-digest")
    image.info[INFO_KEY] = PendingDigest(_pool.submit(_digest, image.mode, image.size, pixels))


class Digest(str):
    """A finished digest. Its own type: a PNG's text chunks also land in `image.info`, and a
    planted "genarun:pixel_sha256" text must not pass for the pixels' digest."""


class PendingDigest:
    """A digest being computed. Pickled (an image sent to another process, e.g. by a Ray
    executor), it becomes the finished Digest: a future cannot travel."""

    __slots__ = ("future",)

    def __init__(self, future: Future[str]) -> None:
        self.future = future

    def result(self) -> str:
        return str(self.future.result())

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (Digest, (self.result(),))


def pixel_digest(image: Any) -> str:
    """sha256 of an image's mode, size and pixels (PNG bytes differ by metadata; pixels not)."""
    pending = image.info.get(INFO_KEY) if hasattr(image, "info") else None
    if isinstance(pending, PendingDigest):
        return pending.result()
    if isinstance(pending, Digest):
        return str(pending)
    return _digest(image.mode, image.size, image.tobytes())
