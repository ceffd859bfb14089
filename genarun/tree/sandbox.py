"""The environment templates render in: Jinja's sandbox, closed further.

What a template may touch is an allowlist, not Jinja's blocklist: plain values (text, numbers,
lists, mappings) offer only their pure methods (`upper`, `split`, `get`, ...), an image only its
`path` and `sha256`, an embedding its `id`, `model` and `dim`; every other object (a generator,
a function, a date, a numpy number, anything a kind might put in an output) offers nothing.
Jinja's own helpers (`loop`, `namespace`, `cycler`, `joiner`, macros) keep Jinja's sandbox
rules, which already refuse `_` names such as `__globals__`.

Every operation that can make a large value is bounded (genarun/tree/limits.py): arithmetic
(`call_binop`), calls, filters, `~`, list and mapping literals, `str.format` and `%`, loop
iterations and printed output. docs/security.md says what this allows and refuses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from string import Formatter
from typing import Any, cast

from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import BlockReference, LoopContext, Macro, TemplateReference, Undefined
from jinja2.sandbox import SandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import Cycler, Joiner, Namespace
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

from genarun.tree import limits
from genarun.tree.bounded_filters import bounded_lipsum
from genarun.tree.limits import LIMITS, check_text, checked, measure
from genarun.values import EmbeddingRef, ImageRef

# --- what a template may read -------------------------------------------------------------
# fmt: off
_TEXT_METHODS = frozenset({
    "capitalize", "casefold", "center", "count", "endswith", "expandtabs", "find", "format",
    "format_map", "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit",
    "isidentifier", "islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper",
    "join", "ljust", "lower", "lstrip", "partition", "removeprefix", "removesuffix", "replace",
    "rfind", "rindex", "rjust", "rpartition", "rsplit", "rstrip", "split", "splitlines",
    "startswith", "strip", "swapcase", "title", "upper", "zfill",
})
# fmt: on
_INT = frozenset({"real", "imag", "numerator", "denominator", "bit_length"})
_ALLOWED: dict[type, frozenset[str]] = {
    str: _TEXT_METHODS,
    Markup: _TEXT_METHODS | {"striptags", "unescape"},
    int: _INT,
    bool: _INT,
    float: frozenset({"real", "imag", "is_integer"}),
    list: frozenset({"index", "count"}),
    tuple: frozenset({"index", "count"}),
    dict: frozenset({"keys", "values", "items", "get"}),
    type(None): frozenset(),
    ImageRef: frozenset({"path", "sha256"}),
    EmbeddingRef: frozenset({"id", "model", "dim"}),
}
# Jinja's own template helpers: Jinja's sandbox rules (no `_` names, no internals).
_JINJA_HELPERS = (
    LoopContext,
    Namespace,
    Cycler,
    Joiner,
    Macro,
    TemplateReference,
    BlockReference,
    Undefined,
)


def allowed_attributes(obj: Any) -> frozenset[str] | None:
    """The attributes a template may read on `obj`; None for Jinja's helpers (loop, ...)."""
    found = _ALLOWED.get(type(obj))
    if found is not None:
        return found
    if isinstance(obj, _JINJA_HELPERS):
        return None
    return frozenset()


def plain(obj: Any) -> Any:
    """A subclass of text or of a number (a model's GeneratedText, numpy's float64) is seen
    as its plain value: the subclass's own attributes are not on the allowlist, and the
    plain type's methods are what a template author expects to call."""
    if type(obj) in _ALLOWED:
        return obj
    for base in (str, float, int):
        if isinstance(obj, base):
            return base(obj)
    return obj


def _refusal(obj: Any, attribute: str) -> str:
    if attribute.startswith("_"):
        why = "names starting with '_' are never available to templates"
    elif isinstance(obj, ImageRef):
        why = "an image offers only its path (write the image itself, or .path) and .sha256"
    elif isinstance(obj, EmbeddingRef):
        why = "an embedding offers only .id, .model and .dim"
    elif type(obj) in _ALLOWED:
        why = "templates may call only the pure methods of text, numbers, lists and mappings"
    else:
        why = f"templates see plain data only, and a {type(obj).__name__} offers nothing"
    return f"'{attribute}' is refused by the template sandbox: {why}"


# --- formatting -----------------------------------------------------------------------------
class _Bounded(Formatter):
    """str.format with widths, precisions and the total length bounded; a field that is not
    there fails (Jinja's formatter would print 'Undefined')."""

    _made = 0

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        obj, first = super().get_field(field_name, args, kwargs)
        if isinstance(obj, Undefined):
            obj._fail_with_undefined_error()
        return obj, first

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion in ("r", "a", "s"):
            limits.check_str_of(value, "a formatted field")
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        limits.tick()
        limits.check_str_of(value, "a formatted field")
        self._made += limits.spec_width(format_spec) + measure(value, LIMITS.text)
        check_text(self._made, "the formatted text")
        return super().format_field(value, format_spec)


class _BoundedFormatter(_Bounded, SandboxedFormatter):
    pass


class _BoundedEscapeFormatter(_Bounded, SandboxedEscapeFormatter):
    pass


# --- the environment ------------------------------------------------------------------------
class _FormatCall:
    """`text.format` and `text.format_map` as a template calls them: bounded formatting."""

    def __init__(self, owner: str, name: str, formatter: SandboxedFormatter) -> None:
        self.owner, self.name, self.formatter = owner, name, formatter

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        if self.name == "format_map":
            if kwargs or len(args) != 1:
                raise TypeError("format_map() takes exactly one mapping")
            kwargs, args = args[0], ()
        return type(self.owner)(self.formatter.vformat(self.owner, args, kwargs))


def _finalize(value: Any) -> Any:
    """Every `{{ ... }}` printed: the printed text is bounded, and counted as output."""
    if not isinstance(value, str):
        limits.check_str_of(value, "the printed value")
        value = str(value)
    check_text(len(value), "the printed value")
    limits.add_output(len(value))
    return value


class Environment(SandboxedEnvironment):
    """Jinja's sandbox with the allowlist above and the bounds of genarun/tree/limits.py.
    An output's key wins over a dict method of the same name: `plan.items` is plan's field
    `items` (JSON outputs often have one), not dict.items."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        allowed = allowed_attributes(obj)
        if allowed is None:
            return super().is_safe_attribute(obj, attr, value)
        return attr in allowed

    def _attribute(self, obj: Any, attribute: str) -> Any:
        """obj.attribute under the allowlist; nothing is read before it is allowed."""
        if attribute.startswith("_"):
            return self.unsafe_undefined(obj, attribute)
        obj = plain(obj)
        allowed = allowed_attributes(obj)
        if allowed is None:
            return super().getattr(obj, attribute)
        if attribute in allowed:
            value = getattr(obj, attribute)
            return self.wrap_str_format(value) or value
        if hasattr(type(obj), attribute):
            return self.unsafe_undefined(obj, attribute)
        return self.undefined(obj=obj, name=attribute)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        """A refused attribute fails at once (Jinja returns an undefined value, which a
        filter chain can carry on with, ending in an error that no longer says why)."""
        raise SecurityError(_refusal(obj, attribute))

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return self._attribute(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        obj = plain(obj)
        if allowed_attributes(obj) is None or type(obj) in _ALLOWED:
            try:
                return obj[argument]
            except (TypeError, LookupError):
                pass
        if isinstance(argument, str):
            return self._attribute(obj, argument)
        return self.undefined(obj=obj, name=argument)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        limits.tick()
        limits.before_binop(operator, left, right)
        if operator == "%" and isinstance(left, str):
            return checked(left % right)
        return checked(self.binop_table[operator](left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if __obj is loop_tick or __obj is loop_output:  # once per loop iteration: kept cheap
            return __obj(*args)
        limits.tick()
        if not __self.is_safe_callable(__obj):  # Jinja's message would print the value
            raise SecurityError(
                f"a {type(__obj).__name__} cannot be called: templates call only the methods "
                "of plain values, their macros and the built-in functions"
            )
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str) and type(owner) in (str, Markup):
            args = limits.before_str_method(owner, __obj.__name__, args, kwargs)
        return checked(__context.call(__obj, *args, **kwargs))

    def is_safe_callable(self, obj: Any) -> bool:
        """What a template may call: methods of the values it may read (reached through
        the allowlist), Jinja's helpers and macros, the globals and the bounds' hooks; a
        callable that came in some other way (an object in an output) is refused."""
        if any(obj is hook for hook in _HOOKS) or isinstance(obj, _CALLABLE_HELPERS):
            return True
        if not super().is_safe_callable(obj):
            return False
        owner = getattr(obj, "__self__", None)
        if owner is not None:
            allowed = allowed_attributes(owner)
            return allowed is None or getattr(obj, "__name__", None) in allowed
        return any(obj is known for known in self.globals.values())

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Jinja's sandboxed str.format and format_map, with bounded widths and length."""
        name = getattr(value, "__name__", None)
        owner = getattr(value, "__self__", None)
        if name not in ("format", "format_map") or not isinstance(owner, str):
            return None
        formatter: SandboxedFormatter = (
            _BoundedEscapeFormatter(self, escape=owner.escape)
            if isinstance(owner, Markup)
            else _BoundedFormatter(self)
        )

        return _FormatCall(owner, name, formatter)

    def _generate(self, source: nodes.Template, *args: Any, **kwargs: Any) -> str:
        return super()._generate(_Bounder().visit(source), *args, **kwargs)


# --- the bounds woven into each compiled template -------------------------------------------
def concat(*parts: Any) -> str:
    """`a ~ b`: Jinja's str_join, with the joined length checked first."""
    limits.tick()
    total = 0
    for part in parts:
        limits.check_str_of(part, "a part of the joined text")
        total += measure(part, LIMITS.text)
    check_text(total, "the joined text")
    if any(isinstance(part, Markup) for part in parts):
        return cast(str, checked(Markup("").join(map(str, parts))))
    return cast(str, checked("".join(map(str, parts))))


def container(value: Any) -> Any:
    """A list, tuple or mapping literal: `[x, x]` nested ten deep is refused as it is made."""
    return checked(value)


_HERE = __name__


def _imported(name: str, args: list[nodes.Expr], lineno: int) -> nodes.Call:
    call = nodes.Call(nodes.ImportedName(f"{_HERE}.{name}"), args, [], None, None)
    call.set_lineno(lineno)
    return call


def _literal_size(body: list[nodes.Node]) -> int:
    """Characters of constant text a block writes, not counting nested loops and macros
    (they count their own)."""
    total = 0
    stack: list[nodes.Node] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, nodes.TemplateData):
            total += len(node.data)
        elif isinstance(node, nodes.For):
            stack.extend(node.else_)
        elif not isinstance(node, nodes.Macro | nodes.CallBlock):
            stack.extend(node.iter_child_nodes())
    return total


class _Bounder(NodeTransformer):
    """Rewrites a parsed template so that loops, macros, `~` and literals spend the render's
    budget: each loop iteration (and macro call) first calls loop_tick with the constant text
    its body writes; `a ~ b` becomes concat(a, b); `[...]`, `(...)`, `{...}` container(...)."""

    def _count_body(self, node: nodes.For | nodes.Macro | nodes.CallBlock) -> nodes.Node:
        self.generic_visit(node)
        size = nodes.Const(_literal_size(node.body))
        hook = "loop_tick"
        if isinstance(node, nodes.For) and node.test is not None:
            # A filtered loop iterates over every item, kept or not: each is counted when it
            # is tested (`{% for j in range(10**5) if j < 0 %}` inside another such loop ran
            # 10**10 iterations uncounted, stopped only by the time limit), and the body of a
            # kept one spends only its output.
            counted = _imported("loop_tick", [nodes.Const(0)], node.lineno)
            node.test = nodes.And(nodes.Not(counted), node.test).set_lineno(node.lineno)
            hook = "loop_output"
        tick = _imported(hook, [size], node.lineno)
        node.body = [nodes.ExprStmt(tick).set_lineno(node.lineno), *node.body]
        return node

    visit_For = visit_Macro = visit_CallBlock = _count_body

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _imported("concat", list(node.nodes), node.lineno)

    def _literal(self, node: nodes.List | nodes.Dict | nodes.Tuple) -> nodes.Node:
        self.generic_visit(node)
        if isinstance(node, nodes.Tuple) and node.ctx != "load":
            return node
        return _imported("container", [node], node.lineno)

    visit_List = visit_Dict = visit_Tuple = _literal


loop_tick = limits.loop_tick
loop_output = limits.loop_output
_HOOKS = (loop_tick, loop_output, concat, container)
_CALLABLE_HELPERS = (Macro, LoopContext, Joiner, BlockReference, Undefined, _FormatCall)


def check_constants(ast: nodes.Template) -> None:
    """Arithmetic on constants, checked against the limits when the tree is validated
    (`{{ 2**99999999999 }}` would otherwise fail only when the node runs)."""
    if not any(True for _ in ast.find_all(nodes.BinExpr)):
        return
    memo: dict[int, Any] = {}
    unknown = object()

    def value(node: nodes.Node) -> Any:
        if isinstance(node, nodes.Const):
            return node.value
        if not isinstance(node, nodes.BinExpr):
            return unknown
        if id(node) not in memo:
            left, right = value(node.left), value(node.right)
            result = unknown
            if left is not unknown and right is not unknown:
                limits.before_binop(node.operator, left, right)
                with contextlib.suppress(ArithmeticError, TypeError, ValueError):
                    result = checked(Environment.default_binop_table[node.operator](left, right))
            memo[id(node)] = result
        return memo[id(node)]

    for node in ast.find_all(nodes.BinExpr):
        value(node)


def make_environment(undefined: type[Undefined]) -> Environment:
    env = Environment(
        undefined=undefined, autoescape=False, keep_trailing_newline=True, finalize=_finalize
    )
    env.globals["lipsum"] = bounded_lipsum
    return env
