"""Opt-in speed options for torch models: `compile`, `channels_last`, `attention`.

    models:
      painter: {provider: diffusers, id: sd-turbo, options: {compile: true, channels_last: true}}

- `compile: true` compiles the heavy modules (a diffusion pipeline's UNet or transformer and its
  VAE decoder; a captioner's image encoder and, for BLIP and ViT-GPT2, its text decoder's
  decoding steps through transformers' static cache (genarun.models.static_decoding); CLIP's
  towers) with `torch.compile`; `compile: reduce-overhead` also records CUDA graphs (shapes are
  static per batch size, so each new batch size compiles and records once); `compile:
  max-autotune` searches kernels (minutes of compiling). Each batch size compiles once (static
  shapes are the fastest).
- `channels_last: true` stores convolution weights (and so activations) channels-last, which
  suits tensor cores on CUDA.
- `attention: sdpa` (diffusers) uses PyTorch's scaled-dot-product attention (flash or
  memory-efficient kernels where the GPU has them); diffusers >= 0.20 already defaults to it,
  so the option states it rather than changes it.

None of these may fail a run: where one cannot work (a CPU, a torch without a compiler, an
error while compiling at the first call) the model runs as plain eager code and one line is
logged. Compiled outputs agree with eager ones within float tolerance, not bit for bit (fused
kernels round differently): bench/gpu_trajectories.py --compile measures the difference.

torch is imported inside the functions (only genarun/models may import it, and lazily).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from genarun.errors import ModelError

log = logging.getLogger("genarun.models")

TUNING_OPTIONS = frozenset({"compile", "channels_last", "attention"})
COMPILE_MODES = {"default", "reduce-overhead", "max-autotune"}
GRAPH_MODES = {"reduce-overhead", "max-autotune"}  # inductor records CUDA graphs in these
ATTENTION = {"sdpa", "default"}


def check_options(label: str, options: Mapping[str, Any]) -> None:
    """Raise ModelError for a tuning option with a value it cannot take (a user error)."""
    compile_ = options.get("compile")
    if compile_ not in (None, True, False) and compile_ not in COMPILE_MODES:
        raise ModelError(
            f"model '{label}': compile must be true, false or one of"
            f" {', '.join(sorted(COMPILE_MODES))} (got {compile_!r})"
        )
    channels = options.get("channels_last")
    if channels not in (None, True, False):
        raise ModelError(f"model '{label}': channels_last must be true or false (got {channels!r})")
    attention = options.get("attention")
    if attention is not None and attention not in ATTENTION:
        raise ModelError(
            f"model '{label}': attention must be one of {', '.join(sorted(ATTENTION))}"
            f" (got {attention!r})"
        )


def compile_mode(options: Mapping[str, Any]) -> str | None:
    """The torch.compile mode asked for, or None when compiling is off."""
    value = options.get("compile")
    if value is None or value is False:
        return None
    return "default" if value is True else str(value)


# Compiling on the CPU (inductor's C++ code, which needs a C compiler) is rarely faster than
# eager there and costs tens of seconds a shape; it is for tests and CPU dry runs of the GPU
# benches: GENARUN_COMPILE_CPU=1 (inductor) or the name of another dynamo backend (`aot_eager`:
# graph capture without code generation, seconds).
COMPILE_CPU_ENV = "GENARUN_COMPILE_CPU"


def compile_backend(device: str) -> str:
    """The torch.compile backend for `device`: inductor, or on the CPU what GENARUN_COMPILE_CPU
    names."""
    from genarun.models.device import device_type

    chosen = os.environ.get(COMPILE_CPU_ENV, "")
    if device_type(device) == "cuda" or chosen in ("", "1", "true"):
        return "inductor"
    return chosen


def compile_unavailable(device: str) -> str | None:
    """Why torch.compile cannot be used for `device`, or None when it can."""
    import torch

    from genarun.models.device import device_type

    kind = device_type(device)
    on_cpu = kind == "cpu" and os.environ.get(COMPILE_CPU_ENV, "") not in ("", "0", "false")
    if kind != "cuda" and not on_cpu:
        return f"compiling is for CUDA GPUs; on '{device}' the model runs uncompiled"
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    if on_cpu:
        return None  # a missing C compiler shows at the first call: the guards fall back then
    try:
        import triton  # noqa: F401  (inductor's GPU code generator)
    except ImportError:
        return "triton is not installed, which torch.compile needs for GPU code"
    return None


def prepare_graph_thread() -> None:
    """Give the calling thread CUDA graph trees' per-thread state, as newer torch does itself.

    In torch 2.11 (the GPU machine's) only the thread that imported
    torch._inductor.cudagraph_trees had it, so a `reduce-overhead` model first called from any
    later model thread (a second executor in one process, a model host started afresh) failed
    with a bare AssertionError and ran uncompiled. Each thread gets its own tree manager, which
    is what the importing thread and newer torch give it.
    """
    import torch
    from torch._inductor import cudagraph_trees

    local = getattr(cudagraph_trees, "local", None)
    if local is None or hasattr(local, "tree_manager_containers"):
        return
    if torch._C._is_key_in_tls("tree_manager_containers"):
        return  # handed down by autograd to its own threads
    local.tree_manager_containers = {}
    local.tree_manager_locks = defaultdict(threading.Lock)
    torch._C._stash_obj_in_tls("tree_manager_containers", local.tree_manager_containers)
    torch._C._stash_obj_in_tls("tree_manager_locks", local.tree_manager_locks)


def log_compile_failure(name: str, error: BaseException) -> str:
    """Log one line for a compile that failed at its first call (the traceback at debug
    level); returns the backend's own error, not the wrapper dynamo puts around it."""
    inner = getattr(error, "inner_exception", None) or error
    lines = [line for line in str(inner).splitlines() if line.strip()]
    failed = f"{type(inner).__name__}: {lines[0][:200] if lines else ''}"
    log.warning("model '%s': compiling failed, running uncompiled (%s)", name, failed)
    log.debug("model '%s': the compile error", name, exc_info=error)
    return failed


def to_channels_last(module: Any) -> None:
    """Convolution-heavy modules run faster on tensor cores with channels-last memory."""
    import torch

    module.to(memory_format=torch.channels_last)


def compile_modules(
    label: str, modules: Mapping[str, Any], mode: str, device: str
) -> list[CompiledForward]:
    """Compile each module's forward in place, guarded: an error while compiling makes it fall
    back to eager for good, with one logged line. Returns the guards (for tests and benches)."""
    reason = compile_unavailable(device)
    if reason is not None:
        log.warning("model '%s': compile ignored: %s", label, reason)
        return []
    guards = []
    backend = compile_backend(device)
    for name, module in modules.items():
        if module is None:
            continue
        guards.append(CompiledForward(f"{label} ({name})", module, mode, backend))
    return guards


class CompiledForward:
    """Replaces `module.forward` with a compiled version that falls back to the eager one.

    torch.compile works lazily: a graph it cannot capture or a backend that fails shows only at
    the first call, deep inside a batch. That first failure switches the module back to eager
    code and logs one line; the batch is then run eagerly, so the run never sees the error. A
    genuine error of the inputs fails the eager run again and is reported as usual.
    """

    def __init__(self, name: str, module: Any, mode: str, backend: Any = "inductor") -> None:
        import torch

        self.name = name
        self.mode = mode
        self.eager: Callable[..., Any] = module.forward
        kwargs: dict[str, Any] = {"dynamic": False, "backend": backend}
        if mode != "default" and backend == "inductor":  # modes are inductor's
            kwargs["mode"] = mode
        self.compiled = torch.compile(self.eager, **kwargs)
        self.__wrapped__ = self.eager  # inspect.signature (pipelines read it) sees forward's
        self.graphs = backend == "inductor" and mode in GRAPH_MODES
        self.failed: str | None = None
        self._lock = threading.Lock()
        module.forward = self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.failed is None:
            try:
                if self.graphs:
                    prepare_graph_thread()
                return self.compiled(*args, **kwargs)
            except Exception as exc:  # compile-time failures surface here, at the first call
                with self._lock:
                    if self.failed is None:
                        self.failed = log_compile_failure(self.name, exc)
        return self.eager(*args, **kwargs)
