"""Placing a model's actor on the Ray cluster, and a clear error when Ray cannot.

Ray never fails an actor it cannot place: one that asks for more GPUs or CPUs than any node
has (infeasible), or than the cluster has free (other actors, this run's own among them, hold
them), waits for ever with nothing sent to the driver, and the run would hang on its first
batch. So a model's first call waits for its actor to start at most `placement_wait()`
seconds, then the nodes that use the model fail alone with `ActorNotPlaced`: what the model
asks for, what the cluster has in all and free, what this run's actors ask for together, and
the fix. On a Ray this driver started itself (no autoscaler: nothing will join), an actor no
node could ever hold fails at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genarun.models.base import ModelSpec

WAIT_ENV = "GENARUN_RAY_PLACEMENT_TIMEOUT"
# Long enough for a worker process to start on a busy machine (it took over 30 s on the
# project's loaded 2-core box); an autoscaling cluster adding a node may need more (WAIT_ENV).
DEFAULT_WAIT = 120.0


class ActorNotPlaced(RuntimeError):
    """A model's actor asks for more than the cluster has (in all, or free): not started."""


@dataclass(frozen=True)
class Request:
    """What one actor asks Ray for."""

    gpus: float = 0.0
    cpus: float = 0.0

    def fits(self, resources: dict[str, float]) -> bool:
        return (
            self.gpus <= resources.get("GPU", 0.0) + 1e-9
            and self.cpus <= resources.get("CPU", 0.0) + 1e-9
        )

    def __str__(self) -> str:
        return _amounts(self.gpus, self.cpus)


def placement_wait() -> float:
    """Seconds an actor may take to be placed and started (`GENARUN_RAY_PLACEMENT_TIMEOUT`)."""
    text = os.environ.get(WAIT_ENV, "")
    try:
        return float(text) if text else DEFAULT_WAIT
    except ValueError:
        return DEFAULT_WAIT


def node_totals(ray: Any) -> list[dict[str, float]]:
    """The total resources of each live node of the cluster."""
    return [dict(node.get("Resources") or {}) for node in ray.nodes() if node.get("Alive")]


def infeasible(ray: Any, request: Request) -> bool:
    """No live node of the cluster could ever hold `request`."""
    return not any(request.fits(node) for node in node_totals(ray))


def not_placed(
    ray: Any, label: str, request: Request, waited: float | None, run: Iterable[tuple[str, Request]]
) -> ActorNotPlaced:
    """The error for model `label`'s actor, not placed after `waited` seconds (None: not
    tried, no node could hold it); `run`: every model actor of this run and what it asks."""
    nodes = node_totals(ray)
    largest = max(nodes, key=lambda n: (n.get("GPU", 0.0), n.get("CPU", 0.0)), default={})
    total, free = ray.cluster_resources(), ray.available_resources()
    where = f"model '{label}': its Ray actor asks for {request}"
    what = [k for k, v in (("ray_num_gpus", request.gpus), ("ray_num_cpus", request.cpus)) if v]
    options = " / ".join(what) or "ray_num_gpus"
    if not any(request.fits(n) for n in nodes):
        largest_text = _amounts(largest.get("GPU", 0.0), largest.get("CPU", 0.0))
        return ActorNotPlaced(
            f"{where}, and no node of the cluster has that much (the largest has "
            f"{largest_text}); "
            + ("it was not started" if waited is None else f"not placed in {waited:.0f} s")
            + f". Fix: lower the model's {options} option to at most what a node has "
            "(a fraction of a GPU shares it: `options: {ray_num_gpus: 0.5}`), or run on a "
            "cluster with such a node (--ray-address / RAY_ADDRESS)"
            + ("" if waited is None else f"; an autoscaling cluster may need longer: {WAIT_ENV}")
        )
    asked = list(run)
    together = Request(sum(r.gpus for _, r in asked), sum(r.cpus for _, r in asked))
    each = ", ".join(f"'{name}' {r}" for name, r in asked if r.gpus or r.cpus)
    return ActorNotPlaced(
        f"{where} and was not started in {waited or 0:.0f} s: the cluster has "
        f"{_amounts(total.get('GPU', 0.0), total.get('CPU', 0.0))} in all, "
        f"{_amounts(free.get('GPU', 0.0), free.get('CPU', 0.0))} free; this run's model actors "
        f"ask for {together} together ({each or 'none of them any'}), and other jobs' actors "
        "may hold the rest. Fix: lower the models' ray_num_gpus / ray_num_cpus options so they "
        "fit the cluster together (`options: {ray_num_gpus: 0.3}` on each of 3 models shares "
        f"one GPU), free the cluster, or add nodes; a slow start or an autoscaling cluster may "
        f"need longer: {WAIT_ENV}=SECONDS (now {placement_wait():.0f})"
    )


def _amounts(gpus: float, cpus: float) -> str:
    return f"{_number(gpus)} GPU{'' if gpus == 1 else 's'} and {_number(cpus)} CPU" + (
        "" if cpus == 1 else "s"
    )


def _number(value: float) -> str:
    return f"{value:g}"


def driver_threads() -> str:
    """The intra-op thread count torch uses in this process (without importing it here)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        return str(torch.get_num_threads())
    return os.environ.get("OMP_NUM_THREADS") or str(len(os.sched_getaffinity(0)))


def gpu_share(spec: ModelSpec, cluster_gpus: float, device: str | None = None) -> float:
    """The GPUs an actor of `spec` asks for: none on a cluster without GPUs or when the run's
    device is not CUDA (`--device cpu`: the local executor would run it on the CPU, and so
    must the actor, or its outputs would differ); else the `ray_num_gpus` option (for any
    provider: one may use the GPU without torch); none for a model that uses no torch; else a
    share of one GPU from the model's catalog size (weights x 4 for activations, at least a
    tenth), or one GPU."""
    if cluster_gpus <= 0 or (device and not device.startswith("cuda")):
        return 0.0
    option = spec.executor_options.get("ray_num_gpus")
    if option is not None:
        return float(option)
    from genarun.plugins import registry

    provider = registry().providers.get(spec.provider)
    if provider is not None and not provider.uses_torch:
        return 0.0
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
