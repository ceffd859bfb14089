"""Jinja's filters that go through a whole value, made to check the render's budget every STEP
items, so that a render past its time limit stops within one step (tree/render_time.py says
why the render checks itself rather than being stopped from outside).

Filters that read their value item by item (`unique`, `min`, `map`, `select`, `batch`, `sum`,
`join`, ...) get it through `stepped`. `sort`, `dictsort` and `groupby` compute their keys in
steps and sort in C on the keys (the same order as Jinja's: a stable sort on the same keys);
they refuse a value of more items than the size limit before sorting, as their result would be
refused after. `urlize` works on pieces of a few thousand words, and refuses a text whose runs
of closing punctuation would make its regular expression quadratic. Results are Jinja's
(tests/test_render_time.py compares them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, ValuesView
from itertools import groupby as _groupby
from itertools import islice
from typing import Any

import markupsafe
from jinja2 import filters as jinja_filters
from jinja2.exceptions import FilterArgumentError
from jinja2.filters import _GroupTuple, ignore_case, make_attrgetter, make_multi_attrgetter
from jinja2.utils import pass_environment, pass_eval_context

from genarun.tree import limits
from genarun.tree.limits import LimitExceeded

STEP = 4096  # items between two checks of the budget: ~1 ms of a filter's work or less


# Values whose size is known without reading them (an iterator, another filter's, reads a
# stepped value itself).
_SIZED = (list, tuple, str, dict, set, frozenset, range, KeysView, ValuesView, ItemsView)


def small(value: Any) -> bool:
    """A value of STEP items or fewer: read in one step."""
    return isinstance(value, _SIZED) and len(value) <= STEP


def large(value: Any) -> bool:
    return isinstance(value, _SIZED) and len(value) > STEP


def stepped(items: Iterable[Any]) -> Iterable[Any]:
    """`items`, checking the render's budget before every STEP of them; a small value as it is
    (one step: most values, and the cheapest way)."""
    return items if small(items) else _steps(items)


def _steps(items: Iterable[Any]) -> Iterator[Any]:
    if type(items) in (list, tuple, str, range):
        seq: Any = items
        for start in range(0, len(seq), STEP):
            limits.tick()
            yield from seq[start : start + STEP]
        return
    iterator = iter(items)
    while chunk := list(islice(iterator, STEP)):
        limits.tick()
        yield from chunk


def _sort(items: list[Any], key: Callable[[Any], Any], reverse: bool) -> list[Any]:
    """sorted(items, key=key, reverse=reverse), its keys computed in steps."""
    if len(items) <= STEP:
        return sorted(items, key=key, reverse=reverse)
    # The sorted list is refused after if over the size limit; refused before when it must
    # be: it counts one per item, and one or more for each item but an empty text.
    size = limits.LIMITS.size
    least = 2 * len(items) + 1 - (items.count("") if len(items) * 2 > size else 0)
    if least > size:
        raise limits._limit("the sorted list", least, size, "units of size")
    keys = [key(item) for item in stepped(items)]
    # One call into C on the keys (the same order: a stable sort on the same keys): n log n
    # comparisons of at most LIMITS.size keys.
    order = sorted(range(len(items)), key=keys.__getitem__, reverse=reverse)
    limits.tick()
    return [items[i] for i in order]


@pass_environment
def sort(
    environment: Any,
    value: Iterable[Any],
    reverse: bool = False,
    case_sensitive: bool = False,
    attribute: str | int | None = None,
) -> list[Any]:
    key = make_multi_attrgetter(
        environment, attribute, postprocess=ignore_case if not case_sensitive else None
    )
    return _sort(list(stepped(value)), key, reverse)


def dictsort(
    value: Any, case_sensitive: bool = False, by: str = "key", reverse: bool = False
) -> list[tuple[Any, Any]]:
    if by == "key":
        pos = 0
    elif by == "value":
        pos = 1
    else:
        raise FilterArgumentError('You can only sort by either "key" or "value"')

    def key(item: tuple[Any, Any]) -> Any:
        return item[pos] if case_sensitive else ignore_case(item[pos])

    return _sort(list(stepped(value.items())), key, reverse)


@pass_environment
def groupby(
    environment: Any,
    value: Iterable[Any],
    attribute: str | int,
    default: Any = None,
    case_sensitive: bool = False,
) -> list[_GroupTuple]:
    expr = make_attrgetter(
        environment,
        attribute,
        postprocess=ignore_case if not case_sensitive else None,
        default=default,
    )
    items = _sort(list(stepped(value)), expr, False)
    keys = [expr(item) for item in stepped(items)]  # (Jinja's groupby computes them again too)
    out = []
    at = 0
    for n, (key, group) in enumerate(_groupby(keys)):
        if not n % STEP:
            limits.tick()
        size = sum(1 for _ in group)
        out.append(_GroupTuple(key, items[at : at + size]))
        at += size
    if not case_sensitive:
        # Jinja's: the group's key as its first item has it, not lowercased.
        output_expr = make_attrgetter(environment, attribute, default=default)
        out = [_GroupTuple(output_expr(values[0]), values) for _, values in stepped(out)]
    return out


# --- urlize ---------------------------------------------------------------------------------
# Jinja's urlize finds a word's trailing punctuation with re.search(r"([)>.,\n]|&gt;)+$"),
# which tries every start inside every run of those characters and goes to the run's end:
# quadratic in a run's length (a word of 20,000 ')' and a letter took 16 s). Its balancing of
# parentheses moves the trailing run over one character at a time, copying it each time.
_CLOSING_RUN = re.compile(r"(?:[)>.,]|&gt;)+")
_URLIZE_WORK = 4_000_000  # sum of the squares of the runs' lengths (~0.3 s of the regex)
_WORDS = re.compile(r"(\s+)")


def _urlize_check(escaped: str) -> None:
    work = longest = 0
    for run in _CLOSING_RUN.finditer(escaped):
        length = run.end() - run.start()
        work += length**2
        longest = max(longest, length)
    if work > _URLIZE_WORK:
        raise LimitExceeded(
            "urlize of this text would take too long: it has runs of closing punctuation "
            f"('.', ',', ')', '>') of up to {longest:,} characters, {work:,} in all squared "
            f"(the limit is {_URLIZE_WORK:,})"
        )


@pass_eval_context
def urlize(eval_ctx: Any, value: Any, *args: Any, **kwargs: Any) -> str:
    text = str(value)

    _urlize_check(str(markupsafe.escape(text)))
    # Jinja's urlize handles each word (and the whitespace after it) on its own, so pieces of
    # STEP words give the same text.
    parts = _WORDS.split(text)
    piece = markupsafe.Markup if isinstance(value, markupsafe.Markup) else str
    step = 2 * STEP  # a word and the whitespace after it
    done = []
    for start in range(0, len(parts), step):
        limits.tick()
        words = piece("".join(parts[start : start + step]))
        done.append(str(jinja_filters.do_urlize(eval_ctx, words, *args, **kwargs)))
    joined = "".join(done)
    return markupsafe.Markup(joined) if eval_ctx.autoescape else joined


# Filters that read their value item by item: given it through `stepped`. (Not `reverse`,
# `first`, `last`, `length`, `random`: they index or count; not `string`, `tojson`, `pprint`,
# `list` of a text: they convert the value as it is, in one call into C or bounded by the
# size limits.)
ITEM_BY_ITEM = frozenset(
    {"unique", "min", "max", "map", "select", "reject", "selectattr", "rejectattr"}
    | {"batch", "slice", "sum", "join", "list"}
)

REPLACED: dict[str, Callable[..., Any]] = {
    "sort": sort,
    "dictsort": dictsort,
    "groupby": groupby,
    "urlize": urlize,
}
