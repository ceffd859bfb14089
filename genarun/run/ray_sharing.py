"""How the Ray executor puts models on actors (`ray_actors`), and running a batch alone on an
actor that several models share.

`per-model` (the default): an actor of its own for each model placed on a GPU, asking Ray for
that model's share of it (`ray_num_gpus`). Each is a process with its own CUDA context, and
a GPU time-slices between contexts: the models' kernels never run side by side, and the
stream priorities that let a captioner's small decoding kernels slip between a painter's
large ones (models.device.own_stream) work only inside one context.

`per-gpu`: one actor per GPU hosts every model placed on that GPU, each on a thread of its
own, as the local executor's model threads do in its one process: one context, one caching
allocator for all of them (memory one model frees is there for the next), stream priorities
that apply. Models go to GPUs first fit by their shares (their memory must fit together);
each such actor asks Ray for a whole GPU. A model asking for more than one GPU keeps an actor
of its own.

Faults on a shared actor: when its process dies, every batch it was running is lost, and
which model took it down is not known. Each lost batch is queued again (batching.settle)
and, from then on, runs alone there (`AloneGate`): no other batch is in flight on that actor,
so a crash is that batch's own. A model that crashes on one input then takes down only its
own batches, halved until the input fails alone; the other models' batches run side by side
again at once.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

from genarun.errors import UserError

PER_MODEL = "per-model"
PER_GPU = "per-gpu"
ACTORS = (PER_MODEL, PER_GPU)
ACTORS_ENV = "GENARUN_RAY_ACTORS"


class BadActorPlacement(UserError):
    """`ray_actors` (or $GENARUN_RAY_ACTORS) names no placement."""


def actors_placement(value: str | None) -> str:
    """`value` (the run's `ray_actors`), else $GENARUN_RAY_ACTORS, else per-model; checked."""
    chosen = (value or os.environ.get(ACTORS_ENV) or PER_MODEL).strip().lower()
    if chosen not in ACTORS:
        source = "ray_actors" if value else ACTORS_ENV
        raise BadActorPlacement(
            f"{source}={chosen!r} is not a placement of the Ray executor's actors: use "
            f"{PER_MODEL} (an actor per model) or {PER_GPU} (one actor per GPU holding the "
            "models placed on it)"
        )
    return chosen


class AloneGate:
    """Batches on one shared actor: side by side by default; `hold(alone=True)` waits until no
    other batch is in flight there and keeps others out until it ends. Waiting lone batches
    go before new side-by-side ones (they are retries: the run waits on them)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running = 0  # side-by-side batches in flight
        self._alone = False  # a lone batch is in flight
        self._waiting_alone = 0

    @contextlib.contextmanager
    def hold(self, alone: bool = False) -> Iterator[None]:
        with self._cond:
            if alone:
                self._waiting_alone += 1
                self._cond.wait_for(lambda: not self._alone and not self._running)
                self._waiting_alone -= 1
                self._alone = True
            else:
                self._cond.wait_for(lambda: not self._alone and not self._waiting_alone)
                self._running += 1
        try:
            yield
        finally:
            with self._cond:
                if alone:
                    self._alone = False
                else:
                    self._running -= 1
                self._cond.notify_all()
