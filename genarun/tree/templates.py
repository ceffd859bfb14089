"""Jinja2 templates and expressions in tree fields, with random picks (template_core.py has
the Jinja-free part: literals, picks-only text, containers, and the dispatch here).

Every string field is a template rendered in a sandboxed environment with strict undefined
names. A field that is one expression (`"{{ plan }}"`) keeps its value's type. Random picks
(`[a | b]`) are drawn first, from an rng seeded by the execution seed and the field's name, so
adding a field or a node never changes another's picks.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import Template, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.runtime import Undefined

from genarun.tree.limits import LimitExceeded, end_budget, finish_budget, start_budget
from genarun.tree.picks import PickRecord, PickSyntaxError, parse_picks
from genarun.tree.picks import Template as PickTemplate

# The Jinja-free part, re-exported: the run path imports it from template_core, so a tree
# without Jinja syntax never imports this module.
from genarun.tree.template_core import (
    Compiled,
    Container,
    Literal,
    PickText,
    Rendered,
    attributes_read,
    compile_expression,
    compile_value,
    field_rng,
)
from genarun.tree.template_env import (
    ENV,
    JINJA_GLOBALS,
    MissingValue,
    RenderError,
    TemplateProblem,
    check_constants,
    check_names,
    label,
    readable,
    refused,
    render_failure,
)

__all__ = [
    "Compiled",
    "Container",
    "Expression",
    "Literal",
    "PickText",
    "Rendered",
    "Text",
    "attributes_read",
    "compile_expression",
    "compile_value",
    "field_rng",
    "jinja_attributes_read",
    "render_jinja",
]

_MISSING = object()
_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)


def _flat_globals(template: Template) -> None:
    """Give a compiled template a plain dict of globals instead of Jinja's ChainMap over
    ENV.globals: every render copies them into its context, and copying the ChainMap cost
    more than rendering a short template. ENV.globals never change after import."""
    template.globals = dict(template.globals)


@lru_cache(maxsize=4096)
@readable
def _compile_expression(source: str) -> tuple[Any, frozenset[str]]:
    """A bare expression compiled once per distinct source: (function, names it reads)."""
    try:
        ast = ENV.parse("{{ " + source + " }}")
        check_names(ast, source)
        check_constants(ast)
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

    def __init__(self, source: str, where: str = ""):
        self.source = source.strip()
        self.label = label(where)
        # A bare name (`foreach: ideas`, the usual case) is a lookup in the scope, then in the
        # globals, as Jinja does it; compiling it to Python cost ~0.25 ms per node.
        bare = _BARE_NAME.fullmatch(self.source) and self.source not in _NOT_LOOKUPS
        self._name = self.source if bare else None
        if self._name is not None:
            self.names = frozenset({self._name}) - JINJA_GLOBALS
        else:
            self._fn, self.names = _compile_expression(self.source)

    def evaluate(
        self, scope: Mapping[str, Any], rng: random.Random | None, picks: list[PickRecord]
    ) -> Any:
        if self._name is not None:
            name = self._name
            value = scope[name] if name in scope else ENV.globals.get(name, _MISSING)
            if value is _MISSING or isinstance(value, Undefined):
                raise RenderError(f"'{self.source}' is undefined")
            return value
        prefix = f"{self.label}: " if self.label else ""
        budget = start_budget()
        try:
            try:
                value = self._fn(**scope)
                if isinstance(value, Undefined):
                    value._fail_with_undefined_error()
                finish_budget(budget)
            finally:
                end_budget(budget)  # before the messages below: they evaluate again
        except MissingValue as exc:
            raise RenderError(
                prefix + render_failure(exc, "{{ " + self.source + " }}", scope)
            ) from None
        except UndefinedError as exc:
            raise RenderError(f"{prefix}in '{{{{ {self.source} }}}}': {exc.message}") from None
        except (LimitExceeded, SecurityError) as exc:
            raise RenderError(f"{prefix}in '{{{{ {self.source} }}}}': {refused(exc)}") from None
        except Exception as exc:  # a template error is the user's, reported on the node
            raise RenderError(
                f"{prefix}in '{{{{ {self.source} }}}}': {type(exc).__name__}: {exc}"
            ) from None
        return value


class Text(Compiled):
    """A string template: picks first, then Jinja; single-expression results keep their type."""

    def __init__(self, source: str, where: str = ""):
        self.source = source
        self.label = label(where)
        self._picks, self.names = _parse_text(source)
        self._has_jinja = "{{" in source or "{%" in source or "{#" in source
        self._static = (
            None
            if (self._picks.has_picks or self._has_jinja)
            else self._picks.render(random.Random(0))[0]
        )

    def evaluate(
        self, scope: Mapping[str, Any], rng: random.Random | None, picks: list[PickRecord]
    ) -> Any:
        if self._static is not None:
            return self._static
        # Picks are drawn first (this also resolves \[ \] \| escapes); Jinja regions pass
        # through verbatim and render afterwards.
        text, drawn = self._picks.render(rng or random.Random())
        picks.extend(drawn)
        if not self._has_jinja:
            return text
        try:
            return render_jinja(text, scope)
        except RenderError as exc:
            if not self.label:
                raise
            raise RenderError(f"{self.label}: {exc}") from None


@lru_cache(maxsize=4096)
@readable
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
    check_names(ast, source)
    check_constants(ast)
    return picks, frozenset(meta.find_undeclared_variables(ast)) - JINJA_GLOBALS


# A text whose Jinja is only `{{ name }}`s: its parts (constant text, or a name to print) and
# the names; see _substitutions.
_Substitutions = tuple[tuple[tuple[str, str | None], ...], frozenset[str]]


@lru_cache(maxsize=4096)
def _compile_jinja(text: str) -> tuple[Any, Any, _Substitutions | None]:
    """Compile a rendered-picks text once: (expression fn or None, template or None, its
    substitutions when the template only prints names)."""
    match = _SINGLE_EXPRESSION.match(text)
    if match and "{{" not in match.group("expr") and "}}" not in match.group("expr"):
        try:
            fn = ENV.compile_expression(match.group("expr"), undefined_to_none=False)
        except TemplateSyntaxError:
            pass
        else:
            _flat_globals(fn._template)
            return fn, None, None
    template = ENV.from_string(text)
    _flat_globals(template)
    return None, template, _substitutions(text)


# Names Jinja's compiled code binds itself at the top level, whatever the scope holds.
_JINJA_SPECIAL_NAMES = frozenset({"self", "super", "loop", "caller", "varargs", "kwargs"})


def _substitutions(text: str) -> _Substitutions | None:
    """The parts of a template that only prints names (`Item {{ n }} of {{ topic }}`), read
    from Jinja's own parse (its newline handling included), or None for any other template.
    Jinja compiles such a template to `str(finalize(name))` per name between the constant
    texts; render_jinja does the same without Jinja's per-render context, when the scope has
    every name (else Jinja renders it: globals, undefined names and their errors)."""
    body = ENV.parse(text).body
    if len(body) != 1 or not isinstance(body[0], nodes.Output):
        return None
    parts: list[tuple[str, str | None]] = []
    for child in body[0].nodes:
        if isinstance(child, nodes.TemplateData):
            parts.append((child.data, None))
        elif (
            isinstance(child, nodes.Name)
            and child.ctx == "load"
            and child.name not in _JINJA_SPECIAL_NAMES
        ):
            parts.append(("", child.name))
        else:
            return None
    return tuple(parts), frozenset(name for _data, name in parts if name is not None)


def render_jinja(text: str, scope: Mapping[str, Any]) -> Any:
    """Render Jinja in `text` with `scope`; a single expression keeps its value's type."""
    budget = start_budget()
    try:
        try:
            expression, template, substitutions = _compile_jinja(text)
            if expression is not None:
                value = expression(**scope)
                if isinstance(value, Undefined):
                    value._fail_with_undefined_error()
            elif substitutions is not None and scope.keys() >= substitutions[1]:
                finalize: Callable[[Any], str] = ENV.finalize  # type: ignore[assignment]
                parts = substitutions[0]
                value = "".join([d if n is None else str(finalize(scope[n])) for d, n in parts])
            else:
                value = template.render(scope)
            finish_budget(budget)
            return value
        finally:
            end_budget(budget)  # before the messages below: they evaluate again
    except UndefinedError as exc:
        raise RenderError(render_failure(exc, text, scope)) from None
    except (LimitExceeded, SecurityError) as exc:
        raise RenderError(refused(exc)) from None
    except TemplateSyntaxError as exc:
        raise RenderError(f"template syntax after random picks: {exc.message}") from None
    except RenderError:
        raise
    except Exception as exc:  # errors inside user templates: report on the node
        raise RenderError(f"{type(exc).__name__}: {exc}") from None


def jinja_attributes_read(compiled: Compiled, name: str) -> frozenset[str]:
    """template_core.attributes_read of a Jinja template or expression that reads `name`."""
    source = (
        compiled.source
        if isinstance(compiled, Text)
        else "{{ " + getattr(compiled, "source", "") + " }}"
    )
    try:
        ast = ENV.parse(source)
    except TemplateSyntaxError:
        return frozenset({"*"})
    found: set[str] = set()
    stack: list[tuple[nodes.Node, nodes.Node | None]] = [(ast, None)]
    while stack:
        node, parent = stack.pop()
        if isinstance(node, nodes.Name) and node.name == name:
            if isinstance(parent, nodes.Getattr) and parent.node is node:
                found.add(parent.attr)
            elif (
                isinstance(parent, nodes.Getitem)
                and parent.node is node
                and isinstance(parent.arg, nodes.Const)
                and isinstance(parent.arg.value, str)
            ):
                found.add(parent.arg.value)
            else:
                found.add("*")
        stack.extend((child, node) for child in node.iter_child_nodes())
    return frozenset(found)
