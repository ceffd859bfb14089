"""Model actors that outlive a run: one process-wide pool, shared by every execution.

Starting a model actor costs a new Python process that imports torch and builds the model
(seconds each, cold); the work of a small run is well under a second. So actors are kept in
this pool, keyed by everything that decides what the actor holds (the model and its settings,
the device, its GPU and CPU share, its thread count), and every later execution in this driver
process (the runs of an experiment, a rerun, the next `run_tree`) takes the same actor.

Lifetime: the actors are not detached, so Ray ends them with their owner, this driver's
connection (`ray.shutdown()`, or the process exiting). The pool notices a new connection (its
job id changes) and forgets the handles of the old one; at interpreter exit it kills its actors
before Ray's own shutdown. An actor found dead when an execution takes it (killed without
restart, or not back from a restart) is replaced by a new one.

Models with no GPU and no CPUs of their own share one actor per key (see `run.ray_actor`).
With `ray_actors: per-gpu` the models placed on GPUs share one actor per GPU: the pool keeps
which models each GPU's actor holds and how much of the GPU they ask for (`gpu_slot`).

Pooled actors hold their GPUs and CPUs while idle. When an execution's actor cannot be placed,
the pool ends the actors that no execution is using (`release_idle`): a driver process that
runs one tree, then another with other models (or another placement), would otherwise wait on
its own idle actors.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PooledActor:
    """One actor: its handle, its Ray name and its key."""

    actor: Any
    name: str
    key: tuple[Any, ...]
    # A GPU's actor (`ray_actors: per-gpu`): the models placed there, with their GPU shares.
    models: dict[str, float] = field(default_factory=dict)
    users: int = 0  # executions using it now (`use` / `done`); idle at 0
    model_users: dict[str, int] = field(default_factory=dict)  # the same, per model it holds
    asks: tuple[float, float] = (0.0, 0.0)  # the GPUs and CPUs it asked Ray for


@dataclass
class ActorPool:
    """Actors by key for the current Ray connection (see the module's docstring)."""

    actors: dict[tuple[Any, ...], PooledActor] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    job: str | None = None  # the Ray connection the handles belong to
    started: int = 0  # actors started by this process (names stay unique after replacements)
    hooked: bool = False
    # GPU actors assigned a first model (`gpu_slot`) but not started yet: key -> models.
    pending: dict[tuple[Any, ...], dict[str, float]] = field(default_factory=dict)

    def take(
        self,
        ray: Any,
        key: tuple[Any, ...],
        start: Callable[[str], Any],
        asks: tuple[float, float] = (0.0, 0.0),
    ) -> PooledActor:
        """The actor for `key`, started with `start(name)` (which returns its handle without
        waiting for it; it asks Ray for `asks`, GPUs and CPUs) when there is none. Whether a pooled actor still lives is found by
        its caller's first call to it (`ActorModel.ready`), which `evict`s a dead one."""
        with self.lock:
            self._follow_connection(ray)
            found = self.actors.get(key)
            if found is not None:
                return found
            self.started += 1
            digest = hashlib.sha256(repr(key).encode()).hexdigest()[:12]
            name = f"genarun-{os.getpid()}-{self.started}-{digest}"
            models = self.pending.pop(key, {})
            found = self.actors[key] = PooledActor(start(name), name, key, models, asks=asks)
            if not self.hooked:
                # Registered after ray.init's own exit hook, so it runs first (atexit is LIFO).
                atexit.register(self.release, ray)
                self.hooked = True
            return found

    def gpu_slot(
        self,
        ray: Any,
        model: str,
        share: float,
        rest: tuple[Any, ...],
        unload: Callable[[PooledActor, list[str]], None],
    ) -> tuple[Any, ...]:
        """The pool key of the GPU actor (`ray_actors: per-gpu`) that holds `model`: the one
        already holding it, else the first whose models' shares leave room for `share` (first
        fit: a GPU's models must fit its memory together), else the first where unloading
        models no execution uses makes room (`unload(pooled, models)` unloads them there),
        else a new one. `rest`: the rest of the key (device options), which actors of other
        options never share."""
        with self.lock:
            self._follow_connection(ray)
            held = {key: pooled.models for key, pooled in self.actors.items()}
            slots = [
                (k, m)
                for k, m in {**self.pending, **held}.items()
                if k[0] == "gpu" and k[2:] == rest
            ]
            for key, models in slots:
                if model in models:
                    return key
            for key, models in slots:
                if sum(models.values()) + share <= 1.0 + 1e-9:
                    models[model] = share
                    return key
            for key, models in slots:
                # A GPU's actor still holds models of earlier executions that none uses now:
                # unloaded there when that makes room (their memory is what `share` needs).
                pooled = self.actors.get(key)
                if pooled is None:
                    continue
                idle = [m for m in models if not pooled.model_users.get(m)]
                if sum(v for m, v in models.items() if m not in idle) + share <= 1.0 + 1e-9:
                    for name in idle:
                        del models[name]
                    unload(pooled, idle)
                    models[model] = share
                    return key
            taken = {k[1] for k in [*self.pending, *self.actors] if k[0] == "gpu"}
            key = ("gpu", next(i for i in range(len(taken) + 1) if i not in taken), *rest)
            self.pending[key] = {model: share}
            return key

    def members(self, key: tuple[Any, ...]) -> list[str]:
        """The models assigned to the GPU actor `key` (started or not)."""
        with self.lock:
            found = self.actors.get(key)
            return list(found.models if found is not None else self.pending.get(key, {}))

    def use(self, pooled: PooledActor, model: str | None = None) -> None:
        """An execution starts using `pooled` (it is not idle until `done`), or, with
        `model`, that model on it."""
        with self.lock:
            if model is None:
                pooled.users += 1
            else:
                pooled.model_users[model] = pooled.model_users.get(model, 0) + 1

    def done(self, pooled: PooledActor, model: str | None = None) -> None:
        with self.lock:
            if model is None:
                pooled.users = max(0, pooled.users - 1)
            else:
                pooled.model_users[model] = max(0, pooled.model_users.get(model, 0) - 1)

    def holds(self, actor: Any) -> bool:
        """`actor` is still in the pool (not ended for good by `evict`)."""
        with self.lock:
            return any(pooled.actor is actor for pooled in self.actors.values())

    def crowded(self, ray: Any) -> bool:
        """The pooled actors ask Ray for more GPUs or CPUs together than the cluster has."""
        total = ray.cluster_resources()
        with self.lock:
            gpus = sum(pooled.asks[0] for pooled in self.actors.values())
            cpus = sum(pooled.asks[1] for pooled in self.actors.values())
        return gpus > total.get("GPU", 0.0) + 1e-9 or cpus > total.get("CPU", 0.0) + 1e-9

    def release_idle(self, ray: Any) -> int:
        """End the pooled actors no execution is using, freeing what they hold; how many."""
        with self.lock:
            idle = [key for key, pooled in self.actors.items() if not pooled.users]
            for key in idle:
                _kill(ray, self.actors.pop(key).actor)
            return len(idle)

    def evict(self, ray: Any, actor: Any) -> None:
        """End `actor` (dead, or not back from a restart): the next `take` starts another."""
        with self.lock:
            for key, pooled in list(self.actors.items()):
                if pooled.actor is actor:
                    del self.actors[key]
            _kill(ray, actor)

    def release(self, ray: Any) -> None:
        """End every pooled actor (interpreter exit; also for callers that want them gone)."""
        with self.lock:
            if ray.is_initialized() and self.job == _job(ray):
                for pooled in self.actors.values():
                    _kill(ray, pooled.actor)
            self.actors.clear()
            self.pending.clear()

    def _follow_connection(self, ray: Any) -> None:
        """After `ray.shutdown()` and a new `ray.init()`, the old handles name nothing: Ray
        ended those actors with the old connection."""
        job = _job(ray)
        if job != self.job:
            self.actors.clear()
            self.pending.clear()
            self.job = job


def _job(ray: Any) -> str:
    """This connection: its job and the driver's node. A new local Ray (after `ray.shutdown()`)
    numbers its jobs from 1 again, so the job id alone named the old one's actors."""
    context = ray.get_runtime_context()
    return f"{context.get_job_id()}@{context.get_node_id()}"


def _kill(ray: Any, actor: Any) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # already gone, or Ray already shut down: nothing to end
        return


POOL = ActorPool()
