"""Jinja2 templates and expressions in tree fields, with random picks.

Every string field is a template rendered in a sandboxed environment with strict undefined
names. A field that is one expression (`"{{ plan }}"`) keeps its value's type. Random picks
(`[a | b]`) are drawn first, from an rng seeded by the execution seed and the field's name, so
adding a field or a node never changes another's picks.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta
from jinja2.exceptions import UndefinedError
from jinja2.runtime import Undefined
from jinja2.sandbox import SandboxedEnvironment

from genarun.tree.picks import PickRecord, PickSyntaxError, parse_picks
from genarun.tree.picks import Template as PickTemplate


def _json_filter(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent, default=str)


ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
ENV.filters["json"] = _json_filter
JINJA_GLOBALS = frozenset(ENV.globals)

_MISSING = object()
_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)


class TemplateProblem(ValueError):
    """A template that cannot be parsed; `compile_tree` turns it into a located Problem."""


class RenderError(RuntimeError):
    """A template that failed while rendering (an error in the node's execution)."""


@dataclass(frozen=True)
class Rendered:
    value: Any
    picks: list[PickRecord] = field(default_factory=list)


class Compiled:
    """A field value compiled once at compile time and evaluated per execution."""

    names: frozenset[str] = frozenset()
    dynamic = True

    def evaluate(self, scope: Mapping[str, Any], rng: random.Random | None, picks: list[PickRecord]) -> Any:
        raise NotImplementedError  # pragma: no cover - abstract


class Literal(Compiled):
    dynamic = False

    def __init__(self, value: Any):
        self.value = value

    def evaluate(self, scope: Mapping[str, Any], rng: random.Random | None, picks: list[PickRecord]) -> Any:
        return self.value


def _flat_globals(template: Template) -> None:
    """Give a compiled template a plain dict of globals instead of Jinja's ChainMap over
    ENV.globals: every render copies them into its context, and copying the ChainMap cost
    more than rendering a short template. ENV.globals never change after import."""
    template.globals = dict(template.globals)


@lru_cache(maxsize=4096)
def _compile_expression(source: str) -> tuple[Any, frozenset[str]]:
    """A bare expression compiled once per distinct source: (function, names it reads)."""
    try:
        ast = ENV.parse("{{ " + source + " }}")
        fn = ENV.compile_expression(source, undefined_to_none=False)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"invalid expression '{source}': {exc.message}") from None
    _flat_globals(fn._template)
    return fn, frozenset(meta.find_undeclared_variables(ast)) - JINJA_GLOBALS


# A bare name, and the words Jinja's parser does not read as a name lookup.
_BARE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NOT_LOOKUPS = frozenset(
    {"true", "false", "True", "False", "none", "None", "and", "or", "not", "in", "is", "if", "else"}
    | {"self"}
)


class Expression(Compiled):
    """A single Jinja expression; its value keeps its type (list, object, image)."""

    def __init__(self, source: str):
        self.source = source.strip()
        # A bare name (`foreach: ideas`, the usual case) is a lookup in the scope, then in the
        # globals, as Jinja does it; compiling it to Python cost ~0.25 ms per node.
        bare = _BARE_NAME.fullmatch(self.source) and self.source not in _NOT_LOOKUPS
        self._name = self.source if bare else None
        if self._name is not None:
            self.names = frozenset({self._name}) - JINJA_GLOBALS
        else:
            self._fn, self.names = _compile_expression(self.source)

    def evaluate(self, scope: Mapping[str, Any], rng: random.Random | None, picks: list[PickRecord]) -> Any:
        if self._name is not None:
            name = self._name
            value = scope[name] if name in scope else ENV.globals.get(name, _MISSING)
            if value is _MISSING or isinstance(value, Undefined):
                raise RenderError(f"'{self.source}' is undefined")
            return value
        try:
            value = self._fn(**scope)
        except UndefinedError as exc:
            raise RenderError(f"in '{{{{ {self.source} }}}}': {exc.message}") from None
        except Exception as exc:  # a template error is the user's, reported on the node
            raise RenderError(f"in '{{{{ {self.source} }}}}': {type(exc).__name__}: {exc}") from None
        if isinstance(value, Undefined):
            raise RenderError(f"'{self.source}' is undefined")
        return value


class Text(Compiled):
    """A string template: picks first, then Jinja; single-expression results keep their type."""

    def __init__(self, source: str):
        self.source = source
        self._picks, self.names = _parse_text(source)
        self._has_jinja = "{{" in source or "{%" in source or "{#" in source
        self._static = None if (self._picks.has_picks or self._has_jinja) else self._picks.render(random.Random(0))[0]

    def evaluate(self, scope: Mapping[str, Any], rng: random.Random | None, picks: list[PickRecord]) -> Any:
        if self._static is not None:
            return self._static
        # Picks are drawn first (this also resolves \[ \] \| escapes); Jinja regions pass
        # through verbatim and render afterwards.
        text, drawn = self._picks.render(rng or random.Random())
        picks.extend(drawn)
        if not self._has_jinja:
            return text
        return render_jinja(text, scope)


@lru_cache(maxsize=4096)
def _parse_text(source: str) -> tuple[PickTemplate, frozenset[str]]:
    """A string template parsed once per distinct source (generated trees repeat them):
    its picks and the names its Jinja reads. Both results are immutable."""
    try:
        picks = parse_picks(source)
    except PickSyntaxError as exc:
        raise TemplateProblem(f"random pick syntax at character {exc.position}: {exc}") from None
    try:
        ast = ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(
            f"template syntax (line {exc.lineno} of the field): {exc.message}"
        ) from None
    return picks, frozenset(meta.find_undeclared_variables(ast)) - JINJA_GLOBALS


@lru_cache(maxsize=4096)
def _compile_jinja(text: str) -> tuple[Any, Any]:
    """Compile a rendered-picks text once: (expression fn or None, template or None)."""
    match = _SINGLE_EXPRESSION.match(text)
    if match and "{{" not in match.group("expr") and "}}" not in match.group("expr"):
        try:
            fn = ENV.compile_expression(match.group("expr"), undefined_to_none=False)
        except TemplateSyntaxError:
            pass
        else:
            _flat_globals(fn._template)
            return fn, None
    template = ENV.from_string(text)
    _flat_globals(template)
    return None, template


def render_jinja(text: str, scope: Mapping[str, Any]) -> Any:
    """Render Jinja in `text` with `scope`; a single expression keeps its value's type."""
    try:
        expression, template = _compile_jinja(text)
        if expression is not None:
            value = expression(**scope)
            if isinstance(value, Undefined):
                value._fail_with_undefined_error()
            return value
        return template.render(scope)
    except UndefinedError as exc:
        raise RenderError(exc.message or "undefined value") from None
    except TemplateSyntaxError as exc:
        raise RenderError(f"template syntax after random picks: {exc.message}") from None
    except RenderError:
        raise
    except Exception as exc:  # errors inside user templates: report on the node
        raise RenderError(f"{type(exc).__name__}: {exc}") from None


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

    def evaluate(self, scope: Mapping[str, Any], rng: random.Random | None, picks: list[PickRecord]) -> Any:
        if self._literal is not None:
            return self._literal
        if isinstance(self._items, dict):
            return {k: c.evaluate(scope, rng, picks) for k, c in self._items.items()}
        return [c.evaluate(scope, rng, picks) for c in self._items]


def compile_value(value: Any, where: str = "") -> Compiled:
    """Compile a field value: strings become templates, containers are walked."""
    if isinstance(value, str):
        if not any(marker in value for marker in ("{{", "{%", "{#", "[", "\\")):
            return Literal(value)
        return Text(value)
    if isinstance(value, dict | list):
        return Container(value, where)
    return Literal(value)


def compile_expression(value: Any) -> Compiled:
    """Compile an expression field (`when`, `foreach`): bare Jinja, a template, or a literal."""
    if isinstance(value, str):
        if "{{" in value or "{%" in value:
            return Text(value)
        return Expression(value)
    if isinstance(value, list | dict):
        return Container(value, "")
    return Literal(value)


class _LazyRandom(random.Random):
    """Seeds itself on first draw: most fields have no picks, and seeding costs ~40 us."""

    def __init__(self, key: str):
        self._key = key
        self._seeded = False

    def random(self) -> float:
        if not self._seeded:
            self.seed(self._key)
            self._seeded = True
        return super().random()


def field_rng(seed: int, field_name: str) -> random.Random:
    """The pick rng of one field of one execution."""
    return _LazyRandom(f"{seed}:{field_name}")
