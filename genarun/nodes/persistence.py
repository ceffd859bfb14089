"""`persistence`: persistent homology of a trajectory's embeddings (any `cycle` node of the
run: naming one that is not above it makes it wait for that cycle).

Diagrams (H0 up to `maxdim`) and their persistence entropy go to the `persistence` table, once
per trajectory and embedding model: a rerun or `genarun tda compute` reads them back.
"""

from __future__ import annotations

import functools
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from genarun.nodes.base import Compute, ExecutionContext, FieldProblem, ModelRef, NodeKind
from genarun.tree.schema import NodeBase

if TYPE_CHECKING:
    from genarun.graph.compiled import CompiledNode


class PersistenceNode(NodeBase):
    of: str = Field(
        description="The id of the cycle node whose trajectory is analysed: above this one, beside it, or anywhere in the tree (it then runs first)."
    )
    embedding: str | dict[str, Any] | None = Field(
        None,
        description="Which embedding model's vectors (default: every model the cycle embeds with).",
    )
    maxdim: int = Field(1, ge=0, le=3, description="Highest homology dimension (H0..maxdim).")
    metric: Literal["cosine", "euclidean"] = Field(
        "cosine", description="Distance between embeddings."
    )


def check(*, node: CompiledNode, scope: dict[str, Any], resolve: Any) -> list[FieldProblem]:
    from genarun.graph.node_fields import foreach_loops

    of = node.spec.of
    cycle = node.named.get("of")  # compiling found the node (or reported that it is none)
    if cycle is None:
        return []
    if cycle.spec.kind != "cycle":
        return [
            FieldProblem(
                "of",
                f"of: '{of}' is a {cycle.spec.kind} node; it must be a cycle node (a trajectory) of this tree",
            )
        ]
    # One execution of this node analyses one trajectory: the cycle may run once per item of
    # a foreach only if this node runs once per item of that foreach too.
    loops = foreach_loops(cycle)
    if node.loops[: len(loops)] != loops:
        shared = next(k for k, loop in enumerate(loops) if node.loops[k : k + 1] != (loop,))
        outer = loops[shared:]
        return [
            FieldProblem(
                "of",
                f"of: cycle '{of}' runs once per item of foreach '{outer[0]}', and this node does not "
                f"(it would see several trajectories); put this node under '{outer[0]}' too, beside "
                f"or below '{of}'",
            )
        ]
    # The cycle's embedding models, where known before the run: without any, its trajectory
    # has no points and this node could only fail after the whole trajectory had run.
    known, embed = _embed_models(getattr(cycle.spec, "embed"), scope)  # noqa: B009 - a cycle's field
    if not known:
        return []
    if not embed:
        return [
            FieldProblem(
                "of",
                f"cycle '{of}' embeds nothing (no `embed:` models), so its trajectory has no points to analyse: give it embed: [tiny-clip] (a model that embeds what its network produces)",
            )
        ]
    if node.spec.embedding is not None and "{{" not in str(node.spec.embedding):
        from genarun.errors import ModelError

        try:
            wanted = resolve(node.spec.embedding)
            available = [resolve(ref) for ref in embed]
        except ModelError:
            return []  # reported by the model checks
        if wanted.key not in {spec.key for spec in available}:
            names = ", ".join(spec.label() for spec in available)
            return [
                FieldProblem(
                    "embedding",
                    f"embedding: cycle '{of}' does not embed with '{wanted.label()}' (it embeds with: {names}); name one of those, or add it to the cycle's `embed:`",
                )
            ]
    return []


def _embed_models(value: Any, scope: dict[str, Any]) -> tuple[bool, list[Any]]:
    """A cycle's `embed` field as a list of model references, if it can be known before the
    run (a literal, or a template of the matrix and the tree's vars)."""
    from genarun.nodes.networks import models_list
    from genarun.tree.template_core import RenderError, compile_value, field_rng

    try:
        compiled = compile_value(value)
    except ValueError:  # a template problem: the cycle reports it
        return False, []
    if compiled.names - set(scope):
        return False, []
    try:
        rendered = compiled.evaluate(scope, field_rng(0, "embed"), [])
    except RenderError:
        return False, []
    if any(v is None for v in models_list(rendered)):
        return False, []  # a tree var not rendered yet (checks before the run see None)
    return True, models_list(rendered)


def model_refs(*, node: CompiledNode, scope: dict[str, Any]) -> list[ModelRef]:
    embedding = node.spec.embedding
    if embedding is None or "{{" in str(embedding):
        return []
    return [ModelRef(embedding, "embed", "embedding")]


def run(ctx: ExecutionContext, node: PersistenceNode) -> Generator[Compute, Any, dict[str, Any]]:
    from genarun.run.trajectory_rows import timed

    trajectory = ctx.trajectory_of(node.of)
    models = (
        [ctx.model(node.embedding).label()]
        if node.embedding is not None
        else trajectory.embedding_models()
    )
    if not models:
        raise ValueError(f"cycle '{node.of}' stored no embeddings: give it `embed:` models")
    out: dict[str, Any] = {}
    for model in models:
        job = trajectory.diagram_job(model, node.maxdim, node.metric)
        diagrams = job.stored
        if diagrams is None:
            # Read and written here, on the scheduler thread; computed on the CPU pool.
            diagrams, seconds = yield Compute(functools.partial(timed, job), label="diagrams")
            trajectory.save_diagrams(job, diagrams, seconds)
        out[model] = {
            "points": diagrams.n_points,
            "features": [len(d) for d in diagrams.diagrams],
            "entropy": [round(e, 6) for e in diagrams.entropy],
        }
        ctx.log(
            "info",
            f"{model}: H0..H{node.maxdim} of {diagrams.n_points} points"
            + ("" if job.stored is None else " (stored)"),
        )
    return out


KIND = NodeKind(
    name="persistence",
    params=PersistenceNode,
    run=run,
    description="Persistent homology of a trajectory's embeddings: `of` (any cycle node of the run), `embedding`, `maxdim`.",
    output="per embedding model: points, features per dimension, persistence entropy",
    raw_fields=frozenset({"of", "embedding"}),
    node_fields=frozenset({"of"}),
    model_refs=model_refs,
    check=check,
    cacheable=False,
    output_type=lambda spec: "object",
    extra="tda",
    extra_modules=("gudhi", "ripser", "scipy"),
)
