"""What the CPU benchmarks report beside their wall times: the machine and its load, and the
CPU a task took (imported by bench/clustering.py and bench/mosaic_video.py, run as scripts)."""

from __future__ import annotations

import os
import platform
import resource


def machine() -> str:
    """The machine, its cores and its load now: one line to print before the figures."""
    return f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"


def cpu_seconds() -> float:
    """User + system CPU of this process (all its threads) and its finished children (ffmpeg):
    on a machine shared with other work, the CPU a task took says more than its wall time."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
