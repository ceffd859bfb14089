"""The render time limit: processor time of the rendering thread, kept by a watchdog thread.

Every POLL seconds the watchdog reads the processor time of each thread that is rendering; once
a render has spent its limit it marks the render's budget `expired`, and the render raises
TimeLimitExceeded itself at its next check (limits.tick: every call, filter, operator, loop
iteration and output, and every few thousand items inside a filter that goes through a whole
value, tree/stepped_filters.py). A render whose time ran out during its last step fails when it
finishes (limits.finish_budget). So a render past its limit always fails, with the limit named,
in its own thread, at a check it makes; the watchdog never touches another thread's state.

Why not stop the render from outside, with an exception sent into its thread
(PyThreadState_SetAsyncExc, as an earlier version did): such an exception lands at whatever
instruction the thread runs next. In a garbage-collector callback or a `__del__` it is dropped
("Exception ignored in") and the render goes on; in a library's `finally` or between taking a
lock and the `try` that releases it, it leaves that library's state broken for later renders and
other threads; and it cannot interrupt one long call into C (a sort) either. Checks the render
makes itself are deterministic, and cheap: a flag read, no clock (a thread's clock costs ~9 us
here, a whole render ~20 us).

What a check cannot interrupt is one step between two checks: a call into C, or a filter's own
loop over a value within the size limits (limits.py). Each such step is linear (or n log n, for
a sort) in what it reads, and what a template makes is bounded by the size limits, so a step is
bounded too: at the limits the longest measured here (wordwrap of one 2,000,000-character line,
pprint, sort) take 1-1.5 s of processor time on the 2-core development machine. Filters whose
work grows faster than their value are refused before they run (urlize of long runs of closing
punctuation, wordwrap of a very long word: bounded_filters.py).

A render's time is its thread's processor time, so a busy machine neither stops a template
early nor lets one run longer. The time before the watchdog first sees a render (at most POLL)
is not counted.
"""

from __future__ import annotations

import os
import threading
import time

from genarun.tree import limits

POLL = 0.05  # seconds between looks: the most a render overshoots besides its last step
IDLE_AFTER = 1.0  # seconds with no render before the thread waits for one

_wake = threading.Event()


def wake() -> None:
    """A render started: make sure the watchdog looks (started once per process)."""
    if not limits._Watch.started:
        limits._Watch.started = True
        threading.Thread(target=_watch, name="genarun-render-time", daemon=True).start()
    limits._Watch.idle = False
    _wake.set()


def _thread_clock(budget: limits.Budget) -> float:
    """The rendering thread's processor time (wall time where the system cannot tell)."""
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(budget.thread))
    except (AttributeError, OSError):  # no per-thread clock (macOS, Windows), or thread gone
        return time.monotonic()


def used(budget: limits.Budget) -> float:
    """Seconds of processor time the render's thread has spent since the watchdog first saw
    the render."""
    if budget.cpu_seen is None:
        budget.cpu_seen = _thread_clock(budget)
    return _thread_clock(budget) - budget.cpu_seen


def _watch() -> None:
    quiet_since = time.monotonic()
    while True:
        now = time.monotonic()
        for budget in list(limits.RENDERING.values()):
            if not budget.expired and used(budget) > budget.seconds:
                budget.expired = True  # the render raises at its next check
        if limits.RENDERING:
            quiet_since = now
        elif now - quiet_since > IDLE_AFTER:
            _wake.clear()
            limits._Watch.idle = True
            if not limits.RENDERING:  # a render registered before `idle` was set: look at it
                _wake.wait()
            quiet_since = time.monotonic()
        time.sleep(POLL)


def _after_fork() -> None:
    limits._Watch.started = False  # the child has no watchdog thread until its first render
    limits._Watch.idle = False
    limits.RENDERING.clear()


os.register_at_fork(after_in_child=_after_fork)
