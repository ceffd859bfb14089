"""The template sandbox's allowlist and limits, in process; the matrix size cap through the CLI.
(tests/test_security_templates.py attacks the same through the CLI, bounded in a child.)"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from genarun.tree.template_env import RenderError
from genarun.tree.templates import Text, compile_expression
from genarun.values import EmbeddingRef, ImageRef


def render(source: str, **scope: Any) -> Any:
    return Text(source, "text").evaluate(scope, None, [])


class Gadget:
    """An object a kind might leave in an output by mistake, with a dangerous method."""

    name = "gadget"

    def delete_everything(self) -> str:
        return "deleted"

    def __call__(self) -> str:
        return "called"


@pytest.mark.parametrize(
    "source",
    [
        "{{ p.read_text() }}",
        "{{ p.parent }}",
        "{{ g.delete_everything() }}",
        "{{ g.name }}",
        "{{ g() }}",
        "{{ f() }}",
        "{{ f.__code__ }}",
        "{{ cover.root }}",
        "{{ cover.open() }}",
        "{{ (plan|map('upper')).gi_code }}",
    ],
)
def test_objects_outside_the_allowlist_offer_nothing(source: str, tmp_path: Path) -> None:
    scope = {
        "p": tmp_path / "secret.txt",
        "g": Gadget(),
        "f": lambda: "called",
        "cover": ImageRef("assets/c.png", tmp_path, "abc"),
        "plan": ["a"],
    }
    (tmp_path / "secret.txt").write_text("s3cret")
    with pytest.raises(RenderError, match=r"refused by the template sandbox|cannot be called"):
        render(source, **scope)


def test_plain_values_and_jinja_helpers_still_work(tmp_path: Path) -> None:
    cover = ImageRef("assets/c.png", tmp_path, "abc")
    vec = EmbeddingRef(7, "dummy-embed", 8)
    source = (
        "{{ cover }} {{ cover.path }} {{ cover.sha256 }} {{ vec.id }}/{{ vec.dim }} "
        "{{ plan.items }} {{ run.get('id') }} {{ 'a-b'.split('-')|join('+') }} "
        "{{ '{:>4}|{:.2f}'.format('x', 1.5) }} {{ '%03d' % 7 }} {{ '%s!'|format('hi') }} "
        "{% set ns = namespace(n=0) %}{% for x in [1, 2, 3] %}{% set ns.n = ns.n + x %}"
        "{{ loop.index }}{% endfor %} {{ ns.n }} {% set c = cycler('a', 'b') %}{{ c.next() }}"
        "{{ c.next() }} {% macro twice(s) %}{{ s ~ s }}{% endmacro %}{{ twice('ab') }} "
        "{{ 2 ** 10 }} {{ 'ab' * 3 }} {{ lipsum(1, False, 1, 3)|length > 0 }}"
    )
    text = render(source, cover=cover, vec=vec, plan={"items": 3}, run={"id": "r1"})
    assert text == (
        "assets/c.png assets/c.png abc 7/8 3 r1 a+b    x|1.50 007 hi! 123 6 ab abab 1024 "
        "ababab True"
    )
    # A single expression keeps its value's type: the image passes on to the node that takes it.
    assert render("{{ cover }}", cover=cover) is cover


@pytest.mark.parametrize(
    ("source", "phrase"),
    [
        ("{{ 'a' * n }}", "the repeated text would be 1,000,000,000 characters"),
        ("{{ 7 ** n }}", "bits, over the limit of 4,096 bits"),
        ("{{ 'x'|center(n) }}", "the centered text would be 1,000,000,000 characters"),
        ("{{ '{:>{}}'.format('x', n) }}", "the formatted text"),
        ("{{ lipsum(n) }}", "lipsum of 1,000,000,000 is over the limit of 100,000"),
        (
            "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
            "iterations",
        ),
        (  # the items a loop's filter drops are iterations too
            "{% for i in range(99999) %}{% for j in range(99999) if j < 0 %}{% endfor %}"
            "{% endfor %}",
            "iterations",
        ),
    ],
)
def test_limits_fail_fast_with_the_limit_named(
    source: str, phrase: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from genarun.tree import limits

    # A million empty iterations can outlast the 5 s render budget on a loaded machine, and
    # then the time limit is named instead: a smaller iteration budget tests the same check.
    monkeypatch.setattr(limits, "LIMITS", limits.Limits(iterations=20_000, seconds=60.0))
    # Processor time (this process's): a busy machine's other processes take wall time only.
    started = time.process_time()
    with pytest.raises(RenderError, match="template limit") as failure:
        render(source, n=10**9)
    assert phrase in str(failure.value)
    assert time.process_time() - started < 10


def test_a_kept_item_of_a_filtered_loop_is_one_iteration(monkeypatch: pytest.MonkeyPatch) -> None:
    from genarun.tree import limits

    monkeypatch.setattr(limits, "LIMITS", limits.Limits(iterations=20_000, seconds=60.0))
    kept = "{% for j in range(15000) if j >= 0 %}{% endfor %}{% for j in range(10) if j is odd %}{{ j }}.{% endfor %}"
    assert render(kept) == "1.3.5.7.9."
    with pytest.raises(RenderError, match="iterations"):
        render("{% for j in range(20001) if j >= 0 %}{% endfor %}")


def test_constant_arithmetic_is_checked_when_compiled() -> None:
    from genarun.tree.template_env import TemplateProblem

    started = time.process_time()
    with pytest.raises(TemplateProblem, match="template limit: 2 \\*\\* 99999999999 would be"):
        compile_expression("{{ 2**99999999999 > 1 }}", "when")
    with pytest.raises(TemplateProblem, match="template limit"):
        compile_expression("(10**9 * 'a')|list", "foreach")
    assert time.process_time() - started < 5


HUGE_WHEN = """\
genarun: 1
name: huge
nodes:
  - id: a
    kind: template
    when: "{{ 2**99999999999 > 1 }}"
    text: hi
"""

MATRIX = """\
genarun: 1
name: wide
matrix:
  a: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
  b: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
  c: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
  d: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
  e: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
  f: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
  g: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
nodes:
  - id: x
    kind: template
    text: "{{ a }}{{ b }}"
"""


def test_validate_refuses_constant_blowups_at_once(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    (workdir / "huge.yaml").write_text(HUGE_WHEN)
    started = time.process_time()
    result = cli("validate", "huge.yaml")
    assert time.process_time() - started < 10
    assert result.exit_code == 2, result.output
    assert "huge.yaml:6 node 'a': when: template limit: 2 ** 99999999999" in result.output
    assert "Traceback" not in result.output


def test_a_huge_matrix_is_refused_before_it_is_expanded(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    (workdir / "wide.yaml").write_text(MATRIX)
    for command in ("validate", "run"):
        started = time.process_time()
        result = cli(command, "wide.yaml")
        assert time.process_time() - started < 10
        assert result.exit_code == 2, result.output
        assert "wide.yaml:3: matrix: 10 a x 10 b x 10 c x 10 d x 10 e x 10 f x 10 g make " in (
            result.output
        )
        assert "10,000,000 runs, over the limit of 10,000" in result.output
        assert "--max-runs 10000000" in result.output
    assert not (workdir / "wide").exists() and not (workdir / "genarun.db").exists()
    # Fixing keys brings it under the limit; --max-runs is for those who mean it.
    fixed = [f"--set={k}=1" for k in "cdefg"]
    result = cli("run", "wide.yaml", *fixed, "--max-runs", "99", "--dry-run")
    assert result.exit_code == 2 and "100 runs, over the limit of 99" in result.output
    result = cli("run", "wide.yaml", *fixed, "--max-runs", "100", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "100 runs" in result.output


def test_the_cli_default_is_the_compilers() -> None:
    from genarun.cli.core import _MAX_RUNS
    from genarun.graph.matrix import MAX_RUNS

    assert _MAX_RUNS == MAX_RUNS


@pytest.mark.parametrize("digits", [1300, 5000])
def test_set_refuses_numbers_past_the_integer_limit(
    digits: int, workdir: Path, cli: Callable[..., Result]
) -> None:
    (workdir / "t.yaml").write_text(
        "genarun: 1\nname: t\nvars:\n  n: 3\nnodes:\n  - id: x\n    kind: template\n"
        "    text: '{{ n * 2 }}'\n"
    )
    result = cli("run", "t.yaml", "--set", "n=" + "9" * digits)
    assert result.exit_code == 2, result.output
    assert f"--set n: a whole number of {digits:,} digits is over the limit" in result.output
    assert cli("run", "t.yaml", "--set", "n=" + "9" * 1000).exit_code == 0


def test_a_list_of_images_prints_as_their_paths(tmp_path: Path) -> None:
    covers = [ImageRef(f"assets/c-{i}.png", tmp_path / "secret-home", "abc") for i in range(2)]
    for source in ("= {{ covers }}", "= {{ covers|pprint }}", "= {{ '{!r}'.format(covers) }}"):
        text = render(source, covers=covers)
        assert text == "= ['assets/c-0.png', 'assets/c-1.png']", source


def test_subclasses_of_text_and_numbers_read_as_plain_values() -> None:
    """A model's text (GeneratedText) and numpy's numbers offer the plain type's methods,
    and nothing of their own."""
    import numpy as np

    from genarun.models.base import GeneratedText

    caption = GeneratedText("a lizard\non a rock", hit_limit=True)
    assert render("{{ c.upper() }}|{{ c.splitlines()|length }}|{{ c[0] }}", c=caption) == (
        "A LIZARD\nON A ROCK|2|a"
    )
    assert render("{{ x.is_integer() }}", x=np.float64(2.0)) is True
    with pytest.raises(RenderError, match="hit_limit"):
        render("{{ c.hit_limit }}", c=caption)
