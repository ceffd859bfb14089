"""Checks of an OpenAI-compatible `/embeddings` answer: one vector per input, all of one size.

A llama.cpp server (or llama-cpp-python) serving a model without pooling answers one vector per
token; flattened, those looked like sentence embeddings of varying length (480 numbers for one
text, 384 for another, same model) and the run failed much later with a numpy error in
`persistence`. The answer is refused here instead, naming the server setting that fixes it.
"""

from __future__ import annotations

from typing import Any

POOLING_HINT = (
    "the server is not returning pooled sentence embeddings: start llama.cpp's server with"
    " --embeddings --pooling mean (or cls or last), give llama-cpp-python embedding=True and a"
    " pooling_type, or use a model made for embeddings"
)


class EmbeddingShapeError(ValueError):
    """The answer is not one finite vector per input of one fixed dimension."""


def embedding_vectors(answer: dict[str, Any], count: int, dimension: int | None) -> list[Any]:
    """The float32 vectors of an answer, in input order; `dimension`: the size earlier answers
    of the same model had (None for the first)."""
    data = answer.get("data")
    if not isinstance(data, list):
        raise EmbeddingShapeError("no 'data' list of embeddings")
    if len(data) != count:
        more = f"; {POOLING_HINT}" if len(data) > count else ""
        raise EmbeddingShapeError(f"{len(data)} embeddings for {count} inputs{more}")
    if not all(isinstance(item, dict) for item in data):
        raise EmbeddingShapeError("an item of 'data' that is not an object")
    # Servers may answer out of order; `index` says which input each vector belongs to.
    indexes = [item.get("index") for item in data]
    if all(index is None for index in indexes):
        ordered = data
    elif sorted(i for i in indexes if isinstance(i, int)) == list(range(count)):
        ordered = sorted(data, key=lambda item: item["index"])
    else:
        raise EmbeddingShapeError(
            f"the items' 'index' values are not 0..{count - 1} once each (got {indexes[:10]})"
        )
    vectors = [_vector(item.get("embedding"), position) for position, item in enumerate(ordered)]
    sizes = sorted({int(v.shape[0]) for v in vectors})
    if len(sizes) > 1:
        raise EmbeddingShapeError(
            f"vectors of different lengths ({', '.join(map(str, sizes))}) from one model;"
            f" {POOLING_HINT}"
        )
    if dimension is not None and sizes and sizes[0] != dimension:
        raise EmbeddingShapeError(
            f"vectors of {sizes[0]} dimensions where this model's earlier ones had {dimension};"
            f" {POOLING_HINT}"
        )
    return vectors


def _vector(raw: Any, position: int) -> Any:
    import numpy as np

    if isinstance(raw, str):
        raise EmbeddingShapeError(
            f"input {position}: the embedding is a string (base64?); this provider asks for and"
            " reads float lists"
        )
    if not isinstance(raw, list) or not raw:
        raise EmbeddingShapeError(f"input {position}: no numeric 'embedding' list")
    if isinstance(raw[0], list):
        raise EmbeddingShapeError(
            f"input {position}: {len(raw)} vectors (one per token) instead of one; {POOLING_HINT}"
        )
    try:
        vector = np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError):
        raise EmbeddingShapeError(f"input {position}: the embedding holds non-numbers") from None
    if vector.ndim != 1:
        raise EmbeddingShapeError(f"input {position}: a nested embedding; {POOLING_HINT}")
    if not np.isfinite(vector).all():
        raise EmbeddingShapeError(f"input {position}: the embedding holds NaN or infinity")
    return vector
