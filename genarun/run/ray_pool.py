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


@dataclass
class ActorPool:
    """Actors by key for the current Ray connection (see the module's docstring)."""

    actors: dict[tuple[Any, ...], PooledActor] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    job: str | None = None  # the Ray connection the handles belong to
    started: int = 0  # actors started by this process (names stay unique after replacements)
    hooked: bool = False

    def take(self, ray: Any, key: tuple[Any, ...], start: Callable[[str], Any]) -> PooledActor:
        """The actor for `key`, started with `start(name)` (which returns its handle without
        waiting for it) when there is none. Whether a pooled actor still lives is found by
        its caller's first call to it (`ActorModel.ready`), which `evict`s a dead one."""
        with self.lock:
            self._follow_connection(ray)
            found = self.actors.get(key)
            if found is not None:
                return found
            self.started += 1
            digest = hashlib.sha256(repr(key).encode()).hexdigest()[:12]
            name = f"genarun-{os.getpid()}-{self.started}-{digest}"
            found = self.actors[key] = PooledActor(start(name), name, key)
            if not self.hooked:
                # Registered after ray.init's own exit hook, so it runs first (atexit is LIFO).
                atexit.register(self.release, ray)
                self.hooked = True
            return found

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

    def _follow_connection(self, ray: Any) -> None:
        """After `ray.shutdown()` and a new `ray.init()`, the old handles name nothing: Ray
        ended those actors with the old connection."""
        job = _job(ray)
        if job != self.job:
            self.actors.clear()
            self.job = job


def _job(ray: Any) -> str:
    return str(ray.get_runtime_context().get_job_id())


def _kill(ray: Any, actor: Any) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # already gone, or Ray already shut down: nothing to end
        return


POOL = ActorPool()
