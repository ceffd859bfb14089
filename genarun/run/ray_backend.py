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

An actor that dies (a killed process, a CUDA error that takes the process down) is restarted
by Ray (`max_restarts=-1`); the batch it was running is queued again, and the run's log says
so. A batch whose actor dies `MAX_ACTOR_DEATHS` times fails its executions alone. A model that
cannot load (its loading raises, or kills its actor's process twice) fails the executions that
use it, with the model's own error (`ModelLoadError`); the rest of the run goes on.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genarun.errors import UserError
from genarun.run.ray_actor import ModelHost, actor_env, run_effect, unpack
from genarun.run.ray_placement import (
    ActorNotPlaced,
    Request,
    driver_threads,
    gpu_share,
    infeasible,
    not_placed,
    placement_wait,
)
from genarun.run.ray_pool import POOL, PooledActor
from genarun.run.ray_sharing import PER_GPU, AloneGate, actors_placement

if TYPE_CHECKING:
    from genarun.models.base import Invocation, ModelSpec

# How often one batch may lose its actor before its executions fail (a model that crashes
# its process on one input would otherwise be restarted for ever).
MAX_ACTOR_DEATHS = 3
# How long a batch waits for Ray to restart its dead actor (and reload the model).
RESTART_WAIT = 300.0
# Threads of the shared actor: at most one batch per model at once, so this bounds nothing in
# practice (a tree with more models than this queues their batches).
SHARED_THREADS = 32
INSTALL_HINT = "the Ray executor needs Ray: pip install 'genarun[ray]'"


class RayMissing(UserError):
    """`--executor ray` without Ray installed."""


class ActorDied(RuntimeError):
    """A model actor died while it ran a batch; Ray restarts it, and the batch is re-queued."""

    hint: str | None = None  # set when the batch's executions fail for it

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} ({self.hint})" if self.hint else text


class ModelLoadError(RuntimeError):
    """A model could not be loaded in its actor: its loading raised (the message carries the
    model's own exception), or the actor's process died while loading it, twice. The
    executions that use the model fail; Ray does not restart anything for it."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayMissing(INSTALL_HINT) from None
    return ray


@dataclass
class Placement:
    """Where a model's batches go: its pooled actor and what that actor asks Ray for."""

    pooled: PooledActor
    info_ref: Any  # the actor's `describe(spec)`: ready once the model is loaded there (or None)
    shared: bool  # the shared actor of models with no GPU and no CPUs of their own
    request: Request
    gpu: bool  # a GPU's actor holding every model placed on that GPU (`ray_actors: per-gpu`)


class ActorModel:
    """The driver's handle on one model held by an actor, shaped like a loaded model for the
    batcher. Made at once (its actor starting, its model loading); `ready` waits for them."""

    def __init__(self, backend: RayBackend, spec: ModelSpec, device: str | None) -> None:
        self.backend = backend
        self.spec = spec
        self.want_device = device
        self.lock = threading.Lock()
        self.info: dict[str, Any] | None = None
        # Its load failed, or its actor could not be placed: no batch will run.
        self.failure: ModelLoadError | ActorNotPlaced | None = None
        self._place(backend.start_actor(spec, device))
        self.max_batch = 0
        # The batcher runs the batch on the actor's stream: the driver itself touches no GPU.
        self.device = None
        self.actor_device: str | None = None

    def _place(self, placement: Placement) -> None:
        self.placement = placement
        self.actor = placement.pooled.actor
        self.info_ref = placement.info_ref
        self.shared, self.request = placement.shared, placement.request
        self.placed = False  # its actor has started (placed on a node with what it asks)

    def _gate(self, alone: bool) -> contextlib.AbstractContextManager[None]:
        """On a GPU's actor: the batch side by side with the other models' or, `alone`, with
        none in flight there (see `ray_sharing`); elsewhere nothing to wait for."""
        if not self.placement.gpu:
            return contextlib.nullcontext()
        return self.backend.gate(self.placement.pooled.key).hold(alone)

    def ready(self) -> ActorModel:
        """Wait until the actor holds the model. An actor that died (found dead when this run
        took it from the pool, or its process ended while loading the model) is replaced once;
        a model whose loading raised, or whose second actor died too, raises `ModelLoadError`
        now and for every later batch of this execution (loading it again would fail again),
        so the executions that use it fail alone."""
        ray = self.backend.ray
        with self.lock:
            if self.failure is not None:
                raise self.failure
            for attempt in range(2):
                if self.info is not None:
                    break
                try:
                    self._wait_placed()
                    # No time limit once started: a big model may take minutes to load.
                    if self.info_ref is not None:
                        self.info = _get(ray, self.info_ref)
                    else:  # a GPU's new actor, after one died loading: this model loads alone
                        with self._gate(alone=True):
                            self.info = _get(ray, self.actor.describe.remote(self.spec))
                except ray.exceptions.RayActorError as exc:
                    if attempt:
                        self.failure = ModelLoadError(
                            f"model '{self.spec.label()}': its Ray actor's process died while "
                            f"loading it, twice ({type(exc).__name__}; out of memory or a crash "
                            "in the model's code: see Ray's worker logs, "
                            "/tmp/ray/session_latest/logs on the actor's machine)"
                        )
                        raise self.failure from None
                    POOL.evict(ray, self.actor)
                    # On a GPU's actor the other models' loads died too, and which one took the
                    # process down is not known: each loads alone in the new one.
                    gpu = self.placement.gpu
                    self._place(self.backend.start_actor(self.spec, self.want_device, not gpu))
                except ActorNotPlaced:
                    raise
                except Exception as exc:  # the model's own error, raised while loading
                    self.failure = ModelLoadError(
                        f"model '{self.spec.label()}' failed to load in its Ray actor: "
                        f"{type(exc).__name__}: {exc}"
                    )
                    raise self.failure from exc
            assert self.info is not None
            self.max_batch = self.info.get("max_batch") or 0
            self.actor_device = self.info.get("device")
        return self

    def _wait_placed(self) -> None:
        """Wait until Ray has started the actor, at most `placement_wait()` seconds; an actor
        Ray cannot place (more GPUs or CPUs than the cluster has, or has free) fails the
        model's nodes with `ActorNotPlaced`, saying why and what to change, instead of
        waiting for ever. A Ray that dies while creating it raises Ray's actor error."""
        if self.placed:
            return
        ray = self.backend.ray
        others = self.backend.models.requests()
        if self.backend.started_ray and infeasible(ray, self.request):
            # This driver's own Ray: no autoscaler, no node will ever join.
            self._give_up(not_placed(ray, self.spec.label(), self.request, None, others))
        if POOL.crowded(ray):
            # This process's actors ask for more than the cluster has: the idle ones (of
            # earlier executions, for other models or the other `ray_actors` placement) go,
            # or this one would wait for what they hold.
            POOL.release_idle(ray)
        wait = placement_wait()
        ready = self.actor.__ray_ready__.remote()
        done, _ = ray.wait([ready], timeout=wait)
        if not done:
            self._give_up(not_placed(ray, self.spec.label(), self.request, wait, others))
        ray.get(ready)
        self.placed = True

    def _give_up(self, error: ActorNotPlaced) -> None:
        """Fail this model's nodes with `error`, its actor ended (it would take the resources
        once they free up, and hold them for nothing)."""
        POOL.evict(self.backend.ray, self.actor)
        self.failure = error
        raise error

    def run_alone(self, task: str, batch: Sequence[Invocation]) -> list[Any]:
        """`run`, with no other model's batch in flight on a GPU's shared actor: the batcher's
        way for a batch that lost its actor before (see `ray_sharing`)."""
        return self.run(task, batch, alone=True)

    def run(self, task: str, batch: Sequence[Invocation], alone: bool = False) -> list[Any]:
        ray = self.backend.ray
        try:
            with self._gate(alone):
                packed = _get(ray, self.actor.run.remote(self.spec, task, list(batch)))
        except ray.exceptions.RayActorError as exc:
            if self.placement.gpu and not POOL.holds(self.actor):
                # Ended for good by another model of its GPU (whose load it lost): the GPU's
                # new actor takes the batch queued again.
                self.backend.models.forget(self)
                raise ActorDied(
                    f"the GPU actor holding model '{self.spec.label()}' died "
                    f"({type(exc).__name__}); the model moves to the GPU's new actor"
                ) from None
            if self.shared:
                # Which of the shared actor's models took it down is not known: each one whose
                # batch was lost moves to an actor of its own, so a model that keeps crashing
                # takes down only itself from then on (Ray restarts the shared one).
                self.backend.models.isolate(self)
                raise ActorDied(
                    f"the shared actor of model '{self.spec.label()}' died "
                    f"({type(exc).__name__}); the model moves to an actor of its own"
                ) from None
            with self._gate(alone=True):  # its model loads again alone (it may be what crashed)
                back = self._wait_for_restart()
            if not back:  # the batch queued again gets a new actor
                self.backend.models.forget(self)
            whose = "the GPU actor holding model" if self.placement.gpu else "the actor of model"
            raise ActorDied(
                f"{whose} '{self.spec.label()}' died ({type(exc).__name__}); "
                + ("Ray restarted it" if back else f"not back after {RESTART_WAIT:.0f} s")
            ) from None
        return [unpack(value) for value in packed]

    def _wait_for_restart(self) -> bool:
        """Block until Ray has restarted the actor (the model loaded again), so the batch
        queued again finds it; False when it is not back in time."""
        ray = self.backend.ray
        deadline = time.monotonic() + RESTART_WAIT
        while time.monotonic() < deadline:
            try:
                ray.get(
                    self.actor.describe.remote(self.spec),
                    timeout=max(1.0, deadline - time.monotonic()),
                )
                return True
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                time.sleep(0.2)
        return False


class RayModels:
    """Models on actors by (model, settings) key, started on first use or all at once by
    `start`; the batcher's model cache."""

    def __init__(self, backend: RayBackend) -> None:
        self.backend = backend
        self.actors: dict[str, ActorModel] = {}
        self.lock = threading.Lock()

    def is_loaded(self, spec: ModelSpec, device: str | None = None) -> bool:
        found = self.actors.get(spec.instance_key)
        return found is not None and found.info is not None

    def start(self, spec: ModelSpec, device: str | None = None) -> ActorModel:
        """The model's handle, its actor started (or taken from the pool) without waiting."""
        with self.lock:  # one handle per model, though two batch threads may ask at once
            found = self.actors.get(spec.instance_key)
            if found is None:
                found = self.actors[spec.instance_key] = ActorModel(self.backend, spec, device)
            return found

    def get(self, spec: ModelSpec, device: str | None = None) -> ActorModel:
        return self.start(spec, device).ready()

    def requests(self) -> list[tuple[str, Request]]:
        """What each actor of this execution asks Ray for, named by its models (an actor that
        several models share counts once)."""
        by_actor: dict[str, tuple[list[str], Request]] = {}
        for model in list(self.actors.values()):
            names, _ = by_actor.setdefault(model.placement.pooled.name, ([], model.request))
            names.append(model.spec.label())
        return [("', '".join(names), request) for names, request in by_actor.values()]

    def isolate(self, model: ActorModel) -> None:
        """From now on `model`'s spec gets an actor of its own (its shared actor died)."""
        with self.lock:
            self.backend.isolated.add(model.spec.key)
            if self.actors.get(model.spec.instance_key) is model:
                del self.actors[model.spec.instance_key]

    def forget(self, model: ActorModel) -> None:
        """Drop an actor that died for good, here and from the pool."""
        with self.lock:
            if self.actors.get(model.spec.instance_key) is model:
                del self.actors[model.spec.instance_key]
        POOL.evict(self.backend.ray, model.actor)


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
        return _get(self.ray, self._effect_task.remote(fn, os.nice(0)))

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


def _get(ray: Any, ref: Any) -> Any:
    """`ray.get`, raising a failed call's own exception (as the local executor would see it:
    its type and message, which retries, halving and the stored error read), not Ray's
    wrapper, whose message names only the actor method."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from None
        raise
