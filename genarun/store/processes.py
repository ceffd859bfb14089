"""Whether the process that runs a run is still alive (runs store their pid, host and a
heartbeat that the running process refreshes: store/claims.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def host_name() -> str:
    """This machine's name, as `socket.gethostname()` gives it: on POSIX both read the
    kernel's host name (uname's node name), and the socket module costs every run's start
    about 5 ms (issue 18 item 4)."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket

    return socket.gethostname()


def process_alive(run: dict[str, Any]) -> bool | None:
    """True or False for a run started on this host; None when it cannot be known."""
    pid, host = run.get("pid"), run.get("host")
    if not pid or host != host_name():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed child that its parent has not reaped yet is a zombie: gone for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


STALE_AFTER = 60.0  # a claim whose heartbeat is older, on a host we cannot check, is stale


def holder_alive(run: dict[str, Any]) -> bool | None:
    """Whether the process that claimed a running run still runs it; None: cannot be told.

    On this host the pid says it; on another host (a shared database on a network disk, a
    copied file) the heartbeat does, which a live run refreshes every few seconds."""
    alive = process_alive(run)
    if alive is not None:
        return alive
    beat = run.get("heartbeat")
    if beat is None:  # claimed by a genarun without heartbeats, on another host
        return None
    return bool(time.time() - beat < STALE_AFTER)


# Every status a run is shown with (`crashed` is never stored: display_status derives it).
RUN_STATUSES = ("running", "crashed", "completed", "failed", "interrupted", "waiting")


def display_status(run: dict[str, Any]) -> str:
    """The stored status, or `crashed` for a run marked running whose process is gone: its pid
    on this host, or its heartbeat gone quiet on another host (holder_alive).

    The one place a run's shown status comes from: `runs list`/`show` (text and --json), the
    API and the pages all call it, so none of them can say `running` for a killed run."""
    if run.get("status") == "running" and holder_alive(run) is False:
        return "crashed"
    return run.get("status") or ""
