"""Ctrl-C during a run: the first press starts nothing new and lets what is running finish and
be stored; a second press stops at once.

Without this, Ctrl-C raised KeyboardInterrupt in the scheduler, which then waited, silently,
for the model batches in flight (a model load, minutes of GPU work) and threw their results
away. The handler only sets a flag: the scheduler turns it into a halt at its next safe point
(it looks at least every 0.1 s), as a `--budget` that is reached does.
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
        self._installed = False

    def __enter__(self) -> GracefulInterrupt:
        # Signal handlers can be set only in the main thread (a server worker runs elsewhere).
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            _stopped_at_once.set()
            raise KeyboardInterrupt
        self.requested = True


# Set by a second Ctrl-C: the model threads still running are abandoned, and the process ends
# once the run is recorded as interrupted, without waiting for them (Python would join them).
_stopped_at_once = threading.Event()


def exit_interrupted() -> NoReturn:
    """Exit 130. After Ctrl-C twice the run is recorded as interrupted: end the process now
    rather than wait, as Python's exit would, for the model threads it abandoned."""
    if _stopped_at_once.is_set():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(130)
