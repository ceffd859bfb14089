"""What runs inside Ray's processes for the Ray executor: model actors and CPU tasks.

One actor class, `ModelHost`, holds models in one process and runs their batches:
- an actor of its own for a model placed on a GPU (or given CPUs of its own with
  `ray_num_cpus`): it loads that model as soon as it starts, and runs one batch at a time;
- one shared actor for every model with no GPU and no CPUs of its own (small CPU models, API
  models, the dummy): its models load on first use and run their batches on threads at once,
  as the local executor's model threads do. On a few CPU cores, separate processes for small
  models cost one torch import each and compete for the cores; one process holds them all once.
- with `ray_actors: per-gpu`, one actor per GPU for the models placed on it, on threads the
  same way, sharing the process's CUDA context (`run.ray_sharing` says why).

Threads: torch's OpenMP threads spin between parallel regions by default. Two or more model
processes on a few cores then burn each other's CPU while spinning: on this project's 2-core
machine a tiny captioner's batch took 3-11 s in an actor instead of 0.2 s. Actors therefore
run with `OMP_WAIT_POLICY=PASSIVE` (see `actor_env`), which changes no result.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genarun.models.base import Invocation, ModelSpec

IMAGE_TAG = "__genarun_image__"


def pack(value: Any) -> Any:
    """A model output in the form that crosses the object store cheaply: PIL images as
    (tag, mode, uint8 array), which Ray stores without pickling its pixels; else as it is."""
    if hasattr(value, "convert") and hasattr(value, "mode") and hasattr(value, "size"):
        import numpy as np

        return (IMAGE_TAG, value.mode, np.asarray(value))
    return value


def unpack(value: Any) -> Any:
    if isinstance(value, tuple) and len(value) == 3 and value[0] == IMAGE_TAG:
        from PIL import Image

        return Image.fromarray(value[2], value[1])
    return value


def actor_env(threads: str) -> dict[str, str]:
    """Environment of a model actor or task process. Ray gives a worker one BLAS/torch thread
    unless told: a model computing with another thread count sums in another order, and its
    floats (an image's bytes) differ from the local executor's, so it gets the driver's count.
    Its OpenMP threads sleep when idle instead of spinning (see the module docstring), unless
    the user chose a wait policy."""
    return {
        "OMP_NUM_THREADS": threads,
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY") or "PASSIVE",
        "GENARUN_RAY_ACTOR": "1",
    }


class ModelHost:
    """Models held by one Ray actor (the class is wrapped by `ray.remote` when used).

    A model loads on its first call: the driver's `describe(spec)`, sent as soon as the actor
    starts (and again after Ray restarts it). Never in `__init__`: Ray restarts an actor whose
    process dies while it is being created for ever (`max_restarts=-1`), with nothing reaching
    the driver, so a model whose loading crashes its process would hang the run; in a call, a
    load that raises comes back to the driver as the model's own exception, and a process that
    dies fails the call. Models live in the process's model cache, which loads each once even
    when several threads ask at once."""

    def __init__(self, device: str | None, niceness: int = 0) -> None:
        take_niceness(niceness)
        self.device = device
        # When each model's load began and ended here (wall clock): shows loads overlapping.
        self.loads: dict[str, tuple[float, float]] = {}
        self.specs: dict[str, tuple[ModelSpec, str | None]] = {}  # loaded here: spec, device

    def _model(self, spec: ModelSpec) -> Any:
        from genarun.models.cache import model_cache
        from genarun.plugins import registry

        cache = model_cache()
        # A provider that uses no torch has no device to load on (given a GPU share, it holds
        # the GPU Ray gave the actor, through CUDA_VISIBLE_DEVICES, for its own use).
        provider = registry().providers.get(spec.provider)
        device = self.device if provider is None or provider.uses_torch else None
        if cache.is_loaded(spec, device):
            return cache.get(spec, device)
        began = time.time()
        model = cache.get(spec, device)
        self.loads.setdefault(spec.key, (began, time.time()))
        # By instance: two trees' clients of one model (other key hosts) both unload with it.
        self.specs[spec.instance_key] = (spec, device)
        return model

    def unload(self, keys: Sequence[str]) -> list[str]:
        """Unload the models with these keys (a GPU's actor making room for another model);
        the keys of those that were loaded."""
        from genarun.models.cache import model_cache

        done = []
        for key in keys:
            self.loads.pop(key, None)
            for instance in [k for k, (spec, _) in self.specs.items() if spec.key == key]:
                spec, device = self.specs.pop(instance)
                if model_cache().unload(spec, device) and key not in done:
                    done.append(key)
        return done

    def describe(self, spec: ModelSpec | None = None) -> dict[str, Any]:
        """The process id and when its models loaded; with `spec`, also what the driver's
        batcher asks of that model (its own batch bound, its device), loading it first if it
        is not loaded."""
        info: dict[str, Any] = {"pid": os.getpid(), "loads": dict(self.loads)}
        if spec is not None:
            model = self._model(spec)
            info["max_batch"] = getattr(model, "max_batch", 0)
            info["device"] = str(getattr(model, "device", None) or "cpu")
        return info

    def run(self, spec: ModelSpec, task: str, batch: Sequence[Invocation]) -> list[Any]:
        from genarun.models.device import own_stream

        model = self._model(spec)
        # The model's stream priority, as the local executor's batcher gives it: on a GPU's
        # actor, a captioner's small kernels go before a painter's waiting ones.
        priority = int(getattr(model, "stream_priority", 0) or 0)
        with own_stream(getattr(model, "device", None), priority):
            return [pack(out) for out in model.run(task, list(batch))]


def run_effect(fn: Callable[[], Any], niceness: int = 0) -> Any:
    """A `Compute`'s function, in a Ray worker."""
    take_niceness(niceness)
    return fn()


def take_niceness(niceness: int) -> None:
    """Run at the driver's priority. Ray starts its workers at niceness 15 (its
    `worker_niceness`), so on a busy machine a model actor gets a small share of the CPU next to
    other processes, where the local executor's threads get the driver's: on this project's
    shared 2-core machine a tiny model's batch took 10-60x longer in an actor. Lowering the
    niceness needs privilege (root or CAP_SYS_NICE); without it the worker keeps Ray's (start
    the cluster with `RAY_worker_niceness=0` to change it there)."""
    current = os.nice(0)
    if current > niceness:
        try:
            os.nice(niceness - current)
        except OSError:  # not allowed here: keep Ray's priority
            return
