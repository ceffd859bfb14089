"""The driver's handles on models held by Ray actors (`run.ray_backend`): each shaped like a
loaded model for the batcher, waiting for its actor to be placed and its model to load, and
carrying batches there and their outputs back.

An actor that dies (a killed process, a CUDA error that takes the process down) is restarted
by Ray (`max_restarts=-1`); the batch it was running is queued again, and the run's log says
so. A batch whose actor dies `MAX_ACTOR_DEATHS` times fails its executions alone. A model that
cannot load (its loading raises, or kills its actor's process twice) fails the executions that
use it, with the model's own error (`ModelLoadError`); the rest of the run goes on.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genarun.run.ray_actor import unpack
from genarun.run.ray_placement import (
    ActorNotPlaced,
    Request,
    infeasible,
    not_placed,
    placement_wait,
)
from genarun.run.ray_pool import POOL, PooledActor

if TYPE_CHECKING:
    from genarun.models.base import Invocation, ModelSpec
    from genarun.run.ray_backend import RayBackend

# How often one batch may lose its actor before its executions fail (a model that crashes
# its process on one input would otherwise be restarted for ever).
MAX_ACTOR_DEATHS = 3
# How long a batch waits for Ray to restart its dead actor (and reload the model).
RESTART_WAIT = 300.0


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
                        self.info = ray_result(ray, self.info_ref)
                    else:  # a GPU's new actor, after one died loading: this model loads alone
                        with self._gate(alone=True):
                            self.info = ray_result(ray, self.actor.describe.remote(self.spec))
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
                packed = ray_result(ray, self.actor.run.remote(self.spec, task, list(batch)))
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


def ray_result(ray: Any, ref: Any) -> Any:
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
