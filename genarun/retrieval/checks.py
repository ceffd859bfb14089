"""Checks before a run (with the model checks): documents that do not exist, `from:
documents` without documents, `index: true` that nothing searches, novelty models that cannot
embed what the node produces."""

from __future__ import annotations

from typing import TYPE_CHECKING

from genarun.errors import Problem
from genarun.retrieval.sources import DOCUMENTS, source_lists

if TYPE_CHECKING:
    from genarun.graph.compiled import CompiledNode, CompiledTree
    from genarun.nodes.hooks import ModelRef


def tree_problems(compiled: CompiledTree) -> list[Problem]:
    """Problems of the tree's documents and of the nodes that search them."""
    from genarun.retrieval.guard import searchers

    loaded = compiled.loaded
    file = str(loaded.path)
    problems: list[Problem] = []
    documents = None
    if loaded.spec.documents is not None:  # the documents' modules only for a tree with some
        from genarun.retrieval.documents import document_files, documents_spec

        documents = documents_spec(loaded.spec.documents)
    if documents is not None:
        where: tuple[str, ...] = (
            ("documents",) if isinstance(loaded.spec.documents, list) else ("documents", "paths")
        )
        _files, found = document_files(loaded.path.parent.resolve(), documents)
        for problem in found:
            line = loaded.line((*where, problem.entry)) or loaded.line(("documents",))
            problems.append(Problem(problem.message, file, line, hint=problem.hint))
    readers = searchers(compiled)
    for node in compiled.nodes.values():
        spec = node.spec
        at = node.tree_node.loc
        for where, names, _runs in source_lists(spec, node.kind.source_fields):
            if DOCUMENTS in names and documents is None:
                problems.append(
                    Problem(
                        f"{'.'.join(where)}: names documents, and the tree has no `documents:`",
                        file,
                        loaded.line((*at, *where)),
                        spec.id,
                        hint="list files, folders or globs under `documents:` at the top of the tree",
                    )
                )
        if spec.index is True and not readers.get(spec.id):
            problems.append(
                Problem(
                    "index: true, but no retrieve node or novelty guard names this node, so "
                    "no embedding model is known",
                    file,
                    loaded.line((*at, "index")),
                    spec.id,
                    hint="give the model: index: minilm",
                )
            )
        if (spec.index not in (None, False) or spec.novelty is not None) and (
            node.kind.name in ("group", "embed", "retrieve")
        ):
            field = "index" if spec.index not in (None, False) else "novelty"
            problems.append(
                Problem(
                    f"{field}: a {node.kind.name} node has no generated output to "
                    + ("index" if field == "index" else "guard"),
                    file,
                    loaded.line((*at, field)),
                    spec.id,
                    hint=f"put {field}: on the node that generates the text or image",
                )
            )
    return problems


def model_refs(node: CompiledNode) -> list[ModelRef]:
    """The embedding models of a node's `index:` and `novelty:` (checked like its own)."""
    spec = node.spec
    if spec.index in (None, False, True) and spec.novelty is None:
        return []  # most nodes: nothing to load
    from genarun.nodes.hooks import ModelRef

    refs: list[ModelRef] = []
    if spec.index not in (None, False, True):
        refs.append(ModelRef(spec.index, _task(node), "index"))
    if spec.novelty is not None:
        refs.append(ModelRef(spec.novelty.model, _task(node), "novelty"))
    return refs


def _task(node: CompiledNode) -> str:
    """What the node's output needs of an embedding model."""
    output = node.kind.output_type(node.spec) if node.kind.output_type else None
    return "embed_image" if output == "image" else "embed_text"
