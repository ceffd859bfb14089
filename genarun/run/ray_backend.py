"""The Ray executor (`genarun run --executor ray`): the same scheduler, with the work on Ray.

The driver (this process) keeps everything it does with the local executor: compiling,
scheduling, seeds, lockstep batching, and writing the store and the output folder (only the
driver writes them). What changes is where the work runs:

- model batches go to long-lived actors (`run.ray_actor`): an actor of its own for each model
  placed on a GPU (`num_gpus`, a fraction where the model's size lets several share one GPU)
  or given CPUs (`ray_num_cpus`), one shared actor for the other models (small CPU models, API
  models). With `ray_actors: per-gpu`, one actor per GPU holds all the models placed on it
  (`run.ray_sharing`). They load each model once and outlive the run: they stay in a
  process-wide pool (`run.ray_pool`) that later executions in this process take them from.
  The actors of all the runs' models start at once when the execution starts (`prestart`),
  not one after another as each model's first batch comes;
- `Compute`s (CPU work: persistence diagrams) run as Ray tasks. `Call`s (I/O) stay on the
  driver's I/O pool: they only wait on the network, and what they carry (a fetch's secrets)
  never leaves the driver.

Outputs come back through Ray's object store: images as uint8 arrays (zero-copy numpy in the
object store, not pickled PIL objects), then PIL again on the driver.

The driver's handles on those actors' models, and what happens when an actor dies or a model
cannot load, are in `run.ray_models`; this module connects to Ray, places the actors (taking
them from the pool, or starting them) and runs CPU work as Ray tasks.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from genarun.errors import UserError
from genarun.run.ray_actor import ModelHost, actor_env, run_effect
from genarun.run.ray_models import (
    MAX_ACTOR_DEATHS,
    ActorDied,
    ModelLoadError,
    Placement,
    RayModels,
    ray_result,
)
from genarun.run.ray_placement import Request, driver_threads, gpu_share
from genarun.run.ray_pool import POOL, PooledActor
from genarun.run.ray_sharing import PER_GPU, AloneGate, actors_placement

if TYPE_CHECKING:
    from genarun.models.base import ModelSpec

# What the batcher and the executor read from this module (genarun.run.batching looks the
# module up by name, only when Ray is in use): they live in `run.ray_models`.
__all__ = ["MAX_ACTOR_DEATHS", "ActorDied", "ModelLoadError", "RayBackend", "import_ray"]

# Threads of the shared actor: at most one batch per model at once, so this bounds nothing in
# practice (a tree with more models than this queues their batches).
SHARED_THREADS = 32
INSTALL_HINT = "the Ray executor needs Ray: pip install 'genarun[ray]'"


class RayMissing(UserError):
    """`--executor ray` without Ray installed."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayMissing(INSTALL_HINT) from None
    return ray


class RayBackend:
    """A connection to Ray for one experiment's execution: its actors and tasks."""

    def __init__(self, address: str | None = None, actors: str | None = None) -> None:
        self.ray = import_ray()
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.placement = actors_placement(actors)  # per-model or per-gpu (`ray_sharing`)
        self.models = RayModels(self)
        # The pooled actors this execution uses (not idle while it runs), by name.
        self.using: dict[str, PooledActor] = {}
        self.using_models: dict[tuple[str, str], PooledActor] = {}  # (actor name, model key)
        self.gates: dict[tuple[Any, ...], AloneGate] = {}
        self._lock = threading.Lock()
        self._effect_task: Any = None
        self._gpus: float | None = None
        # Models whose shared actor died under them: they get actors of their own.
        self.isolated: set[str] = set()
        self.cpus_of: dict[str, float] = {}  # each model's `ray_num_cpus`, by model key
        self.started_ray = False  # this driver started Ray itself (no autoscaler)

    def connect(self) -> None:
        """Join the cluster at `address`, or start Ray on this machine; reuse a connection
        this process already has (tests start Ray once, and a Ray this process started stays up
        until it exits, so the next execution finds its model actors warm)."""
        if self.ray.is_initialized():
            return
        # Actors' own output (a model's warnings, a load that crashes its process) stays in Ray's
        # worker logs unless asked for: it would interleave with the CLI's progress lines.
        show = os.environ.get("GENARUN_RAY_LOG_TO_DRIVER", "") not in ("", "0")
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": show}
        if self.address:
            kwargs["address"] = self.address
        else:  # a Ray of our own: its workers at the driver's priority (see take_niceness)
            os.environ.setdefault("RAY_worker_niceness", str(os.nice(0)))
        self.ray.init(**kwargs)
        self.started_ray = not self.address

    def prestart(self, specs: Sequence[ModelSpec], device: str | None) -> None:
        """Start the actors of every model of the runs at once, their models loading in
        parallel while the driver goes on: the first batch of each then finds its model
        loaded (or loading) instead of starting its actor then, one after another."""
        if self.placement == PER_GPU:
            # Largest GPU share first, each to the first GPU it fits (first fit decreasing),
            # all before any actor starts, so that each GPU's actor asks for its models' CPUs.
            shares = {spec.key: gpu_share(spec, self._cluster_gpus(), device) for spec in specs}
            specs = sorted(specs, key=lambda spec: -shares[spec.key])
            for spec in specs:
                self.cpus_of[spec.key] = float(spec.executor_options.get("ray_num_cpus", 0))
            for spec in specs:
                if 0 < shares[spec.key] <= 1:
                    POOL.gpu_slot(self.ray, spec.key, shares[spec.key], self._gpu_rest(), _unload)
        for spec in specs:
            self.models.start(spec, device)

    def start_actor(self, spec: ModelSpec, device: str | None, describe: bool = True) -> Placement:
        """The pool's long-lived actor for `spec`'s model (started when there is none), with a
        reference to its `describe(spec)` (unless not `describe`), which is ready once the
        model is loaded there.

        A model on a GPU, or given CPUs of its own (`ray_num_cpus`), or whose shared actor
        died under it, gets an actor of its own, restarted by Ray if its process dies; every
        other model goes to the one shared actor for this device and thread count (see
        `ray_actor`). With `ray_actors: per-gpu`, a model on at most one GPU goes to that
        GPU's actor instead (`ray_sharing`)."""
        num_gpus = gpu_share(spec, self._cluster_gpus(), device)
        num_cpus = float(spec.executor_options.get("ray_num_cpus", 0))
        self.cpus_of[spec.key] = num_cpus
        threads = driver_threads()
        on = "cuda" if num_gpus else device
        if self.placement == PER_GPU and 0 < num_gpus <= 1:
            key = POOL.gpu_slot(self.ray, spec.key, num_gpus, self._gpu_rest(), _unload)
            cpus = sum(self.cpus_of.get(model, 0.0) for model in POOL.members(key))
            pooled = POOL.take(
                self.ray,
                key,
                lambda name: self._new_actor(False, on, name, 1.0, cpus, threads),
                asks=(1.0, cpus),
            )
            return self._use(pooled, spec, describe, False, Request(*pooled.asks), gpu=True)
        own = bool(num_gpus or num_cpus) or spec.key in self.isolated
        # Everything that decides what the actor holds and how it computes.
        key = (spec.key if own else "shared", on, num_gpus, num_cpus, threads, os.nice(0))
        pooled = POOL.take(
            self.ray,
            key,
            lambda name: self._new_actor(own, on, name, num_gpus, num_cpus, threads),
            asks=(num_gpus, num_cpus),
        )
        return self._use(pooled, spec, describe, not own, Request(num_gpus, num_cpus))

    def _use(
        self,
        pooled: PooledActor,
        spec: ModelSpec,
        describe: bool,
        shared: bool,
        request: Request,
        gpu: bool = False,
    ) -> Placement:
        """`pooled` as `spec`'s actor in this execution (not idle until `close`)."""
        with self._lock:
            if pooled.name not in self.using:
                POOL.use(pooled)
                self.using[pooled.name] = pooled
            if (pooled.name, spec.key) not in self.using_models:
                POOL.use(pooled, spec.key)
                self.using_models[(pooled.name, spec.key)] = pooled
        info_ref = pooled.actor.describe.remote(spec) if describe else None
        return Placement(pooled, info_ref, shared, request, gpu)

    def _gpu_rest(self) -> tuple[Any, ...]:
        """The key of a GPU's actor past its index: what decides how its models compute."""
        return ("cuda", driver_threads(), os.nice(0))

    def gate(self, key: tuple[Any, ...]) -> AloneGate:
        """The gate of the shared GPU actor with pool key `key` (see `ray_sharing`)."""
        with self._lock:
            return self.gates.setdefault(key, AloneGate())

    def _new_actor(
        self,
        own: bool,
        device: str | None,
        name: str,
        num_gpus: float,
        num_cpus: float,
        threads: str,
    ) -> Any:
        host = self.ray.remote(ModelHost).options(
            name=name,
            num_gpus=num_gpus,
            # No CPU reserved by default: a model's work is on its GPU, or shares the CPUs as
            # the local executor's model threads do (reserving one each, a 2-CPU Ray could
            # not hold a tree's 4 models at once, and the run would wait for ever).
            num_cpus=num_cpus,
            max_restarts=-1,
            # An actor of one model runs one batch at a time; a shared one (CPU models, or a
            # GPU's models) runs each of its models' batches on a thread (the batcher sends one
            # batch per model at a time).
            max_concurrency=1 if own else SHARED_THREADS,
            runtime_env={"env_vars": actor_env(threads)},
        )
        return host.remote(device, os.nice(0))

    def _cluster_gpus(self) -> float:
        if self._gpus is None:
            self._gpus = float(self.ray.cluster_resources().get("GPU", 0))
        return self._gpus

    def run_compute(self, fn: Callable[[], Any]) -> Any:
        """A `Compute` as a Ray task (one CPU); the calling pool thread waits for it."""
        if self._effect_task is None:
            # Ray's own environment (one thread), so the idle workers Ray starts with the
            # cluster take it: a task with a runtime_env of its own waits for a new worker
            # process (seconds, cold).
            self._effect_task = self.ray.remote(num_cpus=1)(run_effect)
        return ray_result(self.ray, self._effect_task.remote(fn, os.nice(0)))

    def close(self) -> None:
        """The end of this execution: its actors stay in the pool for the next one (Ray ends
        them, and a Ray this process started, when the process exits)."""
        self.models.actors.clear()
        with self._lock:
            for pooled in self.using.values():
                POOL.done(pooled)
            for (_, model), pooled in self.using_models.items():
                POOL.done(pooled, model)
            self.using.clear()
            self.using_models.clear()


def _unload(pooled: PooledActor, models: list[str]) -> None:
    """Unload `models` (keys) in a GPU's actor: the pool gave their place to another model."""
    if models:
        pooled.actor.unload.remote(models)
