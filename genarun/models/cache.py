"""The process-wide cache of loaded models: each model loads once per process.

Loading is serialised per model key (two threads asking for one model wait for one load).
Different models load in parallel only when their provider does not use torch: transformers,
diffusers and accelerate build models under process-wide patches (meta-device initialisation),
so two torch loads at once hand each other meta tensors ("Cannot copy out of meta tensor").
When a configured budget is exceeded, or a CUDA device runs short of free memory, the least
recently used models are unloaded.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from genarun.models.base import LoadedModel, ModelSpec, Provider
from genarun.models.device import free_accelerator_bytes, pick_device, release_accelerator_memory

BUDGET_ENV = "GENARUN_MODEL_BUDGET_GB"
RESERVE_ENV = "GENARUN_GPU_RESERVE_GB"
DEFAULT_GPU_RESERVE_BYTES = 2 * 1024**3  # headroom for activations of the model being run
# One torch model load at a time, process-wide (see the module docstring): the patches are
# global, so a lock per cache would not do.
_TORCH_LOAD_LOCK = threading.Lock()


@functools.cache
def _quiet_model_libraries() -> None:
    """Silence the libraries' download and loading progress bars: genarun shows its own."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import importlib

    for name in ("transformers", "diffusers"):
        try:
            logging = importlib.import_module(f"{name}.utils.logging")
        except ImportError:
            continue
        logging.disable_progress_bar()
        logging.set_verbosity_error()


def _gb_env(name: str) -> int | None:
    value = os.environ.get(name)
    return int(float(value) * 1024**3) if value else None


@dataclass
class CachedModel:
    model: LoadedModel
    device: str


class ModelCache:
    """Loaded models by (instance key: the spec and its key hosts, device), evicted least-recently-used."""

    def __init__(
        self,
        *,
        budget_bytes: int | None = None,
        gpu_reserve_bytes: int | None = None,
        providers: Callable[[], dict[str, Provider]] | None = None,
    ) -> None:
        self.budget_bytes = budget_bytes if budget_bytes is not None else _gb_env(BUDGET_ENV)
        reserve = gpu_reserve_bytes if gpu_reserve_bytes is not None else _gb_env(RESERVE_ENV)
        self.gpu_reserve_bytes = DEFAULT_GPU_RESERVE_BYTES if reserve is None else reserve
        self._providers = providers or _registry_providers
        self._models: OrderedDict[str, CachedModel] = OrderedDict()
        self._lock = threading.Lock()  # guards _models and _key_locks
        self._key_locks: dict[str, threading.Lock] = {}

    def get(self, spec: ModelSpec, device: str | None = None) -> LoadedModel:
        """The loaded model for `spec` on `device` (auto-picked when None), loading it once."""
        provider = self._provider(spec)
        device = self._device(provider, device)
        key = f"{spec.instance_key}@{device}"
        with self._lock:
            cached = self._models.get(key)
            if cached is not None:
                self._models.move_to_end(key)
                return cached.model
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                cached = self._models.get(key)  # another thread may have loaded it meanwhile
                if cached is not None:
                    self._models.move_to_end(key)
                    return cached.model
            self._make_room(device)
            if provider.uses_torch:
                # Importing under the lock too: diffusers' and transformers' lazy modules are
                # not thread-safe, and a first import racing a load on another thread failed
                # with "cannot import name 'DiffusionPipeline' from 'diffusers'".
                with _TORCH_LOAD_LOCK:
                    _quiet_model_libraries()
                    model = provider.load(spec, device)
            else:
                model = provider.load(spec, device)
            with self._lock:
                self._models[key] = CachedModel(model, device)
            self._enforce_budget(keep=key)
            return model

    def is_loaded(self, spec: ModelSpec, device: str | None = None) -> bool:
        """Whether `get` would return at once (the model is in memory on that device)."""
        key = f"{spec.instance_key}@{self._device(self._provider(spec), device)}"
        with self._lock:
            return key in self._models

    def loaded(self) -> list[str]:
        """Keys of the loaded models, least recently used first."""
        with self._lock:
            return list(self._models)

    def unload(self, spec: ModelSpec, device: str | None = None) -> bool:
        """Unload one model; False if it was not loaded."""
        key = f"{spec.instance_key}@{self._device(self._provider(spec), device)}"
        with self._lock:
            cached = self._models.pop(key, None)
        if cached is None:
            return False
        self._drop(cached)
        return True

    def clear(self) -> None:
        """Unload every model."""
        with self._lock:
            dropped = list(self._models.values())
            self._models.clear()
        for cached in dropped:
            self._drop(cached)

    def memory_bytes(self) -> int:
        with self._lock:
            return sum(c.model.memory_bytes() for c in self._models.values())

    @staticmethod
    def _device(provider: Provider, device: str | None) -> str:
        # Picking a device imports torch: not worth it for a provider that never uses it.
        return pick_device(device) if provider.uses_torch or device else "cpu"

    def _provider(self, spec: ModelSpec) -> Provider:
        providers = self._providers()
        if spec.provider not in providers:
            from genarun.errors import ModelError

            raise ModelError(
                f"model '{spec.label()}': unknown provider '{spec.provider}';"
                f" known: {', '.join(sorted(providers))}"
            )
        return providers[spec.provider]

    def _make_room(self, device: str) -> None:
        """Before a load on a CUDA device, unload LRU models while free memory is short."""
        while True:
            free = free_accelerator_bytes(device)
            if free is None or free >= self.gpu_reserve_bytes:
                return
            if not self._evict_one(device=device):
                return

    def _enforce_budget(self, keep: str) -> None:
        if self.budget_bytes is None:
            return
        while self.memory_bytes() > self.budget_bytes:
            if not self._evict_one(exclude=keep):
                return

    def _evict_one(self, *, device: str | None = None, exclude: str | None = None) -> bool:
        with self._lock:
            for key, cached in self._models.items():  # oldest first
                if key == exclude or (device is not None and cached.device != device):
                    continue
                del self._models[key]
                break
            else:
                return False
        self._drop(cached)
        return True

    @staticmethod
    def _drop(cached: CachedModel) -> None:
        cached.model.unload()
        release_accelerator_memory(cached.device)


def _registry_providers() -> dict[str, Provider]:
    from genarun.plugins import registry

    return registry().providers


_cache: ModelCache | None = None
_cache_lock = threading.Lock()


def model_cache() -> ModelCache:
    """The process-wide model cache."""
    global _cache
    with _cache_lock:
        if _cache is None:
            _cache = ModelCache()
        return _cache
