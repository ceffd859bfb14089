"""Bounds on the work one template may do: its time, the sizes of the values it makes, the
integers it computes and the loop iterations it runs.

A tree is data, not code: a template must not be able to take the machine's memory or time
(`{{ 'a' * 10**9 }}`, `{{ 2**99999999999 }}`, nested `range(100000)` loops). Jinja's sandbox
bounds only `range`; here every operation that can make a large value is checked *before* it
runs (the size of its result is estimated from its operands), and every value a template makes
is measured after. A render also has a budget: seconds of processor time, loop iterations,
characters of output and the total size of what it made; `tick` spends it, from the sandbox's
hooks (calls, filters, operators, loop iterations, outputs, and every few thousand items inside
the filters that go through a whole value: tree/stepped_filters.py); a watchdog thread keeps
the time (tree/render_time.py).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass
from threading import get_ident
from typing import Any

from jinja2.utils import Namespace


@dataclass(frozen=True)
class Limits:
    text: int = 2_000_000  # characters in one string a template makes, and in one render's output
    size: int = 2_000_000  # items + characters in one list or mapping a template makes
    made: int = 20_000_000  # items + characters of all the values one render makes
    int_bits: int = 4096  # bits of an integer a template computes (about 1,233 digits)
    iterations: int = 1_000_000  # loop iterations of one render
    seconds: float = 5.0  # one render's time
    count: int = 100_000  # a count argument (`slice(n)`, `batch(n, fill)`, `lipsum(n)`), as range


LIMITS = Limits()


class LimitExceeded(Exception):
    """A template went past one of LIMITS; the message says which and by how much."""


def _limit(what: str, amount: int | float, limit: int | float, unit: str) -> LimitExceeded:
    return LimitExceeded(
        f"{what} would be {amount:,} {unit}, over the limit of {limit:,} {unit} a template may use"
    )


class TimeLimitExceeded(LimitExceeded):
    """A render spent its time (tree/render_time.py)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"the template ran for more than {seconds:g} seconds of processor time, the limit "
            f"of one render (set {SECONDS_VARIABLE} to allow more)"
        )


# The one limit a person may raise (their machine, their time): a slow but honest template,
# such as sorting a long list that came from elsewhere. A tree cannot set it.
SECONDS_VARIABLE = "GENARUN_TEMPLATE_SECONDS"


def _seconds_from_environment() -> float | str | None:
    """GENARUN_TEMPLATE_SECONDS as this process started with it (read once: a render is ~20
    us, reading the environment ~4): seconds, the text that is not a number, or None."""
    raw = os.environ.get(SECONDS_VARIABLE, "").strip()
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        return raw
    return seconds if math.isfinite(seconds) and seconds > 0 else raw


_FROM_ENVIRONMENT = _seconds_from_environment()


def time_up(budget: Budget) -> LimitExceeded:
    """The error of a render whose budget is expired (or of a GENARUN_TEMPLATE_SECONDS that
    is not a limit: every render fails with it, rather than running without one)."""
    if isinstance(_FROM_ENVIRONMENT, str):
        return LimitExceeded(
            f"{SECONDS_VARIABLE}={_FROM_ENVIRONMENT!r} is not a number of seconds above 0 "
            f"(unset it for the default of {LIMITS.seconds:g})"
        )
    return TimeLimitExceeded(budget.seconds)


class Budget:
    """What one render has spent. Its time is watched from outside, by the thread in
    tree/render_time.py, which only marks it `expired`: `tick` raises at the render's next
    check, in the rendering thread (never an exception sent into a thread from outside)."""

    __slots__ = (
        "cpu_seen",
        "expired",
        "iterations",
        "made",
        "outer",
        "output",
        "seconds",
        "thread",
        "token",
    )

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.iterations = 0
        self.output = 0
        self.made = 0
        self.expired = False  # set by the watchdog once the render's time is spent
        self.thread = get_ident()
        self.outer: Budget | None = None  # the render this one is nested in, on its thread
        self.token: Token[Budget | None] | None = None
        self.cpu_seen: float | None = None  # the thread's clock when the watchdog first saw it


_BUDGET: ContextVar[Budget | None] = ContextVar("genarun_template_budget", default=None)

# The innermost render going on in each thread, for the watchdog. Plain dict operations: the
# GIL makes each one atomic, and a render costs no lock.
RENDERING: dict[int, Budget] = {}


class _Watch:
    started = False  # the watchdog thread runs (reset in a forked child: no thread there)
    idle = False  # it waits for a render to start


def start_budget() -> Budget:
    """A fresh budget for one render (a nested render gets its own); the render calls
    finish_budget when its work is done and end_budget in a `finally`. (Not a context
    manager: renders are short, and one cost more than they.)"""
    given = _FROM_ENVIRONMENT
    budget = Budget(given if isinstance(given, float) else LIMITS.seconds)
    if isinstance(given, str):
        budget.expired = True  # fails at its first check (time_up says why)
    budget.token = _BUDGET.set(budget)
    budget.outer = RENDERING.get(budget.thread)
    RENDERING[budget.thread] = budget  # registered, then the watchdog told (it reads in order)
    if _Watch.idle or not _Watch.started:
        from genarun.tree.render_time import wake

        wake()
    return budget


def finish_budget(budget: Budget) -> None:
    """The render's work is done: a render whose time ran out during its last step (one
    filter's work between two checks) fails too, so a render past its limit always fails."""
    if budget.expired:
        raise time_up(budget)


def end_budget(budget: Budget) -> None:
    """The render is over, however it ended: the watchdog no longer looks at it."""
    if budget.token is not None:
        _BUDGET.reset(budget.token)
        budget.token = None
    if RENDERING.get(budget.thread) is budget:
        if budget.outer is None:
            del RENDERING[budget.thread]
        else:
            RENDERING[budget.thread] = budget.outer


def tick(made: int = 0) -> None:
    """Spend one step (and `made` units of size) of the current render's budget."""
    budget = _BUDGET.get()
    if budget is None:  # folding constants at compile time: sizes are checked, not time
        return
    if made:
        budget.made += made
        if budget.made > LIMITS.made:
            raise _limit("the values this template made", budget.made, LIMITS.made, "units")
    if budget.expired:  # marked by the watchdog (tree/render_time.py)
        raise time_up(budget)


def loop_tick(literal: int) -> None:
    """One iteration of a `{% for %}` loop (or a macro call) whose body writes `literal`
    characters of constant text: counted as output, since it is."""
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.iterations += 1
    if budget.iterations > LIMITS.iterations:
        raise _limit("the loops' iterations", budget.iterations, LIMITS.iterations, "iterations")
    if literal:
        add_output(literal)
    tick()


def loop_output(literal: int) -> None:
    """The body of a kept item of a filtered loop (`{% for x in xs if ... %}`), whose iteration
    loop_tick counted when the item was tested: its constant text, counted as output."""
    if literal:
        add_output(literal)


def add_output(n: int) -> None:
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.output += n
    if budget.output > LIMITS.text:
        raise _limit("the template's output", budget.output, LIMITS.text, "characters")


# --- measuring values -------------------------------------------------------------------
def measure(value: Any, limit: int | None = None) -> int:
    """The size of a value: characters of its strings plus one per item, number and key,
    counting shared parts each time they occur (as printing or saving them would). Stops
    early, returning more than `limit`, once past it: a value built by nesting references
    (`[x, x]` ten levels deep) is cheap to hold and exponential to walk."""
    if isinstance(value, str):
        return len(value)
    limit = LIMITS.size if limit is None else limit
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, (list, tuple)):
            total += len(item) + 1
            if total <= limit:
                stack.extend(item)
        elif isinstance(item, dict):
            total += 2 * len(item) + 1
            if total <= limit:
                stack.extend(item.keys())
                stack.extend(item.values())
        elif isinstance(item, Namespace):
            stack.append(item._Namespace__attrs)
        elif isinstance(item, int) and not isinstance(item, bool):
            total += 1 + item.bit_length() // 3
        else:
            total += 1
        if total > limit:
            return total
    return total


def check_int(value: int) -> int:
    bits = value.bit_length()
    if bits > LIMITS.int_bits:
        raise _limit("an integer", bits, LIMITS.int_bits, "bits")
    return value


def check_text(length: int, what: str = "a text") -> None:
    if length > LIMITS.text:
        raise _limit(what, length, LIMITS.text, "characters")


def checked(value: Any) -> Any:
    """A value an operation made, refused if it is too large; its size is spent."""
    if isinstance(value, str):
        n = len(value)
        check_text(n)
        if n > 64:
            tick(n)
    elif isinstance(value, (list, tuple, dict, Namespace)):
        n = measure(value)
        if n > LIMITS.size:
            raise _limit("a list or mapping", n, LIMITS.size, "units of size")
        tick(n)
    elif isinstance(value, int) and not isinstance(value, bool):
        check_int(value)
    return value


def check_str_of(value: Any, what: str = "the text of a value") -> None:
    """Before `str(value)` (printing a list, joining, formatting): its content must fit."""
    if value is not None and not isinstance(value, (str, int, float, bool)):
        n = measure(value, LIMITS.text)
        if n > LIMITS.text:
            raise _limit(what, n, LIMITS.text, "characters")


# --- operators ----------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _repeat(seq: Any, times: Any) -> None:
    if not isinstance(times, int) or times <= 0:
        return
    if isinstance(seq, str):
        check_text(len(seq) * times, "the repeated text")
    else:
        n = measure(seq) * times
        if n > LIMITS.size:
            raise _limit("the repeated list", n, LIMITS.size, "units of size")


def before_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse an arithmetic operation whose result would be too large, before it runs."""
    if operator == "**":
        if _is_int(left) and _is_int(right) and right > 1 and abs(left) > 1:
            bits = right * math.log2(abs(left))
            if bits > LIMITS.int_bits:
                raise _limit(
                    f"{_short(left)} ** {_short(right)}", int(bits), LIMITS.int_bits, "bits"
                )
    elif operator == "*":
        if _is_int(left) and _is_int(right):
            bits = left.bit_length() + right.bit_length()
            if bits > LIMITS.int_bits + 1:
                raise _limit("the product", bits, LIMITS.int_bits, "bits")
        elif isinstance(left, (str, list, tuple)):
            _repeat(left, right)
        elif isinstance(right, (str, list, tuple)):
            _repeat(right, left)
    elif operator == "+":
        if isinstance(left, str) and isinstance(right, str):
            check_text(len(left) + len(right), "the joined text")
        elif isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
            n = measure(left) + measure(right)
            if n > LIMITS.size:
                raise _limit("the joined list", n, LIMITS.size, "units of size")
    elif operator == "%" and isinstance(left, str):
        check_percent(left, right)


def _short(value: int) -> str:
    text = str(value) if value.bit_length() < 64 else f"<an integer of {value.bit_length()} bits>"
    return text


# --- formatting ---------------------------------------------------------------------------
# A %-conversion: %(name)-08.3f and the like; `*` takes its width from the arguments.
_PERCENT = re.compile(
    r"%(?:\([^)]*\))?[#0\- +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d+))?[hlL]?[a-zA-Z%]"
)


def _number(digits: str) -> int:
    return 10**18 if len(digits) > 18 else int(digits)


def check_percent(template: str, args: Any) -> None:
    """`'%999999999d' % 1` and the format filter: widths and precisions add up."""
    total = len(template)
    for match in _PERCENT.finditer(template):
        for part in (match.group("width"), match.group("precision")):
            if part == "*":
                raise LimitExceeded("'*' widths in %-formatting are not allowed in templates")
            if part:
                total += _number(part)
    total += 4 * measure(args, LIMITS.text)
    check_text(total, "the formatted text")


def spec_width(spec: str) -> int:
    """The characters a str.format spec (`>999999`, `.500f`, `{:0{}}` substituted) may add."""
    return sum(_number(d) for d in re.findall(r"\d+", spec))


# --- calls whose result can be much larger than their arguments ---------------------------
def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _width_check(s: str, args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> None:
    width = _arg(args, kwargs, 0, "width", 0)
    if isinstance(width, int):
        check_text(max(len(s), width), f"'{name}' of that width")


def _replace_check(s: str, old: Any, new: Any, count: Any) -> None:
    if not isinstance(old, str) or not isinstance(new, str):
        return
    found = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    check_text(len(s) + found * max(0, len(new) - len(old)), "the replaced text")


def join_check(separator: str, items: list[Any]) -> None:
    total = len(separator) * max(0, len(items) - 1)
    for item in items:
        total += measure(item, LIMITS.text)
        if total > LIMITS.text:
            break
    check_text(total, "the joined text")


def before_str_method(
    s: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    """Check a call of a text method; returns the arguments to call it with (an iterator
    given to `join` is read once, here, so it is passed on as a list)."""
    if name in ("center", "ljust", "rjust", "zfill"):
        _width_check(s, args, kwargs, name)
    elif name == "expandtabs":
        size = _arg(args, kwargs, 0, "tabsize", 8)
        if isinstance(size, int):
            check_text(len(s) + s.count("\t") * max(size, 0), "the expanded text")
    elif name == "replace":
        _replace_check(
            s,
            _arg(args, {}, 0, "", None),
            _arg(args, {}, 1, "", None),
            _arg(args, kwargs, 2, "count", -1),
        )
    elif name == "join" and args:
        items = list(_bounded_iter(args[0]))
        join_check(s, items)
        args = (items, *args[1:])
    return args


def _bounded_iter(iterable: Any) -> Iterator[Any]:
    for n, item in enumerate(iterable):
        if n >= LIMITS.size:
            raise _limit("the list", n + 1, LIMITS.size, "items")
        yield item
