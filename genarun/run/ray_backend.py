"""The Ray executor (`genarun run --executor ray`): the same scheduler, with the work on Ray.

The driver (this process) keeps everything it does with the local executor: compiling,
scheduling, seeds, lockstep batching, and writing the store and the output folder (only the
driver writes them). What changes is where the work runs:

- model batches go to long-lived actors, one per (model, settings) key, each loading its model
  once and outliving the run: they stay in a process-wide pool (`run.ray_pool`) that later
  executions in this process take them from; an actor asks Ray for the GPUs (`num_gpus`, a fraction where the model's size lets
  several share one GPU) and CPUs its model needs;
- `Compute`s (CPU work: persistence diagrams) run as Ray tasks. `Call`s (I/O) stay on the
  driver's I/O pool: they only wait on the network, and what they carry (a fetch's secrets)
  never leaves the driver.

Outputs come back through Ray's object store: images as uint8 arrays (zero-copy numpy in the
object store, not pickled PIL objects), then PIL again on the driver.

An actor that dies (a killed process, a CUDA error that takes the process down) is restarted
by Ray (`max_restarts=-1`); the batch it was running is queued again, and the run's log says
so. A batch whose actor dies `MAX_ACTOR_DEATHS` times fails its executions alone.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from genarun.errors import UserError
from genarun.run.ray_pool import POOL

if TYPE_CHECKING:
    from genarun.models.base import Invocation, ModelSpec

# How often one batch may lose its actor before its executions fail (a model that crashes
# its process on one input would otherwise be restarted for ever).
MAX_ACTOR_DEATHS = 3
# How long a batch waits for Ray to restart its dead actor (and reload the model).
RESTART_WAIT = 300.0
INSTALL_HINT = "the Ray executor needs Ray: pip install 'genarun[ray]'"


class RayMissing(UserError):
    """`--executor ray` without Ray installed."""


class ActorDied(RuntimeError):
    """A model actor died while it ran a batch; Ray restarts it, and the batch is re-queued."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayMissing(INSTALL_HINT) from None
    return ray


# --- on the actors --------------------------------------------------------------------------
def _pack(value: Any) -> Any:
    """A model output in the form that crosses the object store cheaply: PIL images as
    (mode, uint8 array); everything else as it is."""
    if hasattr(value, "convert") and hasattr(value, "mode") and hasattr(value, "size"):
        import numpy as np

        return ("__genarun_image__", value.mode, np.asarray(value))
    return value


def _unpack(value: Any) -> Any:
    if isinstance(value, tuple) and len(value) == 3 and value[0] == "__genarun_image__":
        from PIL import Image

        return Image.fromarray(value[2], value[1])
    return value


class ModelWorker:
    """A model held by one Ray actor (the class is wrapped by `ray.remote` when used)."""

    def __init__(self, spec: ModelSpec, device: str | None, niceness: int = 0) -> None:
        from genarun.models.cache import model_cache

        take_niceness(niceness)
        self.spec = spec
        self.model = model_cache().get(spec, device)

    def describe(self) -> dict[str, Any]:
        """What the driver's batcher asks of a model: its own batch bound, its device, pid."""
        return {
            "max_batch": getattr(self.model, "max_batch", 0),
            "device": str(getattr(self.model, "device", None) or "cpu"),
            "pid": os.getpid(),
        }

    def run(self, task: str, batch: Sequence[Invocation]) -> list[Any]:
        from genarun.models.device import own_stream

        with own_stream(getattr(self.model, "device", None)):
            return [_pack(out) for out in self.model.run(task, list(batch))]


def _run_effect(fn: Callable[[], Any], niceness: int = 0) -> Any:
    """A `Call`'s or `Compute`'s function, in a Ray worker."""
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


# --- on the driver ---------------------------------------------------------------------------
class ActorModel:
    """The driver's handle on one model actor, shaped like a loaded model for the batcher."""

    def __init__(self, backend: RayBackend, spec: ModelSpec, actor: Any, info: dict[str, Any]):
        self.backend = backend
        self.spec = spec
        self.actor = actor
        self.max_batch = info.get("max_batch") or 0
        # The batcher runs the batch on the actor's stream: the driver itself touches no GPU.
        self.device = None
        self.actor_device = info.get("device")

    def run(self, task: str, batch: Sequence[Invocation]) -> list[Any]:
        ray = self.backend.ray
        try:
            packed = ray.get(self.actor.run.remote(task, list(batch)))
        except ray.exceptions.RayActorError as exc:
            back = self._wait_for_restart()
            if not back:  # the batch queued again gets a new actor
                self.backend.models.forget(self)
            raise ActorDied(
                f"the actor of model '{self.spec.label()}' died ({type(exc).__name__}); "
                + ("Ray restarted it" if back else f"not back after {RESTART_WAIT:.0f} s")
            ) from None
        return [_unpack(value) for value in packed]

    def _wait_for_restart(self) -> bool:
        """Block until Ray has restarted the actor (its model loaded again), so the batch
        queued again finds it; False when it is not back in time."""
        ray = self.backend.ray
        deadline = time.monotonic() + RESTART_WAIT
        while time.monotonic() < deadline:
            try:
                ray.get(self.actor.describe.remote(), timeout=max(1.0, deadline - time.monotonic()))
                return True
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                time.sleep(0.2)
        return False


class RayModels:
    """Model actors by (model, settings) key, made on first use; the batcher's model cache."""

    def __init__(self, backend: RayBackend) -> None:
        self.backend = backend
        self.actors: dict[str, ActorModel] = {}
        self.lock = threading.Lock()

    def is_loaded(self, spec: ModelSpec, device: str | None = None) -> bool:
        return spec.key in self.actors

    def get(self, spec: ModelSpec, device: str | None = None) -> ActorModel:
        with self.lock:  # one actor per model, though two batch threads may ask at once
            found = self.actors.get(spec.key)
            if found is None:
                found = self.actors[spec.key] = self.backend.start_actor(spec, device)
            return found

    def forget(self, model: ActorModel) -> None:
        """Drop an actor that died for good, here and from the pool."""
        with self.lock:
            if self.actors.get(model.spec.key) is model:
                del self.actors[model.spec.key]
        POOL.evict(self.backend.ray, model.actor)


class RayBackend:
    """A connection to Ray for one experiment's execution: its actors and tasks."""

    def __init__(self, address: str | None = None) -> None:
        self.ray = import_ray()
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.models = RayModels(self)
        self._effect_task: Any = None

    def connect(self) -> None:
        """Join the cluster at `address`, or start Ray on this machine; reuse a connection
        this process already has (tests start Ray once, and a Ray this process started stays up
        until it exits, so the next execution finds its model actors warm)."""
        if self.ray.is_initialized():
            return
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if self.address:
            kwargs["address"] = self.address
        else:  # a Ray of our own: its workers at the driver's priority (see take_niceness)
            os.environ.setdefault("RAY_worker_niceness", str(os.nice(0)))
        self.ray.init(**kwargs)

    def start_actor(self, spec: ModelSpec, device: str | None) -> ActorModel:
        """The pool's long-lived actor holding `spec`'s model (started when there is none),
        restarted by Ray if its process dies."""
        num_gpus = gpu_share(spec, self._cluster_gpus())
        num_cpus = float(spec.option_dict.get("ray_num_cpus", 0))
        threads = _driver_threads()
        on = "cuda" if num_gpus else device
        # Everything that decides what the actor holds and how it computes.
        key = (spec.key, on, num_gpus, num_cpus, threads, os.nice(0))
        pooled = POOL.take(
            self.ray, key, lambda name: self._new_actor(spec, on, name, num_gpus, num_cpus, threads)
        )
        return ActorModel(self, spec, pooled.actor, pooled.info)

    def _new_actor(
        self,
        spec: ModelSpec,
        device: str | None,
        name: str,
        num_gpus: float,
        num_cpus: float,
        threads: str,
    ) -> tuple[Any, dict[str, Any]]:
        ray = self.ray
        worker = ray.remote(ModelWorker).options(
            name=name,
            num_gpus=num_gpus,
            # No CPU reserved by default: a model's work is on its GPU, or shares the CPUs as
            # the local executor's model threads do (reserving one each, a 2-CPU Ray could
            # not hold a tree's 4 models at once, and the run would wait for ever).
            num_cpus=num_cpus,
            max_restarts=-1,
            max_concurrency=1,
            # Ray gives a worker one BLAS/torch thread unless told: a model computing with
            # another thread count sums in another order, and its floats (an image's bytes)
            # differ from the local executor's. Give it this process's count.
            runtime_env={"env_vars": {"OMP_NUM_THREADS": threads}},
        )
        actor = worker.remote(spec, device, os.nice(0))
        return actor, ray.get(actor.describe.remote())

    def _cluster_gpus(self) -> float:
        return float(self.ray.cluster_resources().get("GPU", 0))

    def run_compute(self, fn: Callable[[], Any]) -> Any:
        """A `Compute` as a Ray task (one CPU); the calling pool thread waits for it."""
        if self._effect_task is None:
            self._effect_task = self.ray.remote(num_cpus=1)(_run_effect)
        return self.ray.get(self._effect_task.remote(fn, os.nice(0)))

    def close(self) -> None:
        """The end of this execution: its actors stay in the pool for the next one (Ray ends
        them, and a Ray this process started, when the process exits)."""
        self.models.actors.clear()


def _driver_threads() -> str:
    """The intra-op thread count torch uses in this process (without importing it here)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        return str(torch.get_num_threads())
    return os.environ.get("OMP_NUM_THREADS") or str(len(os.sched_getaffinity(0)))


def gpu_share(spec: ModelSpec, cluster_gpus: float) -> float:
    """The GPUs an actor of `spec` asks for: none for a model that uses no torch or on a
    cluster without GPUs; else the `ray_num_gpus` option, or a share of one GPU from the
    model's catalog size (weights x 4 for activations, at least a tenth), or one GPU."""
    if cluster_gpus <= 0:
        return 0.0
    from genarun.plugins import registry

    provider = registry().providers.get(spec.provider)
    if provider is not None and not provider.uses_torch:
        return 0.0
    option = spec.option_dict.get("ray_num_gpus")
    if option is not None:
        return float(option)
    entry = registry().catalog.get(spec.id)
    size = _bytes(entry.size) if entry is not None else None
    if size is None:
        return 1.0
    return min(1.0, max(0.1, round(size * 4 / (80 * 1024**3), 2)))


def _bytes(text: str) -> int | None:
    units = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
    parts = text.split()
    if len(parts) != 2 or parts[1] not in units:
        return None
    try:
        return int(float(parts[0]) * units[parts[1]])
    except ValueError:
        return None
