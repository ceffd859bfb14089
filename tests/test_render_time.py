"""The render time limit (genarun/tree/render_time.py): processor time of the rendering thread,
marked by a watchdog, raised by the render itself at its next check. Every kind of long render
(loops, recursion, each filter and method that goes through a value) is stopped near the limit
with the limit named, every time; nothing is ever raised anywhere else."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from genarun.tree import limits, stepped_filters
from genarun.tree.template_env import RenderError
from genarun.tree.templates import Text

LIMIT = 0.3  # seconds of processor time per render in these tests
# The watchdog's look interval, one step between two checks (the filters below each take under
# ~0.3 s per call here; at the size limits the longest steps are ~1 s), and collections of
# the full suite's large heap, which count as the rendering thread's time.
SLACK = 2.5
STOPPED = r"ran for more than 0.3 seconds of processor time, the limit of one render \(set "
STOPPED += "GENARUN_TEMPLATE_SECONDS to allow more\\)"

WORDS = "ab Cd ef.com (g) www.x.org, " * 20_000  # 540,000 characters in scope
# In scope, as a node's output would be: a value the template did not make.
SCOPE: dict[str, Any] = {
    "words": WORDS,
    "items": [{"name": f"n{i % 997}", "n": i} for i in range(60_000)],
    "mapping": {f"k{i * 7919 % 100_003}": i for i in range(100_000)},
    "nested": [[i, [i, str(i)]] for i in range(30_000)],
}
REPEAT = "{% for i in range(1000) %}{{ X|length }}{% endfor %}"

# Each runs for many seconds unless stopped, and no other limit stops it (see `short_limit`).
LONG = {
    "loop": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "filtered-loop": "{% for i in range(100000) %}{% for j in range(100000) if j < 0 %}"
    "{% endfor %}{% endfor %}",
    "recursion": "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
    "{% endmacro %}{{ f(40) }}",
    "namespace": "{% set ns = namespace(n=0) %}{% for i in range(100000) %}"
    "{% for j in range(100000) %}{% set ns.n = ns.n + j %}{% endfor %}{% endfor %}",
    "sort": REPEAT.replace("X", "words.split()|sort"),
    "sort-attribute": REPEAT.replace("X", "items|sort(attribute='name,n', reverse=true)"),
    "dictsort": REPEAT.replace("X", "mapping|dictsort(by='value')"),
    "groupby": REPEAT.replace("X", "items|groupby('name')"),
    "unique": REPEAT.replace("X", "words|unique|list"),
    "min": REPEAT.replace("X", "words.split()|min|string"),
    "max": REPEAT.replace("X", "items|max(attribute='name')|string"),
    "map": REPEAT.replace("X", "items|map(attribute='name')|list"),
    "select": REPEAT.replace("X", "words|select('upper')|list"),
    "reject": REPEAT.replace("X", "words|reject('in', 'abc')|list"),
    "selectattr": REPEAT.replace("X", "items|selectattr('n', 'odd')|list"),
    "rejectattr": REPEAT.replace("X", "items|rejectattr('name', 'eq', 'n1')|list"),
    "batch": REPEAT.replace("X", "words|batch(3)|list"),
    "slice": REPEAT.replace("X", "words|slice(7)|list"),
    "sum": REPEAT.replace("X", "items|sum(attribute='n')|string"),
    "join": REPEAT.replace("X", "words|join(',')"),
    "list": REPEAT.replace("X", "mapping|list"),
    "urlize": REPEAT.replace("X", "words|urlize"),
    "wordwrap": REPEAT.replace("X", "words|wordwrap(20)"),
    "title": REPEAT.replace("X", "words|title"),
    "striptags": REPEAT.replace("X", "(words|replace('(', '<'))|striptags"),
    "pprint": REPEAT.replace("X", "nested|pprint"),
    "tojson": REPEAT.replace("X", "nested|tojson"),
    "string": REPEAT.replace("X", "nested|string"),
    "xmlattr": REPEAT.replace("X", "mapping|xmlattr"),
    "wordcount": REPEAT.replace("X", "(words * 3)|wordcount|string"),
    "indent": REPEAT.replace("X", "words|replace(' ', '\n')|indent(2)"),
    "split": REPEAT.replace("X", "words.split()"),
    "count": REPEAT.replace("X", "(words * 3).count('e')|string"),
    "in": REPEAT.replace("X", "((-1 in items) ~ (-1 in words.split()))"),
    "format": REPEAT.replace("X", "('{} ' * 20000).format(*(range(20000)|list))"),
    "concat": REPEAT.replace("1000", "100000").replace("X", "(words ~ words ~ words)"),
    "items": REPEAT.replace("X", "mapping|items|list"),
}


@pytest.fixture
def short_limit(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A LIMIT-second render time; the other limits out of the way, so that time is what
    stops each long render."""
    monkeypatch.setattr(
        limits,
        "LIMITS",
        limits.Limits(seconds=LIMIT, iterations=10**12, made=10**15),
    )
    yield
    assert limits.RENDERING == {}  # every render ended, none left for the watchdog


def render(source: str, **scope: Any) -> str:
    return str(Text(source, "text").evaluate(scope or SCOPE, None, []))


@pytest.mark.parametrize("source", list(LONG.values()), ids=list(LONG))
def test_every_long_render_stops_near_the_limit(source: str, short_limit: None) -> None:
    began = time.thread_time()
    with pytest.raises(RenderError, match=STOPPED):
        render(source)
    spent = time.thread_time() - began
    # Before, the time was checked only between filter calls: one urlize or sort of a text
    # within the size limits ran 1.5-3 s past the limit (urlize of 20,000 ')' 16 s).
    assert spent < LIMIT + SLACK, f"stopped after {spent:.2f} s of processor time"


def test_a_render_whose_time_ran_out_in_its_last_step_fails(short_limit: None) -> None:
    """A loop under the limit (the watchdog sees the render), then one long call into C (a
    regular expression over a text from elsewhere) after which the render makes no check: it
    fails when it ends, as the watchdog marked it meanwhile."""
    loop = "{% for i in range(300) %}{% for j in range(500) %}{% endfor %}{% endfor %}"
    source = loop + "{{ big|wordcount }}"
    # The last step must outlast the limit on any machine: the text doubles until it does (a
    # quiet machine counted 6M characters in 0.38 s, a loaded one in over 1 s).
    big = "a " * 1_500_000
    limit, limits.LIMITS = limits.LIMITS, limits.Limits(seconds=60)
    try:
        while True:
            began = time.thread_time()
            render("{{ big|wordcount }}", big=big)
            alone = time.thread_time() - began
            if alone > LIMIT + 0.3 or len(big) > 200_000_000:
                break
            big += big
    finally:
        limits.LIMITS = limit
    assert alone > LIMIT + 0.1, f"the last step took only {alone:.2f} s: make it larger"
    with pytest.raises(RenderError, match=STOPPED):
        render(source, big=big)


def test_the_end_check_makes_a_marked_render_fail(short_limit: None) -> None:
    budget = limits.start_budget()
    try:
        assert limits.finish_budget(budget) is None
        budget.expired = True  # as the watchdog marks it
        with pytest.raises(limits.TimeLimitExceeded, match=r"0\.3 seconds"):
            limits.finish_budget(budget)
    finally:
        limits.end_budget(budget)


def test_garbage_collection_callbacks_never_swallow_the_stop(short_limit: None) -> None:
    """The earlier watchdog sent its exception into the rendering thread, and Python dropped it
    when it landed in a gc callback (hypothesis installs one) or a __del__: the render went
    on. The stop is now raised by the render's own checks: collections during the render
    change nothing, and nothing is ever raised in a callback."""
    dropped: list[Any] = []
    calls = [0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        calls[0] += 1
        sum(range(200))  # Python work in the callback, where an async exception would land

    class Cycle:
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            sum(range(50))

    previous_hook, previous_threshold = sys.unraisablehook, gc.get_threshold()
    sys.unraisablehook = dropped.append
    gc.callbacks.append(callback)
    gc.set_threshold(100, 1000, 1000)  # young collections often, full ones rarely
    stop = threading.Event()

    def garbage() -> None:  # cycles whose __del__ runs in a collection, in the render's thread
        while not stop.is_set():
            for _ in range(100):
                Cycle()
            time.sleep(0.001)

    maker = threading.Thread(target=garbage)
    maker.start()
    try:
        for _ in range(3):
            with pytest.raises(RenderError, match=STOPPED):
                render(LONG["sort"])
    finally:
        stop.set()
        maker.join()
        gc.callbacks.remove(callback)
        gc.set_threshold(*previous_threshold)
        sys.unraisablehook = previous_hook
    assert calls[0] > 10, "no collection ran during the renders"
    assert dropped == []


def _hog(stop: threading.Event) -> None:
    """Hold the GIL ~60 ms at a time (a C loop cannot be made to let go), as a busy process
    would: the render waits between its turns, its wall clock runs on, its thread's does not
    (it runs ~5 ms, the switch interval, between two of these)."""
    while not stop.is_set():
        sum(range(3_000_000))


def test_a_busy_process_neither_stops_a_template_early_nor_lets_one_run(
    short_limit: None,
) -> None:
    """Work well under the limit, slowed past it in wall time by other threads, finishes (a
    wall-clock limit stopped it); a long render among the same threads still stops."""
    # Work of a quarter to a half of the limit on this machine: the loop doubles until then.
    items = 1000
    while True:
        work = f"{{% for i in range({items}) %}}{{{{ i ~ 'x' }}}}{{% endfor %}}"
        began = time.thread_time()
        render(work)
        alone = time.thread_time() - began
        if alone >= LIMIT / 4:
            break
        items *= 2
    assert alone < LIMIT / 2, f"the work itself took {alone:.2f} s: make it smaller"
    stop = threading.Event()
    hogs = [threading.Thread(target=_hog, args=(stop,)) for _ in range(2)]
    for t in hogs:
        t.start()
    try:
        started = time.monotonic()
        assert render(work).endswith(f"{items - 1}x")
        slowed = time.monotonic() - started
        with pytest.raises(RenderError, match=STOPPED):
            render(LONG["urlize"])
    finally:
        stop.set()
        for t in hogs:
            t.join()
    assert slowed > LIMIT, f"the render took {slowed:.2f} s: the hogs did not slow it"


def test_renders_at_the_limit_end_one_way_or_the_other_in_every_thread(
    short_limit: None,
) -> None:
    """Renders ending around the limit, in two threads at once: each finishes or fails with
    the time limit named; no thread sees any other exception, then or later, and a render
    after them with time to spare finishes."""
    outcomes: list[str] = []
    problems: list[BaseException] = []

    def looped(size: int) -> str:
        source = "{% for i in range(" + str(size) + ") %}{% for j in range(100) %}"
        return source + "{% endfor %}{% endfor %}{{ 'done' }}"

    # Sizes from a third of the limit to three times it, measured on this machine (a fixed
    # list stopped every render on a machine twice as slow, and finished every one on a fast
    # one): the smallest always finishes, the largest is always stopped.
    took = []
    for _ in range(3):
        began = time.thread_time()
        assert render(looped(1000)) == "done"
        took.append(time.thread_time() - began)
    per_item = min(took) / 1000
    sizes = [max(1, int(LIMIT * share / per_item)) for share in (0.3, 0.7, 1.0, 1.4, 3.0)]

    def renders(offset: int) -> None:
        try:
            for n in range(len(sizes)):
                size = sizes[(n + offset) % len(sizes)]
                try:
                    outcomes.append(render(looped(size)))
                except RenderError as exc:
                    assert "processor time" in str(exc), exc
                    outcomes.append("stopped")
                spin = time.monotonic()
                while time.monotonic() - spin < 0.05:  # anything stray would land here
                    sum(range(100))
        except BaseException as exc:  # any exception at all is the failure
            problems.append(exc)

    threads = [threading.Thread(target=renders, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []
    assert len(outcomes) == 10 and "stopped" in outcomes and "done" in outcomes
    assert render("{% for i in range(100) %}{{ i % 7 }}{% endfor %}").endswith("1")


def test_each_thread_has_its_own_limit(short_limit: None) -> None:
    """A render that runs on in one thread is stopped; short renders in another finish."""
    failed: list[str] = []

    def long() -> None:
        try:
            render(LONG["sort"])
        except RenderError as exc:
            failed.append(str(exc))

    runner = threading.Thread(target=long)
    runner.start()
    short = 0
    while runner.is_alive():
        assert render("{{ 'a' ~ 'b' }}") == "ab"
        short += 1
    runner.join()
    assert short > 10 and len(failed) == 1 and "processor time" in failed[0]


# --- work that grows faster than its value is refused before it runs ------------------------
@pytest.mark.parametrize(
    "source",
    [
        "{{ (')' * 20000 ~ 'a.')|urlize }}",  # Jinja's trailing-punctuation search: 16 s
        "{{ ('a' ~ '(' * 100 ~ 'b' ~ ')' * 20000)|urlize }}",  # balancing, one ')' at a time
        "{{ ((')' * 1000 ~ 'a. ') * 1000)|urlize }}",  # many shorter runs
        "{{ ('x.' ~ '>' * 3000 ~ 'y.')|urlize }}",  # '>' escaped to '&gt;'
    ],
)
def test_quadratic_urlize_is_refused_at_once(source: str) -> None:
    began = time.thread_time()
    with pytest.raises(RenderError, match="urlize of this text would take too long"):
        render(source)
    assert time.thread_time() - began < 1


def test_a_sort_too_large_to_keep_is_refused_before_sorting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A list from elsewhere (a fetched JSON) may be larger than any list a template makes: its
    sorted copy would be refused after sorting; it is refused before. (A size limit of 200,000
    here: the same check, ten times less work.)"""
    monkeypatch.setattr(limits, "LIMITS", limits.Limits(size=200_000))
    big = [f"w{i * 7919 % 100_003}" for i in range(110_000)]
    original = stepped_filters.stepped
    keyed: list[int] = []

    def counted(items: Any) -> Iterator[Any]:
        keyed.append(1)
        return original(items)

    monkeypatch.setattr(stepped_filters, "stepped", counted)
    for source in ("{{ big|sort|length }}", "{{ big|groupby('0')|length }}"):
        with pytest.raises(RenderError, match="the sorted list would be 220,001 units"):
            render(source, big=big)
    assert len(keyed) == 2  # the list read, no key computed
    empty = [""] * 110_000  # texts that count nothing: a sorted copy fits
    assert render("{{ e|sort|length }}", e=empty) == "110000"


# --- the stepped filters give Jinja's results -----------------------------------------------
JINJA = SandboxedEnvironment()
VALUES: dict[str, Any] = {
    "texts": ["b", "A", "a", "B", "c", "", "a", "C", "b"] * 3,
    "numbers": [3, 1, 2, 3, -1, 0, 2, 1.5, 1],
    "people": [
        {"name": n, "age": a, "city": c}
        for n, a, c in [
            ("Ann", 30, "NY"),
            ("bob", 25, "ca"),
            ("Cid", 30, "CA"),
            ("dee", 41, "ny"),
            ("Eve", 25, "LA"),
            ("fay", 30, "NY"),
        ]
        * 2
    ],
    "mapping": {"b": 2, "A": 3, "a": 1, "C": 0, "c": 5},
    "text": "See www.example.com, (http://a.b/c) and mail x@y.org.\nAlso <b>bold</b> "
    "https://ex.com/path?q=1... and (www.p.com)). mailto:a@b.co ok",
}
SAME = [
    "texts|sort",
    "texts|sort(reverse=true)",
    "texts|sort(case_sensitive=true)",
    "texts|sort(true, true)",
    "numbers|sort",
    "numbers|sort(reverse=true)",
    "people|sort(attribute='age')",
    "people|sort(attribute='age,name', reverse=true)",
    "people|sort(attribute='city', case_sensitive=true)",
    "mapping|dictsort",
    "mapping|dictsort(true)",
    "mapping|dictsort(false, 'value')",
    "mapping|dictsort(reverse=true)",
    "people|groupby('city')",
    "people|groupby('city', case_sensitive=true)",
    "people|groupby('age')",
    "people|groupby('zip', default='none')",
    "texts|select|groupby(0)",
    "texts|unique|list",
    "texts|unique(true)|list",
    "people|unique(attribute='city')|list",
    "texts|min",
    "texts|max(case_sensitive=true)",
    "people|max(attribute='age')",
    "people|map(attribute='name')|list",
    "texts|map('upper')|list",
    "numbers|select('odd')|list",
    "numbers|reject('odd')|list",
    "people|selectattr('age', 'gt', 26)|list",
    "people|rejectattr('city', 'eq', 'NY')|list",
    "texts|batch(4, 'x')|list",
    "texts|slice(4, 'x')|list",
    "numbers|sum",
    "people|sum(attribute='age', start=2)",
    "texts|join('-')",
    "people|join(', ', attribute='name')",
    "mapping|list",
    "text|list",
    "text|urlize",
    "text|urlize(10, true)",
    "text|urlize(target='_blank', rel='me')",
    "text|urlize(extra_schemes=['mailto:', 'ftp:'])",
    "(text|e)|urlize",
    "'a  b\t\nc  '|urlize",
    "''|urlize",
    "42|urlize",
]


@pytest.mark.parametrize("expression", SAME)
def test_stepped_filters_give_jinjas_results(
    expression: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stepped_filters, "STEP", 2)  # many steps in these short values
    source = "{{ (" + expression + ")|string }}"
    want = JINJA.from_string(source).render(VALUES)
    got = Text(source, "text").evaluate(VALUES, None, [])
    assert got == want


@pytest.mark.parametrize(
    ("expression", "failure"),
    [
        ("mapping|dictsort(by='size')", "FilterArgumentError"),
        ("5|sort", "TypeError"),
        ("none|unique|list", "TypeError"),
        ("[1, 'a']|sort", "TypeError"),
    ],
)
def test_stepped_filters_fail_as_jinjas_do(expression: str, failure: str) -> None:
    source = "{{ " + expression + " }}"
    with pytest.raises(Exception) as jinja_failure:
        JINJA.from_string(source).render(VALUES)
    assert type(jinja_failure.value).__name__ == failure
    with pytest.raises(RenderError, match=failure):
        render(source, **VALUES)


def test_urlize_keeps_markup_as_jinja_does() -> None:
    text = Markup("<b>www.x.com</b> and www.y.com")
    source = "{{ text|urlize }}"
    assert render(source, text=text) == JINJA.from_string(source).render(text=text)


# --- the person running a tree can allow more time ------------------------------------------
SLOW_TREE = """\
genarun: 1
name: slow
nodes:
  - id: words
    kind: template
    text: "{{ 'ab cd ' * 100000 }}"
  - id: sorted
    kind: template
    text: "{% for i in range(1000) %}{{ words.split()|sort|length }}{% endfor %}"
"""


def test_the_error_names_the_place_the_limit_and_how_to_allow_more(tmp_path: Path) -> None:
    (tmp_path / "slow.yaml").write_text(SLOW_TREE)

    def genarun(seconds: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "GENARUN_TEMPLATE_SECONDS": seconds}
        return subprocess.run(
            [sys.executable, "-m", "genarun", "run", "slow.yaml"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    result = genarun("0.2")
    assert result.returncode == 1, result.stdout + result.stderr
    said = result.stdout + result.stderr
    assert (
        "slow.yaml:7 node 'sorted' failed: field 'text': template limit: the template ran for "
        "more than 0.2 seconds of processor time, the limit of one render (set "
        "GENARUN_TEMPLATE_SECONDS to allow more)"
    ) in said
    assert "Traceback" not in said
    result = genarun("soon")
    said = result.stdout + result.stderr
    assert "GENARUN_TEMPLATE_SECONDS='soon' is not a number of seconds above 0" in said
