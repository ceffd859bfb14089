"""A deadline for a benchmark on a lent machine: past it, say where every thread is and what Ray
holds, save what was measured, and end the process, so a run that hangs still reports why
within the call's limit (a command killed from outside prints nothing of its own)."""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any


def ray_state() -> dict[str, Any]:
    """What a local Ray holds (nothing when Ray is not connected): its resources in all and
    free, and each actor's name, state and placement, from the GCS (no dashboard needed)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return {}
    state: dict[str, Any] = {
        "cluster": ray.cluster_resources(),
        "available": ray.available_resources(),
    }
    try:
        from ray._private import state as gcs  # private, but it needs no dashboard

        state["actors"] = [
            {
                "name": a.get("Name"),
                "state": a.get("State"),
                "pid": a.get("Pid"),
                "resources": a.get("RequiredResources"),
                "death": str(a.get("DeathCause") or "")[:400],
            }
            for a in gcs.actors().values()
        ]
    except Exception as exc:  # diagnostics only: say why they are missing
        state["actors"] = f"unavailable: {exc!r}"
    return state


def start(seconds: float | None, on_expiry: Callable[[], None]) -> None:
    """After `seconds`: print every thread's stack and Ray's state, call `on_expiry` (save
    partial results), and exit with status 3."""
    if not seconds:
        return

    def expire() -> None:
        time.sleep(seconds)
        print(f"\n=== watchdog: {seconds:.0f} s deadline reached; threads:", flush=True)
        faulthandler.dump_traceback(all_threads=True)
        try:
            print(f"=== Ray: {ray_state()}", flush=True)
        finally:
            try:
                on_expiry()
            finally:
                sys.stdout.flush()
                os._exit(3)

    threading.Thread(target=expire, name="watchdog", daemon=True).start()
