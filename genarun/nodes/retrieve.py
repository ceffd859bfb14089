"""`retrieve`: progressive RAG over the tree's documents, this run's and past runs' outputs.

The query (a text, or an image through a joint model such as CLIP) is embedded with `model`
and compared with the vectors of the documents' chunks and of the nodes `from` names. The
output lists the matches, best first, each with its score, where it comes from and its content;
their keys are stored with the execution, so a rerun or resume that keeps this output gives
later nodes the same context.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator
from typing import Any, cast

from pydantic import Field, field_validator

from genarun.models.base import Invocation
from genarun.nodes.base import ExecutionContext, Invoke, NodeKind
from genarun.nodes.effects import Compute
from genarun.tree.schema import NodeBase, PositiveInt, Tpl
from genarun.values import ImageRef

# From this many candidate rows a search is CPU work for the CPU pool (a few ms and up).
COMPUTE_THRESHOLD = 20_000


class RetrieveNode(NodeBase):
    query: Any = Field(description="A text, or an image output (`{{ cover }}`), to search with.")
    from_: str | list[str] = Field(
        alias="from",
        description="What to search: `documents` (the tree's) and node ids whose outputs are "
        "embedded (embed nodes, nodes with `index:`), of this run or of `runs`.",
    )
    runs: str = Field(
        "this",
        description="Whose outputs: this (this run), tree (every run of this tree), all (every "
        "run in the database), or a run or experiment id.",
    )
    model: str | dict[str, Any] = Field(
        description="Embedding model (the one the searched vectors were made with)."
    )
    k: Tpl[PositiveInt] | None = Field(
        None, description="How many matches (default 5; with budget_tokens: as many as fit)."
    )
    budget_tokens: Tpl[PositiveInt] | None = Field(
        None,
        description="Everything when it fits this many tokens (about 4 characters each), else "
        "the best-ranked that fit.",
    )
    diversity: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Maximal marginal relevance: 0 ranks by relevance only; higher values "
        "avoid near-duplicate matches.",
    )

    @field_validator("runs")
    @classmethod
    def _runs(cls, value: str) -> str:
        if value in ("this", "tree", "all") or (
            value and all(c in "0123456789abcdef" for c in value)
        ):
            return value
        raise ValueError(f"runs: '{value}' is not this, tree, all or a run or experiment id")

    def sources(self) -> list[str]:
        return [self.from_] if isinstance(self.from_, str) else list(self.from_)


def run(ctx: ExecutionContext, node: RetrieveNode) -> Generator[Any, Any, Any]:
    from genarun.retrieval.pool import build_pool
    from genarun.retrieval.search import search

    spec = ctx.model(node.model)
    query = node.query
    if isinstance(query, ImageRef):
        if "embed_image" not in spec.tasks:
            raise ValueError(
                f"query is an image and model '{spec.label()}' embeds no images: use a joint "
                "text-image model such as tiny-clip"
            )
        invoke = Invoke(spec, Invocation("embed_image", query.open(), ctx.seed))
    else:
        if "embed_text" not in spec.tasks:
            raise ValueError(f"model '{spec.label()}' embeds no text, and the query is a text")
        text = query if isinstance(query, str) else str(query)
        if not text.strip():
            raise ValueError("query is empty")
        invoke = Invoke(spec, Invocation("embed_text", text, ctx.seed))
    pool, (vector,) = yield from build_pool(ctx, spec, node.sources(), node.runs, extra=[invoke])
    if pool.size() == 0:
        if ctx.run.compiled.nodes[ctx.node_id].progressive:
            # The first item of a progressive search: nothing earlier was stored yet.
            ctx.log("info", "nothing stored yet by earlier items: no matches")
            return []
        raise ValueError(
            f"nothing to search: {', '.join(node.sources())} hold no vectors of "
            f"'{spec.label()}' yet (runs: {node.runs})"
        )

    def ranked() -> list[Any]:
        return search(
            pool,
            vector,
            # Rendered before the run: templates in these fields are numbers by now.
            k=cast(int | None, node.k),
            budget_tokens=cast(int | None, node.budget_tokens),
            diversity=node.diversity,
        )

    # A large search runs on the CPU pool, off the scheduler thread (the pool's matrices were
    # brought up to date above, on the scheduler thread, which owns the store).
    big = pool.size() >= COMPUTE_THRESHOLD
    if big:
        pool.freeze()
    matches = (yield Compute(ranked, label=f"search {pool.size()} rows")) if big else ranked()
    ctx.log(
        "info",
        f"{len(matches)} of {pool.size()} searched: "
        + ", ".join(f"{m.key} {m.score:.3f}" for m in matches[:10]),
    )
    return [_entry(ctx, m) for m in matches]


def _entry(ctx: ExecutionContext, match: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": match.key, "score": round(match.score, 6)}
    if match.chunk is not None:
        entry["source"] = {"document": match.chunk.source, "chunk": match.chunk.index}
        entry["content"] = match.chunk.text if match.chunk.text is not None else match.chunk.source
    else:
        row = match.row
        entry["source"] = {"run": row.run_id, "node": row.node_id, "item": list(row.path)}
        entry["content"] = _image(ctx, row) if match.modality == "image" else match.text
    entry["modality"] = match.modality
    return entry


def _image(ctx: ExecutionContext, row: Any) -> ImageRef | str:
    """An image of this run as itself; one of another run copied into this run's assets (a
    run's outputs only point inside its own folder)."""
    from sqlalchemy import select

    from genarun.store.confined import read_bytes, write_file
    from genarun.store.db import runs

    run = ctx.run
    if row.run_id == run.id:
        data = read_bytes(run.folder, row.source)
        return ImageRef(row.source, run.folder, hashlib.sha256(data).hexdigest())
    found = run.store.conn.execute(select(runs.c.out_dir).where(runs.c.id == row.run_id)).first()
    if found is None or not found.out_dir:
        return row.source
    from pathlib import Path

    try:
        data = read_bytes(Path(found.out_dir), row.source)
    except OSError:
        return row.source  # that run's folder is gone: its path, as a text
    rel = run.asset_name(ctx.node_id, ctx.path)
    write_file(run.folder, rel, data)
    return ImageRef(rel, run.folder, hashlib.sha256(data).hexdigest())


KIND = NodeKind(
    name="retrieve",
    params=RetrieveNode,
    run=run,
    description="Progressive RAG: `query` (text or image), `from` (documents, node ids), "
    "`runs` (this, tree, all, an id), `model`, `k`, `budget_tokens`, `diversity`.",
    output="ranked matches: id, score, source, content, modality",
    model_task="embed",
    raw_fields=frozenset({"from_", "runs"}),
    source_fields=frozenset({"from_"}),
    cacheable=False,
    output_type=lambda spec: "list",
)
