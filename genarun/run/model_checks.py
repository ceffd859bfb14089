"""Checking every model a tree's nodes name (aliases, tasks, providers, extras) before any
weight loads or API is called."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from genarun.errors import ModelError, Problem, TreeError
from genarun.graph.compiled import CompiledNode, CompiledTree
from genarun.graph.matrix import matrix_bindings
from genarun.run.state import check_model_task
from genarun.tree.template_core import RenderError, field_rng

if TYPE_CHECKING:
    from genarun.models.base import ModelSpec


def check_models(
    compiled: CompiledTree, scope: dict[str, Any], nodes: Iterable[CompiledNode] | None = None
) -> dict[str, ModelSpec]:
    """Resolve and check every model a node names (of `nodes`; default all), before any
    weight loads or API is called; returns them by the name the tree uses (alias or
    reference)."""
    from genarun.extras import MissingExtra, missing_extra_message, missing_modules, require_extra
    from genarun.plugins import registry
    from genarun.retrieval.checks import model_refs as retrieval_model_refs
    from genarun.retrieval.checks import tree_problems as retrieval_problems

    file = str(compiled.loaded.path)
    problems, bad_aliases = _alias_problems(compiled)
    problems += retrieval_problems(compiled)
    checked: set[str] = set()
    found: dict[str, ModelSpec] = {}
    for node in compiled.nodes.values() if nodes is None else nodes:
        if node.skip_reason:
            continue
        refs = list(node.kind.model_refs(node=node, scope=scope)) if node.kind.model_refs else []
        refs += retrieval_model_refs(node)  # index: and novelty: models, on any kind
        compiled_ref = node.params.get("model")
        # A model named through outputs of other nodes is checked when the node runs.
        if (
            node.kind.model_task
            and compiled_ref is not None
            and not compiled_ref.names - set(scope)
        ):
            from genarun.nodes.hooks import ModelRef  # only for a node that names a model

            with contextlib.suppress(RenderError):
                refs.append(
                    ModelRef(
                        compiled_ref.evaluate(scope, field_rng(0, "model"), []),
                        node.kind.model_task,
                    )
                )
        refs_ok = True
        if node.kind.extra is not None:
            missing = missing_modules(node.kind.extra, node.kind.extra_modules)
            if missing:
                what = f"kind '{node.kind.name}'"
                problems.append(
                    Problem(
                        missing_extra_message(what, node.kind.extra, missing),
                        file,
                        compiled.loaded.line((*node.tree_node.loc, "kind")),
                        node.id,
                    )
                )
        for model_ref in refs:
            ref, task = model_ref.ref, model_ref.task
            line = compiled.loaded.line((*node.tree_node.loc, model_ref.field))
            if isinstance(ref, str) and ref in bad_aliases:
                refs_ok = False
                problems.append(
                    Problem(
                        f"model '{ref}': the alias defined on line {bad_aliases[ref]} names "
                        "no usable model",
                        file,
                        line,
                        node.id,
                        hint=f"fix the alias on line {bad_aliases[ref]}",
                    )
                )
                continue
            try:
                from genarun.models.catalog import resolve_model  # only for trees with models

                spec = resolve_model(ref, compiled.loaded.spec.models)
                found[spec.label()] = spec
                if task is not None:
                    check_model_task(spec, task, node.id)
                if spec.key not in checked:
                    # Read here, not up front: a tree without models never loads the providers.
                    provider = registry().providers[spec.provider]
                    if provider.extra is not None:
                        what = f"model '{spec.label()}' (provider {provider.name})"
                        require_extra(what, provider.extra, provider.modules)
                    provider.check(spec)
                    checked.add(spec.key)
            except (ModelError, MissingExtra) as exc:
                refs_ok = False
                problems.append(Problem(str(exc), file, line, node.id))
        # Checks across a node's models (a cycle's types) run once each model is known good.
        if node.kind.check is not None and refs_ok:
            from genarun.models.catalog import resolve_model

            resolve = functools.partial(resolve_model, aliases=compiled.loaded.spec.models)
            for found_problem in node.kind.check(node=node, scope=scope, resolve=resolve):
                problems.append(
                    Problem(
                        found_problem.message,
                        file,
                        compiled.loaded.line((*node.tree_node.loc, found_problem.field)),
                        node.id,
                    )
                )
    if problems:
        raise TreeError(problems)
    return found


def _alias_problems(compiled: CompiledTree) -> tuple[list[Problem], dict[str, int | None]]:
    """Aliases under `models:` that name no model, reported at the line that defines them (a
    node using one is told which line to fix); returns the problems and the bad aliases with
    that line. Weights are checked where a model is used: an unused alias may name weights
    that this machine lacks."""
    loaded = compiled.loaded
    aliases = loaded.spec.models
    if not aliases:
        return [], {}
    from genarun.models.catalog import resolve_model

    file = str(loaded.path)
    problems: list[Problem] = []
    failed: dict[str, int | None] = {}
    for alias, value in aliases.items():
        if isinstance(value, str) and value in aliases and value != alias:
            continue  # names another alias: that one is checked (and reported) itself
        line = loaded.line(("models", alias))
        try:
            resolve_model(value if isinstance(value, dict) else alias, aliases)
        except ModelError as exc:
            failed[alias] = line
            problems.append(Problem(f"model alias '{alias}': {exc}", file, line))
    bad = dict(failed)
    for alias in aliases:  # an alias of a bad alias is bad too, fixed at the same line
        seen, ref = {alias}, aliases[alias]
        while isinstance(ref, str) and ref in aliases and ref not in seen:
            if ref in failed:
                bad[alias] = failed[ref]
                break
            seen.add(ref)
            ref = aliases[ref]
    return problems, bad


def check_all_models(compiled: CompiledTree) -> None:
    """Check the models of every matrix combination, without running anything."""
    for bindings in matrix_bindings(compiled):
        names = {name: None for name, _ in compiled.tree_vars}
        check_models(compiled, {"seed": 0, "run": {}, **names, **bindings})
