"""Which accelerator to run on, and which dtype suits it.

torch is imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator
from typing import Any

DEVICE_ENV = "GENARUN_DEVICE"
DTYPE_NAMES = ("float32", "float16", "bfloat16")


def pick_device(override: str | None = None) -> str:
    """The device to run on: `override`, else $GENARUN_DEVICE, else cuda, mps or cpu."""
    choice = (override or os.environ.get(DEVICE_ENV) or "auto").strip().lower()
    if choice != "auto":
        _check_available(choice)
        return choice
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _check_available(device: str) -> None:
    """A device asked for by name must exist here: say so plainly (torch's own error comes
    from deep inside the first model's load)."""
    from genarun.errors import ModelError

    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", device):  # $GENARUN_DEVICE skips --device's check
        raise ModelError(
            f"'{device}' is not a device: use cpu, cuda, cuda:N (one GPU of several) or mps"
        )
    kind = device_type(device)
    if kind not in ("cuda", "mps"):
        return
    import torch

    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index >= count:
            have = (
                f"{count} CUDA GPU{'s' if count != 1 else ''}"
                if count
                else "no CUDA GPU"
                + ("" if torch.version.cuda else " (this torch is built without CUDA)")
            )
            raise ModelError(
                f"device '{device}' is not available: this machine has {have}; use --device cpu, or leave --device out to pick one"
            )
    else:
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ModelError(
                "device 'mps' is not available here (Apple GPUs only); use --device cpu, or leave --device out to pick one"
            )


def device_type(device: str) -> str:
    """ "cuda:1" -> "cuda"."""
    return device.split(":", 1)[0]


_GPU_NAMES: dict[str, str | None] = {}


def gpu_name(device: str) -> str | None:
    """The name of the CUDA GPU `device` is ("NVIDIA H100 80GB HBM3"), for pricing its time
    (genarun.usage); None for any other device or when it cannot be told."""
    if not device.startswith("cuda"):
        return None
    if device not in _GPU_NAMES:
        name = None
        with contextlib.suppress(Exception):  # a name only prices: never fail a batch for it
            import torch

            index = int(device.split(":", 1)[1]) if ":" in device else torch.cuda.current_device()
            name = str(torch.cuda.get_device_name(index))
        _GPU_NAMES[device] = name
    return _GPU_NAMES[device]


def default_dtype_name(device: str) -> str:
    """float32 on CPU (half precision is slow and lossy there); half precision on accelerators."""
    kind = device_type(device)
    if kind == "cuda":
        import torch

        # bfloat16 keeps float32's range (no overflow to inf in large activations) where the
        # GPU supports it; older GPUs get float16.
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if kind == "mps":
        return "float16"
    return "float32"


def torch_dtype(device: str, requested: str | None = None) -> Any:
    """The torch dtype for `device`; `requested` ("float32", "float16", "bfloat16") overrides."""
    import torch

    name = requested or default_dtype_name(device)
    if name not in DTYPE_NAMES:
        from genarun.errors import ModelError

        raise ModelError(f"unknown dtype '{name}'; use one of {', '.join(DTYPE_NAMES)}")
    return getattr(torch, name)


def free_accelerator_bytes(device: str) -> int | None:
    """Free memory on a CUDA device (None where it cannot be measured, e.g. CPU)."""
    if device_type(device) != "cuda":
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    index = torch.device(device).index
    free, _total = torch.cuda.mem_get_info(
        index if index is not None else torch.cuda.current_device()
    )
    return int(free)


def module_bytes(module: Any) -> int:
    """Bytes held by a torch module's parameters and buffers."""
    params = sum(p.numel() * p.element_size() for p in module.parameters())
    buffers = sum(b.numel() * b.element_size() for b in module.buffers())
    return int(params + buffers)


def release_accelerator_memory(device: str) -> None:
    """Return cached blocks to the driver after a model is dropped."""
    import gc

    gc.collect()
    kind = device_type(device)
    if kind in ("cuda", "mps"):
        import torch

        if kind == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()
        elif kind == "mps" and hasattr(torch, "mps"):
            torch.mps.empty_cache()


_streams = threading.local()


@contextlib.contextmanager
def own_stream(device: str | None, priority: int = 0) -> Iterator[None]:
    """Run the block on this thread's own CUDA stream (elsewhere: as is).

    The executor's worker threads call different models at once; on the one default stream
    their kernels queue behind each other, so a captioner's short decoding steps wait for a
    painter's long UNet kernels. A stream per thread lets the GPU run them side by side. Results
    leave as host objects (text, PIL images, numpy), but the stream is synchronised anyway before
    the block returns, so nothing computed on it is read early.

    `priority` < 0 asks for a high-priority stream (clamped to what the GPU offers): its
    waiting thread blocks go first. Autoregressive decoders launch thousands of small kernels,
    each of which otherwise waits behind a whole wave of a diffusion model's large ones; with
    priority they slip into the gaps and the painter loses little (models.base.LoadedModel.
    stream_priority says which models ask).
    """
    if not device or device_type(device) != "cuda":
        yield
        return
    import torch

    index = torch.device(device).index
    key = torch.cuda.current_device() if index is None else index
    streams: dict[tuple[int, int], Any] = getattr(_streams, "by_device", None) or {}
    _streams.by_device = streams
    stream = streams.get((key, priority))
    if stream is None:
        stream = streams[(key, priority)] = _new_stream(torch, key, priority)
    stream.wait_stream(torch.cuda.default_stream(key))  # weights copied on the default stream
    try:
        with torch.cuda.stream(stream):
            yield
    finally:
        # Also after an error: kernels still queued must not read weights that an unload
        # (on another thread) hands back to the allocator.
        stream.synchronize()


def _new_stream(torch: Any, index: int, priority: int) -> Any:
    # Lower numbers are higher priorities; torch maps a number outside the device's range
    # (e.g. -5 .. 0) to the nearest one it has.
    return torch.cuda.Stream(device=index, priority=priority)
