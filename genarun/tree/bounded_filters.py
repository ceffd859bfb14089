"""Jinja's filters and `lipsum`, bounded. A filter whose arguments can make its result much
larger than its value (`center(n)`, `indent(n)`, `join(sep)`, `replace`, `format`,
`tojson(indent=n)`, `batch(n, fill)`, `slice(n)`, `round(n)`, `wordwrap`) is checked before it
runs; every filter's result is measured after (genarun/tree/limits.py has the limits), and
filters that go through a whole value check the render's budget as they go
(genarun/tree/stepped_filters.py)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from jinja2 import Environment
from jinja2.utils import _PassArg, generate_lorem_ipsum

from genarun.tree import limits
from genarun.tree.limits import LIMITS, LimitExceeded, check_text, checked, measure
from genarun.tree.stepped_filters import ITEM_BY_ITEM, REPLACED, large, stepped


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], i: int, name: str, default: Any) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def _count_arg(value: Any, what: str) -> None:
    if isinstance(value, int) and value > LIMITS.count:
        raise LimitExceeded(f"{what} {value:,} is over the limit of {LIMITS.count:,}")


def _indented(value: Any, indent: Any) -> None:
    """json/tojson/pprint: nesting multiplies indentation; the result must fit."""
    if indent is None:
        limits.check_str_of(value)
        return
    step = len(indent) if isinstance(indent, str) else indent
    if not isinstance(step, int) or step > 16:
        raise LimitExceeded(f"an indent of {indent!r} is over the limit of 16")
    total, stack = 0, [(value, 1)]
    while stack and total <= LIMITS.text:
        item, depth = stack.pop()
        total += step * depth + 2
        if isinstance(item, (list, tuple)):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, dict):
            stack.extend((v, depth + 1) for pair in item.items() for v in pair)
        else:
            total += measure(item, LIMITS.text)
    check_text(total, "the indented text")


def _wordwrap_check(text: str, rest: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    wrap = _arg(rest, kwargs, 2, "wrapstring", None)
    if isinstance(wrap, str) and len(wrap) > 1:
        lines = len(text) // 2 + text.count("\n") + 1
        check_text(len(text) + lines * len(wrap), "the wrapped text")
    # textwrap cuts a long word one line at a time, copying the rest each time: quadratic.
    width = _arg(rest, kwargs, 0, "width", 79)
    if isinstance(width, int) and width > 0 and len(text) ** 2 // width > _WRAP_WORK:
        longest = max((len(w) for w in text.split()), default=0)
        if longest**2 // width > _WRAP_WORK:
            raise LimitExceeded(
                f"wrapping a word of {longest:,} characters at width {width} would take too long"
            )


_WRAP_WORK = 2_000_000_000


def _check_filter(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Before a filter runs: refuse arguments that make its result too large. `args` start
    with the filtered value; returns them (an iterator read here is passed on as a list)."""
    value = args[0] if args else None
    rest = args[1:]
    text = value if isinstance(value, str) else None
    if name == "center" and text is not None:
        width = _arg(rest, kwargs, 0, "width", 80)
        if isinstance(width, int):
            check_text(max(len(text), width), "the centered text")
    elif name == "indent" and text is not None:
        width = _arg(rest, kwargs, 0, "width", 4)
        step = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        check_text(len(text) + (text.count("\n") + 1) * max(step, 0), "the indented text")
    elif name == "wordwrap" and text is not None:
        _wordwrap_check(text, rest, kwargs)
    elif name == "replace" and text is not None:
        limits.before_str_method(text, "replace", rest[:3], {"count": kwargs.get("count", -1)})
    elif name == "join":
        items = list(limits._bounded_iter(value if value is not None else ()))
        limits.join_check(str(_arg(rest, kwargs, 0, "d", "")), items)
        return (items, *rest)
    elif name == "format":
        limits.check_percent(str(value), kwargs or rest)
    elif name in ("tojson", "json"):
        _indented(value, _arg(rest, kwargs, 0, "indent", None))
    elif name == "pprint":
        _indented(value, 1)
    elif name == "string":
        limits.check_str_of(value)
    elif name == "batch" and _arg(rest, kwargs, 1, "fill_with", None) is not None:
        _count_arg(_arg(rest, kwargs, 0, "linecount", 0), "a batch of")
    elif name == "slice":
        _count_arg(_arg(rest, kwargs, 0, "slices", 0), "slicing into")
    elif name == "round":
        precision = _arg(rest, kwargs, 0, "precision", 0)
        if isinstance(precision, int) and abs(precision) > 1000:
            raise LimitExceeded(f"a precision of {precision} is over the limit of 1000")
    elif name == "sum" and not isinstance(_arg(rest, kwargs, 1, "start", 0), int | float):
        items = list(limits._bounded_iter(value if value is not None else ()))
        if len(items) * measure(items, LIMITS.made) > LIMITS.made:
            raise LimitExceeded("summing these lists or texts would take too long")
        return (items, *rest)
    elif name == "urlize" and text is not None:
        # Each link repeats `target` and `rel`; the links themselves at most double a text.
        extra = sum(len(str(kwargs.get(k) or "")) for k in ("target", "rel"))
        if extra > 64:
            check_text(len(text) + (len(text) // 4 + 1) * extra, "the urlized text")
    return args


# The filters whose arguments can make a result much larger than the value filtered (or
# take very long); the others make at most a few times their value, checked after.
_CHECKED_FILTERS = frozenset(
    {"center", "indent", "wordwrap", "replace", "join", "format", "tojson", "json", "pprint"}
    | {"string", "batch", "slice", "round", "sum", "urlize"}
)


def _bounded_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    skip = 1 if _PassArg.from_obj(fn) is not None else 0

    @functools.wraps(fn)
    def checked_first(*args: Any, **kwargs: Any) -> Any:
        limits.tick()
        args = (*args[:skip], *_check_filter(name, args[skip:], kwargs))
        return checked(fn(*args, **kwargs))

    @functools.wraps(fn)
    def checked_stepped(*args: Any, **kwargs: Any) -> Any:
        limits.tick()
        args = (*args[:skip], *_check_filter(name, args[skip:], kwargs))
        if len(args) > skip and large(args[skip]):
            args = (*args[:skip], stepped(args[skip]), *args[skip + 1 :])
        return checked(fn(*args, **kwargs))

    @functools.wraps(fn)
    def checked_after(*args: Any, **kwargs: Any) -> Any:
        limits.tick()
        return checked(fn(*args, **kwargs))

    if name in ITEM_BY_ITEM:
        return checked_stepped
    return checked_first if name in _CHECKED_FILTERS else checked_after


def bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    _count_arg(n, "lipsum of")
    if isinstance(n, int) and isinstance(max, int) and isinstance(min, int):
        check_text(n * (max if max > min else min) * 12, "the lorem ipsum")
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


def bound_filters(env: Environment) -> None:
    """Wrap every filter (call after adding genarun's own)."""
    env.filters.update(REPLACED)
    for name, fn in list(env.filters.items()):
        env.filters[name] = _bounded_filter(name, fn)
