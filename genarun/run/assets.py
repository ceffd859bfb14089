"""Writing image assets off the scheduler thread.

Encoding a 512x512 PNG takes 10 to 30 ms of CPU; on the scheduler thread that left the GPU idle
(11 s of a 31 s trajectory benchmark). Pillow releases the GIL while it encodes, so a few
threads write in parallel with the models. A write returns a future of the file's sha256:
whoever records the image (an execution row, a trajectory step) waits on it first, so no row
ever points at a file that is not complete.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _writer() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="genarun-assets"
            )
        return _pool


def write_png(image: Any, root: Path, rel: str, text: dict[str, str]) -> Future[str]:
    """Encode `image` as a PNG with `text` chunks and write it atomically to `root/rel` (never
    through a link); the future gives the sha256 of the file's bytes."""
    return _writer().submit(_write, image, root, rel, text)


def _write(image: Any, root: Path, rel: str, text: dict[str, str]) -> str:
    from PIL.PngImagePlugin import PngInfo

    from genarun.store.confined import write_file

    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    # Into a real file: Pillow then encodes in one C call, where into a BytesIO it loops in
    # Python, taking the GIL back every 64 KiB from the threads that drive the models.
    # zlib level 1: level 6 costs about 5x the time for a few percent smaller files.
    return write_file(
        root, rel, lambda fh: image.save(fh, format="PNG", pnginfo=info, compress_level=1)
    )
