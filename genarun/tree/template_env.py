"""The Jinja environment tree templates render in (sandboxed, strict undefined names,
genarun's filters and globals), the checks a template passes when it is read, and how a
failed render is told: which field, which lookup, what exists instead."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import UndefinedError
from jinja2.runtime import Undefined
from jinja2.utils import missing

from genarun.errors import did_you_mean
from genarun.tree import sandbox
from genarun.tree.bounded_filters import bound_filters
from genarun.tree.limits import LimitExceeded
from genarun.tree.lookups import missing_message, source_of
from genarun.tree.secrets import secret

# Jinja-free (template_core.py), re-exported: the run path imports them from there.
from genarun.tree.template_core import RenderError as RenderError
from genarun.tree.template_core import TemplateProblem as TemplateProblem
from genarun.tree.template_core import label as label
from genarun.tree.template_core import readable as readable


def _json_filter(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent, default=str)


class MissingValue(UndefinedError):
    """A failed lookup (`plan.titel`, `tags[5]`), with what was looked up: the catch site
    finds the expression that failed and says what exists instead."""

    def __init__(self, message: str, obj: Any, name: Any):
        super().__init__(message)
        self.obj, self.name = obj, name


class _Undefined(StrictUndefined):
    """StrictUndefined whose errors describe the value looked into ('plan has no key
    ...; did you mean ...'), not Jinja's bare "'dict object' has no attribute ..."."""

    __slots__ = ()

    def __init__(
        self,
        hint: str | None = None,
        obj: Any = missing,
        name: Any = None,
        exc: Any = UndefinedError,
    ):
        super().__init__(hint, obj, name, exc)
        if obj is not missing and exc is UndefinedError and hint is None:
            # Jinja calls this with the message to make the error it raises: ours names the
            # value that lacks the attribute.
            self._undefined_exception = lambda message: MissingValue(message, obj, name)  # type: ignore[assignment]

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint is None and self._undefined_obj is not missing:
            return missing_message(self._undefined_obj, self._undefined_name, None)
        return str(super()._undefined_message)


ENV = sandbox.make_environment(_Undefined)
ENV.filters["json"] = _json_filter
# A placeholder, never the value: genarun/tree/secrets.py.
ENV.globals["secret"] = secret
bound_filters(ENV)
JINJA_GLOBALS = frozenset(ENV.globals)

_MISSING = object()


def check_names(ast: nodes.Template, source: str) -> None:
    """Every filter and test a template uses must exist. Jinja itself defers the check to
    run time for those inside `{% if %}` or a conditional expression; this finds them all."""
    if "|" not in source and "is" not in source and "filter" not in source:
        return  # neither a filter nor a test (most templates; walking them costs)
    for node in ast.find_all((nodes.Filter, nodes.Test)):
        what, known = (
            ("filter", ENV.filters) if isinstance(node, nodes.Filter) else ("test", ENV.tests)
        )
        if node.name in known:
            continue
        close = did_you_mean(node.name, set(known) | set(ENV.globals))
        function = close and close.split("'")[1]
        if function in ENV.globals and function not in known:  # `x | range`, `x | rang`
            hint = f"{function} is a function, not a {what}: write {function}(...)"
        else:
            hint = close or f"known {what}s: {', '.join(sorted(known))}"
        raise TemplateProblem(f"unknown {what} '{node.name}'", hint)


def check_constants(ast: nodes.Template) -> None:
    try:
        sandbox.check_constants(ast)
    except LimitExceeded as exc:
        raise TemplateProblem(
            f"template limit: {exc}", "docs/security.md lists the limits templates run under"
        ) from None


def refused(exc: Exception) -> str:
    """A sandbox refusal or a template limit, as the node's error says it."""
    if isinstance(exc, LimitExceeded):
        return f"template limit: {exc} (docs/security.md lists the limits)"
    return str(exc)


# --- failed lookups: which expression was looked into (the message: tree/lookups.py) -------
def _lookup_subject(source: str, obj: Any, name: Any, scope: Mapping[str, Any]) -> str | None:
    """The expression in `source` whose value `obj` was looked into for `name` (`plan` for a
    failed `plan.titel`): each candidate is evaluated again and compared with `obj`; the first
    one that cannot be (a loop variable) is the fallback."""
    try:
        ast = ENV.parse(source)
    except TemplateSyntaxError:
        return None
    fallback = None
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        if isinstance(node, nodes.Getattr) and node.attr != name:
            continue
        if (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and node.arg.value != name
        ):
            continue
        base = source_of(node.node)
        if base is None:
            continue
        try:
            value = ENV.compile_expression(base, undefined_to_none=False)(**scope)
        except Exception:
            value = _MISSING
        if value is _MISSING or isinstance(value, Undefined):  # a loop variable: not in scope
            if fallback is None and (
                isinstance(node, nodes.Getattr) or isinstance(node.arg, nodes.Const)
            ):
                fallback = base
            continue
        if value is obj or (type(value) is type(obj) and value == obj):
            return base
    return fallback


def render_failure(exc: UndefinedError, source: str, scope: Mapping[str, Any]) -> str:
    if isinstance(exc, MissingValue):
        return missing_message(exc.obj, exc.name, _lookup_subject(source, exc.obj, exc.name, scope))
    return exc.message or "undefined value"
