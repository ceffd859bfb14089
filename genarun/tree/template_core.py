"""Tree field values compiled for execution, without Jinja: literals, random picks, containers,
the errors templates raise, and the dispatch to Jinja (genarun/tree/templates.py) for the
strings that have Jinja syntax.

A string without `{{`, `{%` or `{#` (the only syntax the sandbox's lexer reads: no line
statements or line comments are configured, genarun/tree/sandbox.py) is its own rendering:
Jinja would parse it into one piece of text, with no names, filters or constants to check, and
render it unchanged. So a tree whose strings have no Jinja syntax never imports jinja2 or builds
the sandbox (about 0.1 s of a one-node run); its picks are drawn here as templates.py draws
them. The sandbox's security model is untouched: nothing here evaluates anything.
"""

from __future__ import annotations

import _random
import functools
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar

from genarun.tree.picks import PickRecord, PickSyntaxError, parse_picks
from genarun.tree.picks import Template as PickTemplate

T = TypeVar("T")

# What the sandbox's lexer reads as Jinja (variable, block and comment starts; the `-` and `+`
# whitespace-control forms begin with these too).
JINJA_MARKERS = ("{{", "{%", "{#")


def has_jinja(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


class TemplateProblem(ValueError):
    """A template that cannot be parsed; `compile_tree` turns it into a located Problem."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class RenderError(RuntimeError):
    """A template that failed while rendering (an error in the node's execution)."""


def label(where: str) -> str:
    """How errors name a field: `field 'prompt'`, `vars.topic`, `--set topic`, `when`."""
    if not where or where in ("when", "foreach") or where.startswith(("vars.", "--set ")):
        return where
    return f"field '{where}'"


def readable(parse: Callable[[str], T]) -> Callable[[str], T]:
    """Jinja parses and compiles recursively and reads numbers with int(): a template that
    nests too deeply, or holds a number past Python's digit limit, is a TemplateProblem."""

    @functools.wraps(parse)
    def wrapper(source: str) -> T:
        try:
            return parse(source)
        except RecursionError:
            raise TemplateProblem(
                "the template nests too deeply to read (brackets, operators or filters "
                "inside one another)",
                "split it into several vars",
            ) from None
        except TemplateProblem:
            raise
        except ValueError as exc:
            if "digits" not in str(exc):
                raise
            raise TemplateProblem(
                "a number in the template has too many digits (Python reads at most 4300)"
            ) from None

    return wrapper


@dataclass(frozen=True)
class Rendered:
    """A rendered field: its value and the random picks made to render it."""

    value: Any
    picks: list[PickRecord] = field(default_factory=list)


class Compiled(ABC):
    """A field value compiled once at compile time and evaluated per execution."""

    names: frozenset[str] = frozenset()
    dynamic = True

    @abstractmethod
    def evaluate(
        self, scope: Mapping[str, Any], rng: random.Random | None, picks: list[PickRecord]
    ) -> Any:
        """The value in `scope`, drawing random picks from `rng` and recording them."""


class Literal(Compiled):
    dynamic = False

    def __init__(self, value: Any):
        self.value = value

    def evaluate(
        self, scope: Mapping[str, Any], rng: random.Random | None, picks: list[PickRecord]
    ) -> Any:
        return self.value


@lru_cache(maxsize=4096)
@readable
def parse_pick_text(source: str) -> PickTemplate:
    """The random picks of a string template, parsed once per distinct source (generated trees
    repeat them); the result is immutable."""
    try:
        return parse_picks(source)
    except PickSyntaxError as exc:
        raise TemplateProblem(f"random pick syntax at character {exc.position}: {exc}") from None


class PickText(Compiled):
    """A string with random picks or escapes and no Jinja: the text the picks draw. (templates.Text
    is this with Jinja rendered after the picks.)"""

    def __init__(self, source: str, where: str = ""):
        self.source = source
        self.label = label(where)
        self._picks = parse_pick_text(source)
        self._static = None if self._picks.has_picks else self._picks.render(random.Random(0))[0]

    def evaluate(
        self, scope: Mapping[str, Any], rng: random.Random | None, picks: list[PickRecord]
    ) -> Any:
        if self._static is not None:
            return self._static
        text, drawn = self._picks.render(rng or random.Random())  # also resolves \[ \] \|
        picks.extend(drawn)
        return text


class Container(Compiled):
    """A dict or list whose string leaves are templates."""

    def __init__(self, value: dict[str, Any] | list[Any], where: str):
        if isinstance(value, dict):
            self._items: Any = {k: compile_value(v, f"{where}.{k}") for k, v in value.items()}
            children = list(self._items.values())
        else:
            self._items = [compile_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
            children = self._items
        self.names = frozenset().union(*(c.names for c in children)) if children else frozenset()
        self.dynamic = any(c.dynamic for c in children)
        self._literal = None if self.dynamic else value

    def evaluate(
        self, scope: Mapping[str, Any], rng: random.Random | None, picks: list[PickRecord]
    ) -> Any:
        if self._literal is not None:
            return self._literal
        if isinstance(self._items, dict):
            return {k: c.evaluate(scope, rng, picks) for k, c in self._items.items()}
        return [c.evaluate(scope, rng, picks) for c in self._items]


def compile_value(value: Any, where: str = "") -> Compiled:
    """Compile a field value: strings become templates, containers are walked. `where` (the
    field: `prompt`, `vars.topic`) names the field in run-time errors."""
    if isinstance(value, str):
        if not any(marker in value for marker in ("{{", "{%", "{#", "[", "\\")):
            return Literal(value)
        if not has_jinja(value):
            return PickText(value, where)
        from genarun.tree.templates import Text

        return Text(value, where)
    if isinstance(value, dict | list):
        return Container(value, where)
    return Literal(value)


def compile_expression(value: Any, where: str = "") -> Compiled:
    """Compile an expression field (`when`, `foreach`): bare Jinja, a template, or a literal.
    `where` names the field in run-time errors."""
    if isinstance(value, str):
        from genarun.tree.templates import Expression, Text

        if "{{" in value or "{%" in value:
            return Text(value, where)
        return Expression(value, where)
    if isinstance(value, list | dict):
        return Container(value, "")
    return Literal(value)


try:  # the SHA-512 that random.Random.seed uses (CPython's own, cheaper to start than OpenSSL's)
    from _sha512 import sha512 as _sha512
except ImportError:  # pragma: no cover - a Python built without it
    from hashlib import sha512 as _sha512


class _LazyRandom(random.Random):
    """Seeds itself on first draw: most fields have no picks, and seeding costs ~40 us."""

    def __init__(self, key: str):
        self._key = key

    def random(self) -> float:
        # What `self.seed(self._key)` does with a str (version 2), without its type checks;
        # then the C method serves every later draw straight from the instance.
        key = self._key.encode()
        _random.Random.seed(self, int.from_bytes(key + _sha512(key).digest(), "big"))
        self.gauss_next = None
        draw: Callable[[], float] = _random.Random.random.__get__(self)
        self.random = draw  # type: ignore[method-assign]
        return draw()


def field_rng(seed: int, field_name: str) -> random.Random:
    """The pick rng of one field of one execution."""
    return _LazyRandom(f"{seed}:{field_name}")


def attributes_read(compiled: Compiled, name: str) -> frozenset[str]:
    """The attributes of variable `name` that a compiled value reads: {'id'} for
    `{{ run.id }}`, '*' where it uses the whole value (`{{ run }}`, `run[key]`)."""
    if name not in compiled.names:  # literals and pick texts read no names
        return frozenset()
    if isinstance(compiled, Container):
        children = (
            compiled._items.values() if isinstance(compiled._items, dict) else compiled._items
        )
        return frozenset().union(*(attributes_read(c, name) for c in children))
    from genarun.tree.templates import jinja_attributes_read

    return jinja_attributes_read(compiled, name)
