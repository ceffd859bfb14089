"""What the loaded models of the torch-based providers (transformers, open_clip,
sentence-transformers) share: one torch module held on a device, and images given as RGB.

torch itself is imported only when a model asks for its memory, so the providers stay cheap to
import.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from genarun.errors import ModelError
from genarun.models.base import LoadedModel


class TorchModuleModel(LoadedModel):
    """A loaded model whose weights are one torch module, `self.model` (None once unloaded)."""

    model: Any = None

    def require_loaded(self) -> None:
        """Raise ModelError when the model has been unloaded."""
        if self.model is None:
            raise ModelError(f"model '{self.spec.label()}' was unloaded")

    def unload(self) -> None:
        self.model = None

    def memory_bytes(self) -> int:
        from genarun.models.device import module_bytes

        return 0 if self.model is None else module_bytes(self.model)


_pool: Any = None
_pool_lock = threading.Lock()


def map_images(fn: Callable[[Any], Any], images: Sequence[Any]) -> list[Any]:
    """`[fn(im) for im in images]` on a few threads for larger batches.

    Per-image preprocessing (PIL resizing, conversion to tensors) costs a few ms an image; for
    a batch of 64 that kept a model's worker thread busy on the CPU for a fifth of a second
    while the GPU waited. Pillow and torch release the GIL in that work, so threads run it side
    by side. The results are the same, in the same order."""
    if len(images) < 8:
        return [fn(im) for im in images]
    global _pool
    with _pool_lock:
        if _pool is None:
            from concurrent.futures import ThreadPoolExecutor

            workers = max(1, min(4, (os.cpu_count() or 1)))
            _pool = ThreadPoolExecutor(workers, thread_name_prefix="genarun-preprocess")
    return list(_pool.map(fn, images))


def rgb(image: Any) -> Any:
    """Models take RGB; PNGs may be RGBA or palette images."""
    return image.convert("RGB") if getattr(image, "mode", "RGB") != "RGB" else image
