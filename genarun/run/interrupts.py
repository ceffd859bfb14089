"""Ctrl-C during a run: the first press starts nothing new and lets what is running finish and
be stored; a second press stops at once.

Without this, Ctrl-C raised KeyboardInterrupt in the scheduler, which then waited, silently,
for the model batches in flight (a model load, minutes of GPU work) and threw their results
away. The handler only sets a flag: the scheduler turns it into a halt at its next safe point
(it looks at least every 0.1 s), as a `--budget` that is reached does.

SIGTERM (`kill`, a scheduler's time limit, `docker stop`) and SIGHUP (the terminal closed) stop
at once, as a second Ctrl-C does: Python's default for them ended the process where it stood,
leaving the run folder without the outputs that had finished. Whoever sends them wants the
process gone soon, so nothing in flight is waited for; what finished is stored and written to
the folder, and the process exits 128 + the signal's number.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any, NoReturn


class GracefulInterrupt:
    """While active (in the main thread), SIGINT sets `requested`; a second SIGINT raises
    KeyboardInterrupt as Python's own handler does."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._stops: dict[signal.Signals, Any] = {}
        self._installed = False

    def __enter__(self) -> GracefulInterrupt:
        # Signal handlers can be set only in the main thread (a server worker runs elsewhere).
        if threading.current_thread() is threading.main_thread():
            _taken.clear()
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._stops = {sig: signal.signal(sig, _stop_now) for sig in _STOP_SIGNALS}
            self._installed = True
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _stopping.clear()  # the run is over: later requests of this process retry again
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            for sig, previous in self._stops.items():
                signal.signal(sig, previous)
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            _stopped_at_once.set()
            raise KeyboardInterrupt
        self.requested = True
        _taken.set()
        _stopping.set()


# Set by the first Ctrl-C a run took. A run whose last work was finishing as it came ends
# complete, not interrupted: a caller that runs tree after tree (`genarun watch`) reads this
# so that the press still stops it.
_taken = threading.Event()


def taken_by_last_run() -> bool:
    """Whether Ctrl-C was pressed during the last run of this process."""
    return _taken.is_set()


# Set by the first Ctrl-C while its run goes on (cleared when it ends): requests in flight then
# finish without retrying.
_stopping = threading.Event()


def stop_within(seconds: float) -> bool:
    """Wait up to `seconds`, or less if Ctrl-C is pressed during the run going on; whether it
    was. A retry after the press would be new work: what is running finishes, not retries."""
    return _stopping.wait(seconds)


# Set by a second Ctrl-C: the model threads still running are abandoned, and the process ends
# once the run is recorded as interrupted, without waiting for them (Python would join them).
_stopped_at_once = threading.Event()
_exit_code = 130  # 128 + the signal that stopped the run (SIGINT unless SIGTERM or SIGHUP)

# Signals that stop a run at once (SIGHUP does not exist on Windows).
_STOP_SIGNALS = [signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])]


def _stop_now(signum: int, frame: FrameType | None) -> None:
    """SIGTERM or SIGHUP during a run: stop at once, as a second Ctrl-C does."""
    global _exit_code
    _exit_code = 128 + signum
    _stopped_at_once.set()
    raise KeyboardInterrupt


def exit_interrupted() -> NoReturn:
    """Exit 130 (128 + the stopping signal). After Ctrl-C twice (or SIGTERM) the run is recorded
    as interrupted: end the process now rather than wait, as Python's exit would, for the model
    threads it abandoned."""
    if _stopped_at_once.is_set():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_code)
    sys.exit(_exit_code)
