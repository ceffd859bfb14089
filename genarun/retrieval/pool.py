"""Building what one search looks in (a `Pool`) from `documents` and node ids: document chunks
whose vectors are missing are embedded first (one batch), then stored once per hash."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from genarun.models.base import Invocation
from genarun.nodes.base import Invoke
from genarun.retrieval.documents import documents_spec, load_chunks
from genarun.retrieval.progressive import earlier_items_filter
from genarun.retrieval.search import Pool
from genarun.retrieval.sources import DOCUMENTS, RUN_MODES
from genarun.retrieval.stored import (
    RunSelector,
    document_vectors_for,
    model_identity,
    store_document_vectors,
    stored_matrix,
)

if TYPE_CHECKING:
    from genarun.models.base import ModelSpec
    from genarun.nodes.base import ExecutionContext


def run_selector(ctx: ExecutionContext, runs: str) -> RunSelector:
    """`runs:` as a selector: this, tree, all, or a run or experiment id (with this run)."""
    run = ctx.run
    if runs in RUN_MODES:
        return RunSelector(runs, run.id, run.compiled.name)
    from genarun.store.trajectories import run_or_experiment_runs

    try:
        found = run_or_experiment_runs(run.store, runs)
    except Exception as exc:  # a StoreError naming the reference
        raise ValueError(f"runs: {exc}") from None
    return RunSelector("ids", run.id, run.compiled.name, tuple(sorted(r["id"] for r in found)))


def build_pool(
    ctx: ExecutionContext,
    spec: ModelSpec,
    names: list[str],
    runs: str,
    *,
    extra: list[Invoke] | None = None,
) -> Generator[list[Invoke], Any, tuple[Pool, list[Any]]]:
    """The pool of `names` for model `spec`; the invocations in `extra` (the query's) go in
    the same batch as the document chunks', and their results are returned with the pool."""
    run = ctx.run
    identity = model_identity(spec)
    pool = Pool()
    invokes: list[Invoke] = list(extra or [])
    missing: list[str] = []
    if DOCUMENTS in names:
        documents = documents_spec(run.compiled.loaded.spec.documents)
        if documents is None:
            raise ValueError("from: documents, but the tree has no `documents:`")
        chunks = load_chunks(run.tree_dir, documents)
        can_image = "embed_image" in spec.tasks
        skipped = [c for c in chunks if c.text is None and not can_image]
        if skipped:
            ctx.log(
                "warning",
                f"{len(skipped)} image document(s) skipped: '{spec.label()}' embeds no images",
            )
        pool.chunks = [c for c in chunks if c.text is not None or can_image]
        pool.chunk_vectors = document_vectors_for(
            run.store, identity, [c.content_hash for c in pool.chunks]
        )
        for chunk in pool.chunks:
            if chunk.content_hash in pool.chunk_vectors or chunk.content_hash in missing:
                continue
            missing.append(chunk.content_hash)
            if chunk.text is not None:
                invokes.append(Invoke(spec, Invocation("embed_text", chunk.text, 0)))
            else:
                image = ctx.load_image(chunk.source)
                invokes.append(Invoke(spec, Invocation("embed_image", image, 0)))
    results: list[Any] = (yield invokes) if invokes else []
    extra_results = results[: len(extra or [])]
    fresh = dict(zip(missing, results[len(extra or []) :], strict=True))
    if fresh:
        store_document_vectors(run.store, identity, fresh)
        pool.chunk_vectors.update(fresh)
        ctx.log("info", f"embedded {len(fresh)} document chunk(s) with {spec.label()}")
    nodes = [n for n in names if n != DOCUMENTS]
    if nodes:
        compiled = run.compiled.nodes
        node = compiled[ctx.node_id]
        keep = earlier_items_filter(run.id, node, ctx.path, compiled)
        matrix = stored_matrix(run.store, identity, run_selector(ctx, runs), nodes)
        pool.stored.append((matrix, keep))
    return pool, extra_results
