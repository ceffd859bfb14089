"""What a node kind is, and what its run function receives.

A kind is a pydantic model of its fields (a `NodeBase` subclass) plus a run function. Run
functions either return their output, or are generators that `yield` effects
(`genarun.nodes.effects`: `Invoke` a model, `Call` the outside world, `Compute` CPU work, `Wait`
for an answer; one, or a list of them) and receive the results: the executor gathers the
invocations of many executions and sends them to a model in batches, and runs calls and CPU
work on pools of their own.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import yaml

from genarun.bounded_yaml import YamlBoundsError, load_bounded_yaml
from genarun.nodes.context import ExecutionContext
from genarun.tree.schema import NodeBase

if TYPE_CHECKING:
    from pathlib import Path

    from genarun.nodes.effects import Call, Compute, Effect, Invoke, Wait
    from genarun.nodes.hooks import Adoption, FieldProblem, ModelRef


class SkipExecution(Exception):
    """Raised by a run function that decides not to produce an output (a human step whose
    timeout passed with `on_timeout: skip`): the execution is recorded `skipped` with this
    message, and its subtree does not run, as with a false `when`."""


@dataclass(frozen=True)
class NodeKind:
    """A registered node kind."""

    name: str
    params: type[NodeBase]
    run: Callable[..., Any]
    description: str
    output: str
    # The model task the node's `model` field must support, checked before anything runs.
    model_task: str | None = None
    # Fields compiled as something other than templates (the kind handles them itself).
    raw_fields: frozenset[str] = frozenset()
    # Fields whose value is another node's id (persistence's `of`): checked at compile time,
    # and naming a node that is not an ancestor adds a dependency edge (it finishes first).
    node_fields: frozenset[str] = frozenset()
    # Fields that name what a search looks in (retrieve's `from`): `documents` and node ids
    # that embed their outputs; see genarun.retrieval.sources for their dependency rules.
    source_fields: frozenset[str] = frozenset()
    # Other models the node uses, for checks before the run (nodes/hooks.py):
    # model_refs(*, node, scope) -> [ModelRef].
    model_refs: Callable[..., list[ModelRef]] | None = None
    # Checks that need the resolved models (e.g. a cycle's types around its network), before
    # the run: check(*, node, scope, resolve) -> [FieldProblem]; resolve(ref) -> ModelSpec.
    check: Callable[..., list[FieldProblem]] | None = None
    # Whether `genarun run` may reuse an identical stored execution (the content-addressed
    # cache). False for kinds whose output depends on more than their rendered parameters,
    # model and seed: the outside world (fetch), a person (human), or the store (retrieve).
    cacheable: bool = True
    # A kind that keeps rows outside the executions table (a cycle's trajectory, steps and
    # embeddings) copies them when another run reuses its output, so that run owns everything
    # its output points at: adopt(Adoption) -> the output pointing at the copies.
    adopt: Callable[[Adoption], Any] | None = None
    # The type of the node's output, known from its fields before the run ("text", "image",
    # "list", "object"; None: known only when it runs), for the type checks of
    # genarun.graph.value_types: spec -> type.
    output_type: Callable[[Any], str | None] | None = None
    # The keys of the node's output when known from its fields to be an object with fixed keys
    # (generate's `schema:`), for the checks of genarun.graph.output_fields; None: not known.
    # (spec, tree folder) -> keys.
    output_fields: Callable[[Any, Path], frozenset[str] | None] | None = None
    # The extra of `pip install genarun[...]` whose libraries the kind imports, and which of
    # them (None: all the extra's); a tree using the kind without them is refused at validation.
    extra: str | None = None
    extra_modules: tuple[str, ...] | None = None


RunOutput = Any | Generator["Effect | list[Effect]", Any, Any]

# Re-exported: kinds import what they need from here. The effects and hooks load when a kind
# first asks (module __getattr__): a run of template nodes never needs them, and their frozen
# dataclasses cost a fresh process about 10 ms to create (issue 18 item 4).
_LAZY = {
    **dict.fromkeys(("Call", "Compute", "Effect", "Invoke", "Wait"), "genarun.nodes.effects"),
    **dict.fromkeys(("Adoption", "FieldProblem", "ModelRef"), "genarun.nodes.hooks"),
}


if not TYPE_CHECKING:  # mypy sees the imports above (and no catch-all attribute)

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # found directly from now on
        return value


__all__ = [
    "Adoption",
    "Call",
    "Compute",
    "Effect",
    "ExecutionContext",
    "FieldProblem",
    "Invoke",
    "ModelRef",
    "Wait",
]


def ceiling_message(max_tokens: Any) -> str:
    """The warning for a text a model stopped at its token ceiling instead of ending it."""
    return (
        f"the text was cut at the token ceiling (max_tokens {max_tokens}, or the model's "
        "position table) instead of ending by itself: raise max_tokens for the whole text"
    )


ParseMode = Literal["text", "json", "lines", "yaml"]
# The output type each parse mode gives, when known before the run (json/yaml: any value).
PARSED_TYPES: dict[str, str | None] = {"text": "text", "lines": "list", "json": None, "yaml": None}


@dataclass
class ParseError(ValueError):
    mode: str
    detail: str
    text: str = ""  # the unparsed text: the executor keeps it with the failed execution
    hint: str | None = None

    def __str__(self) -> str:
        message = f"output is not valid {self.mode}: {self.detail}"
        return f"{message} ({self.hint})" if self.hint else message


# How to fix a model answer that `parse:` cannot read.
MODEL_FORMAT_HINT = (
    "ask for only {mode} in the prompt, with an example; use a model that follows the format; "
    "or write parse: text and read the text in a template"
)


def parse_output(text: str, mode: ParseMode, *, hint: str | None = None) -> Any:
    """Turn a model's or template's text into a value as `parse:` asks; a ParseError carries
    the text and `hint` (how to fix it)."""
    try:
        return _parse(text, mode)
    except ParseError as exc:
        exc.text, exc.hint = text, hint
        raise


def _parse(text: str, mode: ParseMode) -> Any:
    if mode == "text":
        # A plain str: templates see plain data only, and the template sandbox refuses the
        # methods of a str subclass (a model's GeneratedText) that it does not know.
        return str(text)
    if mode == "lines":
        return [line.strip() for line in text.splitlines() if line.strip()]
    if mode == "json":
        body = _strip_code_fence(text)
        try:
            return json.loads(body)
        except json.JSONDecodeError as exc:
            # Models often wrap JSON in prose: take the first JSON array or object in it.
            for opener, closer in (("[", "]"), ("{", "}")):
                start, end = body.find(opener), body.rfind(closer)
                if 0 <= start < end:
                    try:
                        return json.loads(body[start : end + 1])
                    except (json.JSONDecodeError, RecursionError):
                        continue
            raise ParseError("JSON", f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
        except RecursionError:
            raise ParseError("JSON", "nested too deeply") from None
    if mode == "yaml":
        try:
            return load_bounded_yaml(_strip_code_fence(text))
        except yaml.YAMLError as exc:
            raise ParseError("YAML", str(exc).splitlines()[0]) from None
        except YamlBoundsError as exc:
            raise ParseError("YAML", f"refused: {exc}") from None
    raise ValueError(f"unknown parse mode {mode}")


def _strip_code_fence(text: str) -> str:
    stripped = text.strip()
    if stripped.startswith("```"):
        lines = stripped.splitlines()[1:]
        if lines and lines[-1].strip().startswith("```"):
            lines = lines[:-1]
        return "\n".join(lines)
    return stripped
