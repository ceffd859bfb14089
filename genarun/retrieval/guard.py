"""The novelty guard (`novelty:`) and progressive indexing (`index:`) of any node's outputs.

Both wrap a kind's run function without the kind knowing: the output it returns is embedded;
with `novelty:`, an output too similar to what `against` holds is generated again with a
derived seed, up to `attempts` generations (the last is kept, with a warning, when none
passes); then the output's vectors are stored under the node, so searches find it.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any

from genarun.values import ImageRef

if TYPE_CHECKING:
    from genarun.graph.compiled import CompiledNode, CompiledTree
    from genarun.models.base import Invocation, ModelSpec
    from genarun.nodes.base import ExecutionContext
    from genarun.tree.schema import NoveltySpec

# Most characters of a text output kept as a stored vector's source (the retrieved content).
MAX_SOURCE = 100_000


def guarded_run(
    ctx: ExecutionContext, node: CompiledNode, spec: Any, kind_run: Callable[..., Any]
) -> Any:
    """The kind's run, wrapped when the node has `novelty:` or `index:`."""
    index_refs = index_models(ctx.run.compiled, node.id)
    if spec.novelty is None and not index_refs:
        return kind_run(ctx, spec)
    return _guarded(ctx, node, spec, kind_run, index_refs)


def _guarded(
    ctx: ExecutionContext,
    node: CompiledNode,
    spec: Any,
    kind_run: Callable[..., Any],
    index_refs: list[Any],
) -> Generator[Any, Any, Any]:
    from genarun.run.seeds import derive_seed

    novelty: NoveltySpec | None = spec.novelty
    first_seed = ctx.seed
    vectors: dict[str, tuple[ModelSpec, Any]] = {}  # identity -> the output's vector
    checks: list[dict[str, Any]] = []
    value: Any = None
    attempts = novelty.attempts if novelty is not None else 1
    for attempt in range(attempts):
        if attempt:
            ctx.seed = derive_seed(first_seed, node.node_path + "#novelty", (attempt,))
        out = kind_run(ctx, spec)
        value = (yield from out) if inspect.isgenerator(out) else out
        if novelty is None:
            break
        check = yield from _novelty_check(ctx, novelty, value, vectors)
        checks.append({"attempt": attempt + 1, "seed": ctx.seed, **check})
        if check["passed"]:
            break
    if novelty is not None:
        _report(ctx, novelty, checks)
    yield from _index(ctx, node, value, index_refs, vectors)
    return value


def _novelty_check(
    ctx: ExecutionContext,
    novelty: NoveltySpec,
    value: Any,
    vectors: dict[str, tuple[ModelSpec, Any]],
) -> Generator[Any, Any, dict[str, Any]]:
    from genarun.nodes.effects import Invoke
    from genarun.retrieval.pool import build_pool
    from genarun.retrieval.search import MAX_CANDIDATES, search
    from genarun.retrieval.stored import model_identity

    spec = ctx.run.resolve_model(novelty.model)
    modality, invocation = embedding_invocation(spec, value, ctx.seed)
    pool, (vector,) = yield from build_pool(
        ctx, spec, list(novelty.against), novelty.runs, extra=[Invoke(spec, invocation)]
    )
    vectors.clear()
    vectors[model_identity(spec)] = (spec, vector)
    worst: dict[str, Any] = {"passed": True, "score": None, "nearest": None}
    if pool.size() == 0:
        return worst
    excess = -float("inf")
    for match in search(pool, vector, k=min(pool.size(), MAX_CANDIDATES)):
        pair = modality if match.modality == modality else "cross"
        limit = threshold(novelty.max_similarity, pair)
        if worst["score"] is None:
            worst.update(score=round(match.score, 6), nearest=match.key)
        if match.score - limit > excess:
            excess = match.score - limit
            if excess > 0:
                worst.update(
                    passed=False, score=round(match.score, 6), nearest=match.key, limit=limit
                )
    return worst


def threshold(max_similarity: float | Mapping[Any, float], pair: str) -> float:
    """The most similarity allowed between outputs of a modality pair (text, image, cross)."""
    if isinstance(max_similarity, Mapping):
        return float(max_similarity.get(pair, max_similarity.get("text", 0.9)))
    return float(max_similarity)


def _report(ctx: ExecutionContext, novelty: NoveltySpec, checks: list[dict[str, Any]]) -> None:
    shown = "; ".join(
        f"attempt {c['attempt']} (seed {c['seed']}): "
        + ("nothing to compare" if c["score"] is None else f"{c['score']:.3f} to {c['nearest']}")
        for c in checks
    )
    record = json.dumps({"novelty": checks})
    if checks[-1]["passed"]:
        ctx.log("info", f"novelty: passed after {len(checks)} attempt(s): {shown} {record}")
    else:
        ctx.log(
            "warning",
            f"novelty: no attempt of {novelty.attempts} was under max_similarity; the last is "
            f"kept: {shown} {record}",
        )


def embedding_invocation(spec: ModelSpec, value: Any, seed: int) -> tuple[str, Invocation]:
    """How to embed a node's output: an image, or its text (values as JSON)."""
    from genarun.models.base import Invocation

    if isinstance(value, ImageRef):
        if "embed_image" not in spec.tasks:
            raise ValueError(f"model '{spec.label()}' embeds no images, and this output is one")
        return "image", Invocation("embed_image", value.open(), seed)
    if "embed_text" not in spec.tasks:
        raise ValueError(f"model '{spec.label()}' embeds no text, and this output is a text")
    return "text", Invocation("embed_text", output_text(value), seed)


def output_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    from genarun.values import to_plain

    return json.dumps(to_plain(value), ensure_ascii=False)


def _index(
    ctx: ExecutionContext,
    node: CompiledNode,
    value: Any,
    index_refs: list[Any],
    vectors: dict[str, tuple[ModelSpec, Any]],
) -> Generator[Any, Any, None]:
    """Store the output's vector for every model it is searched with."""
    from genarun.nodes.effects import Invoke
    from genarun.retrieval.stored import model_identity

    specs = [spec for spec, _ in vectors.values()]
    for ref in index_refs:
        spec = ctx.run.resolve_model(ref)
        if model_identity(spec) not in vectors:
            specs.append(spec)
            vectors[model_identity(spec)] = (spec, None)
    missing = [s for s in specs if vectors[model_identity(s)][1] is None]
    if missing:
        invokes = [Invoke(s, embedding_invocation(s, value, ctx.seed)[1]) for s in missing]
        for spec, vector in zip(missing, (yield invokes), strict=True):
            vectors[model_identity(spec)] = (spec, vector)
    source = value.path if isinstance(value, ImageRef) else output_text(value)[:MAX_SOURCE]
    import numpy as np  # only a guarded node's run needs it (a plain run never does)

    rows = []
    for spec, vector in vectors.values():
        array = np.asarray(vector, dtype="<f4").ravel()
        rows.append(
            {
                "run_id": ctx.run.id,
                "node_id": node.id,
                "path": json.dumps(list(ctx.path)),
                "item": 0,
                "model": spec.label(),
                "dim": int(array.shape[0]),
                "vector": array.tobytes(),
                "source": source,
            }
        )
    if rows:
        ctx.run.store.add_embeddings(rows)


def index_models(compiled: CompiledTree, node_id: str) -> list[Any]:
    """The models a node's outputs are embedded with as they are produced: its `index:` model,
    or with `index: true` those of the retrieve nodes and novelty guards that name it."""
    # Worked out once per compiled tree, kept on it (it lives as long as its runs).
    cached = compiled.__dict__.get("_index_models")
    if cached is None:
        cached = compiled.__dict__["_index_models"] = _all_index_models(compiled)
    return cached.get(node_id, [])


def _all_index_models(compiled: CompiledTree) -> dict[str, list[Any]]:
    by_node: dict[str, list[Any]] = {}
    readers = searchers(compiled)
    for node in compiled.nodes.values():
        index = node.spec.index
        if index in (None, False):
            continue
        refs = readers.get(node.id, []) if index is True else [index]
        unique: dict[str, Any] = {}
        for ref in refs:
            unique.setdefault(json.dumps(ref, sort_keys=True, default=str), ref)
        by_node[node.id] = list(unique.values())
    return by_node


def searchers(compiled: CompiledTree) -> dict[str, list[Any]]:
    """node id -> the model refs of the retrieve nodes and novelty guards that name it."""
    out: dict[str, list[Any]] = {}
    for node in compiled.nodes.values():
        spec = node.spec
        named: list[tuple[list[str], Any]] = []
        if spec.kind == "retrieve":
            named.append((spec.sources(), spec.model))
        if spec.novelty is not None:
            named.append((list(spec.novelty.against), spec.novelty.model))
        for names, model in named:
            if isinstance(model, str) and "{{" in model:
                continue
            for name in names:
                out.setdefault(name, []).append(model)
    return out
