"""Every mistake of a tree file in one pass: its fields, then the names, templates and types of
the nodes that are valid, then the models that those name.

Each check used to stop at its own stage: a tree with a misspelt field and an unknown model
name reported the field, and only once it was fixed, the model. A person fixing a tree wants
the whole list at once, each with its file, line, node and fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from genarun.errors import Problem, TreeError
from genarun.graph.compile import compile_with_problems
from genarun.graph.compiled import CompiledTree
from genarun.graph.matrix import MAX_RUNS, check_matrix_sets
from genarun.tree.load import Document
from genarun.tree.validate import check_document, dedupe, read_document


def checked_tree(
    path: Path | str,
    overrides: dict[str, Any] | None = None,
    skip: set[str] | None = None,
    max_runs: int | None = MAX_RUNS,
) -> CompiledTree:
    """Read, validate and compile a tree (`overrides`: `--set` values, checked against its
    matrix). Raises one TreeError with every problem found: those of the fields, of the
    compiled nodes and, when there are any, of the models the sound nodes name (a tree without
    other problems has its models checked per run, with its vars rendered: check_models)."""
    return checked_document(read_document(path), overrides, skip, max_runs)


def checked_document(
    doc: Document,
    overrides: dict[str, Any] | None = None,
    skip: set[str] | None = None,
    max_runs: int | None = MAX_RUNS,
) -> CompiledTree:
    """checked_tree of a tree already parsed (the text of the server's editor, say)."""
    loaded, problems, broken = check_document(doc)
    if loaded is None:  # the tree's own fields are wrong: nothing to compile
        raise TreeError(dedupe(problems))
    if problems:  # as far as it goes, without the options: the file's mistakes come first
        compiled, more = compile_with_problems(loaded, max_runs=None, broken=broken)
    else:
        overrides = check_matrix_sets(loaded, dict(overrides or {}))
        compiled, more = compile_with_problems(loaded, overrides, skip, max_runs)
    problems += more
    if not problems:
        return compiled
    problems += model_problems(compiled, faulty={p.node for p in problems if p.node})
    raise TreeError(dedupe(sorted(problems, key=lambda p: p.line or 0)))


def model_problems(compiled: CompiledTree, faulty: set[str]) -> list[Problem]:
    """The problems of the models the tree names: fully checked (task, provider, extras) for
    the nodes that compiled without problems of their own (not in `faulty`), and for the others
    the `model:` they spell out (a misspelt field and a misspelt model in one node are both
    said). A reference made from vars or matrix values is checked per run, once those render."""
    from genarun.run.model_checks import check_models

    sound = {node_id: node for node_id, node in compiled.nodes.items() if node_id not in faulty}
    problems: list[Problem] = []
    try:
        check_models(compiled, {"seed": 0, "run": {}}, nodes=sound.values())
    except TreeError as exc:
        problems += exc.problems
    loaded = compiled.loaded
    aliases = loaded.spec.models
    nodes = loaded.doc.data.get("nodes") if isinstance(loaded.doc.data, dict) else None
    for raw, loc, name in _raw_nodes(nodes, ("nodes",)):
        ref = raw.get("model")
        if name in sound or not isinstance(ref, str) or ref in aliases:
            continue  # checked above; or an alias, checked where it is defined
        if any(mark in ref for mark in "{[") or not ref.strip():
            continue  # a template or a pick: known once it renders
        problem = _unknown_model(ref, aliases)
        if problem is not None:
            problems.append(Problem(problem, str(loaded.path), loaded.line((*loc, "model")), name))
    return problems


def _unknown_model(ref: str, aliases: dict[str, Any]) -> str | None:
    from genarun.errors import ModelError
    from genarun.models.catalog import resolve_model

    try:
        resolve_model(ref, aliases)
    except ModelError as exc:
        return str(exc)
    return None


def _raw_nodes(
    nodes: Any, loc: tuple[str | int, ...]
) -> Iterator[tuple[dict[str, Any], tuple[str | int, ...], str]]:
    """Every node mapping of the file as written, with its place and its name (its id, or
    `#N` as validation names a node without a usable one)."""
    if not isinstance(nodes, list):
        return
    for i, raw in enumerate(nodes):
        if not isinstance(raw, dict):
            continue
        raw_id = raw.get("id")
        name = raw_id if isinstance(raw_id, str) and len(raw_id) <= 100 else f"#{i + 1}"
        yield raw, (*loc, i), name
        yield from _raw_nodes(raw.get("children"), (*loc, i, "children"))
