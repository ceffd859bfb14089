"""One search: candidates from the documents and from stored run outputs, ranked by cosine
similarity, optionally diversified (maximal marginal relevance) and fitted to a token budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genarun.retrieval.chunking import Chunk
from genarun.retrieval.index import GrowingMatrix, maximal_marginal_relevance, normalised
from genarun.retrieval.progressive import EarlierItems
from genarun.retrieval.stored import RowInfo, StoredMatrix
from genarun.store.confined import is_asset_ref

# What an image costs in a prompt's token budget (a low-detail image in the common APIs).
IMAGE_TOKENS = 256
# The most candidates ranked when a budget or diversity asks for more than the top k.
MAX_CANDIDATES = 2000
DEFAULT_K = 5


def estimate_tokens(text: str) -> int:
    """About four characters a token for English text: a budget's unit without a tokenizer."""
    return max(1, math.ceil(len(text) / 4))


@dataclass
class Match:
    """One retrieved item: a document chunk or a stored run output."""

    key: str  # doc:<path>#<n> or emb:<embedding id>: stored with the output, so reruns see it
    score: float
    vector: np.ndarray
    modality: str  # text or image
    text: str | None  # the text (None for an image)
    chunk: Chunk | None = None
    row: RowInfo | None = None

    @property
    def tokens(self) -> int:
        return IMAGE_TOKENS if self.text is None else estimate_tokens(self.text)


@dataclass
class Pool:
    """Where one search looks: document chunks with their vectors, and stored matrices with
    a filter each (row -> kept)."""

    chunks: list[Chunk] = field(default_factory=list)
    chunk_vectors: dict[str, np.ndarray] = field(default_factory=dict)
    stored: list[tuple[StoredMatrix, EarlierItems | np.ndarray | None]] = field(
        default_factory=list
    )

    def freeze(self) -> None:
        """Compute the filters' masks now (on the scheduler thread, which appends rows), so
        the search itself may run on another thread."""
        self.stored = [
            (m, keep.mask(m) if isinstance(keep, EarlierItems) else keep) for m, keep in self.stored
        ]

    def size(self) -> int:
        return len(self.chunks) + sum(len(m.rows) for m, _ in self.stored)


def search(
    pool: Pool,
    query: Any,
    *,
    k: int | None,
    budget_tokens: int | None = None,
    diversity: float = 0.0,
    approximate: bool = False,
) -> list[Match]:
    """The best matches of `query` (a vector) in `pool`, best first.

    Without a budget: the top `k` (default 5). With `budget_tokens`: everything, ranked, when
    it all fits; otherwise the best-ranked that fit (at most `k` when given). `diversity` in
    [0, 1] trades relevance for novelty among the picks (0: plain ranking)."""
    limit = k if k is not None else (None if budget_tokens else DEFAULT_K)
    fetch = MAX_CANDIDATES if budget_tokens or limit is None else limit
    if diversity > 0 and limit is not None:
        fetch = min(MAX_CANDIDATES, max(fetch, 4 * limit, 32))
    candidates = _documents(pool, query, fetch) + _stored(pool, query, fetch, approximate)
    candidates.sort(key=lambda m: (-m.score, m.key))
    candidates = candidates[:fetch]
    if diversity > 0 and candidates:
        order = maximal_marginal_relevance(
            query, np.stack([m.vector for m in candidates]), len(candidates), diversity
        )
        candidates = [candidates[i] for i in order]
    if budget_tokens is None:
        return candidates[:limit]
    if limit is None and sum(m.tokens for m in candidates) <= budget_tokens:
        return candidates  # the whole corpus fits in the prompt
    picked: list[Match] = []
    used = 0
    for match in candidates:
        if limit is not None and len(picked) >= limit:
            break
        if used + match.tokens <= budget_tokens:
            picked.append(match)
            used += match.tokens
    return picked


def _documents(pool: Pool, query: Any, fetch: int) -> list[Match]:
    usable = [c for c in pool.chunks if c.content_hash in pool.chunk_vectors]
    if not usable:
        return []
    matrix = GrowingMatrix(len(pool.chunk_vectors[usable[0].content_hash]))
    same_dim = [c for c in usable if len(pool.chunk_vectors[c.content_hash]) == matrix.dim]
    matrix.append(
        [c.id for c in same_dim], np.stack([pool.chunk_vectors[c.content_hash] for c in same_dim])
    )
    out = []
    for row, score in matrix.top(query, fetch):
        chunk = same_dim[row]
        out.append(
            Match(chunk.id, score, matrix.matrix[row], chunk.modality, chunk.text, chunk=chunk)
        )
    return out


def _stored(pool: Pool, query: Any, fetch: int, approximate: bool) -> list[Match]:
    out: list[Match] = []
    for stored, keep in pool.stored:
        matrix = stored.matrix
        if matrix is None or len(matrix) == 0:
            continue
        if len(normalised(query)[0]) != matrix.dim:
            raise ValueError(
                f"the query's vector has {len(normalised(query)[0])} dimensions and the stored "
                f"ones {matrix.dim}: embed both with the same model"
            )
        mask = keep.mask(stored) if isinstance(keep, EarlierItems) else keep
        for row, score in matrix.top(query, fetch, mask, approximate=approximate):
            info = stored.rows[row]
            image = is_asset_ref(info.source)
            out.append(
                Match(
                    f"emb:{info.id}",
                    score,
                    matrix.matrix[row],
                    "image" if image else "text",
                    None if image else info.source,
                    row=info,
                )
            )
    return out
