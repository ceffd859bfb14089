"""`cycle`: a trajectory, a network of models fed into each other for `steps` invocations.

PANIC-TDA's runs as a node. Each output is embedded by every `embed` model that takes its type,
and each finished step is committed at once (the `trajectory_steps` table), so a retried or
resumed cycle continues from its last stored step instead of starting over. With a fixed seed
every invocation uses the execution's seed, so the trajectory is reproducible and an exact
repeat of an output at the same position of the network means it has entered a loop; with
`seed: random` each step draws fresh randomness.

Every yield sends one step of generation together with the embeddings of the previous output:
the executor batches the same step of all runs of an experiment into one call per model, and
embedding overlaps with the next step's generation.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from genarun.errors import ModelError
from genarun.models.base import Invocation, hit_limit, prompt_tokens, text_tokens
from genarun.models.weights import metadata_fields
from genarun.nodes.base import (
    Adoption,
    ExecutionContext,
    FieldProblem,
    Invoke,
    ModelRef,
    NodeKind,
)
from genarun.nodes.networks import (
    NetworkError,
    check_embedders,
    embed_types,
    models_list,
    plan_network,
)
from genarun.run.seeds import fresh_seed
from genarun.tree.schema import NodeBase, PositiveInt, Tpl, empty_dict, empty_list
from genarun.tree.template_core import RenderError, field_rng
from genarun.values import EmbeddingRef, ImageRef, renumber_embeddings

if TYPE_CHECKING:
    from genarun.graph.compiled import CompiledNode
    from genarun.models.base import ModelSpec


class CycleNode(NodeBase):
    network: Any = Field(
        description="Models fed into each other in turn, cycled: a list, or a template such as '{{ network }}'."
    )
    start: str = Field(description="The initial prompt (a template).")
    steps: Tpl[PositiveInt] = Field(
        description="The most invocations in the trajectory (at least 1)."
    )
    stop_on_repeat: Tpl[bool | Literal["any", "position"]] = Field(
        True,
        description="With a fixed seed, stop when an output repeats exactly (the trajectory has entered a loop): true or any = it equals any earlier output (PANIC-TDA's rule; images compared by their pixels), position = an earlier output at the same network position, false = never; a template such as '{{ repeat }}' lets a matrix vary it.",
    )
    embed: Any = Field(
        default_factory=empty_list,
        description="Embedding models applied to every output: text models to texts, image models to images, joint models to both.",
    )
    width: Tpl[PositiveInt] | None = Field(
        None, description="Image width for text-to-image models (model default if omitted)."
    )
    height: Tpl[PositiveInt] | None = Field(
        None, description="Image height for text-to-image models (model default if omitted)."
    )
    max_tokens: Tpl[PositiveInt] = Field(
        1024,
        description="Most new tokens for captioning and text models: a ceiling (PANIC-TDA's), texts normally end by themselves first; each step records whether it was cut there.",
    )
    settings: dict[str, dict[str, Any]] = Field(
        default_factory=empty_dict,
        description="More settings per task, e.g. {image: {steps: 1, guidance: 0}, caption: {min_tokens: 20}}.",
    )
    retries: int = Field(
        2,
        ge=0,
        le=100,
        description="Extra attempts after a failure; each resumes from the last stored step.",
    )

    @field_validator("steps", mode="before")
    @classmethod
    def _steps_at_least_one(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise ValueError(
                f"steps must be at least 1 (got {value}): it is the most model invocations in the trajectory"
            )
        return value


# --- checks before the run -----------------------------------------------------------------
def _field_value(node: CompiledNode, name: str, scope: dict[str, Any]) -> tuple[bool, Any]:
    compiled = node.params.get(name)
    if compiled is None:
        return True, getattr(node.spec, name)
    if compiled.names - set(scope):
        return False, None  # named through another node's output: checked when it runs
    try:
        return True, compiled.evaluate(scope, field_rng(0, name), [])
    except RenderError:
        return False, None


def model_refs(*, node: CompiledNode, scope: dict[str, Any]) -> list[ModelRef]:
    refs: list[ModelRef] = []
    known, network = _field_value(node, "network", scope)
    if known:
        refs += [ModelRef(ref, None, "network") for ref in models_list(network)]
    known, embed = _field_value(node, "embed", scope)
    if known:
        refs += [ModelRef(ref, "embed", "embed") for ref in models_list(embed)]
    return refs


def check(*, node: CompiledNode, scope: dict[str, Any], resolve: Any) -> list[FieldProblem]:
    known, network = _field_value(node, "network", scope)
    if not known:
        return []
    try:
        links = plan_network([resolve(ref) for ref in models_list(network)])
    except (NetworkError, ModelError) as exc:
        return [FieldProblem("network", str(exc))]
    known, embed = _field_value(node, "embed", scope)
    if known:
        try:
            check_embedders(links, [resolve(ref) for ref in models_list(embed)])
        except (NetworkError, ModelError) as exc:
            return [FieldProblem("embed", str(exc))]
    return []


# --- running -------------------------------------------------------------------------------
def _pixel_hash(image: Any) -> str:
    """A hash of an image's pixels (PNG bytes differ by their metadata, the pixels do not);
    the provider may have started it already, off the scheduler thread."""
    from genarun.models.pixels import pixel_digest

    return pixel_digest(image)


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def run(
    ctx: ExecutionContext, node: CycleNode
) -> Generator[list[Invoke], Any, list[dict[str, Any]]]:
    links = plan_network([ctx.model(ref) for ref in models_list(node.network)])
    embedders = [ctx.model(ref) for ref in models_list(node.embed)]
    check_embedders(links, embedders)
    ctx.model_name = " > ".join(link.spec.label() for link in links)
    max_steps = int(node.steps)
    if max_steps < 1:
        raise ValueError(f"steps must be at least 1 (got {max_steps})")
    seed_random = node.seed == "random" or (node.seed is None and ctx.seed_is_random)
    # Fresh randomness per step never settles into a loop: only a fixed seed stops on repeats.
    mode = None if seed_random else repeat_mode(node.stop_on_repeat)
    period = len(links)
    settings = {
        "image": {
            k: int(v) for k, v in (("width", node.width), ("height", node.height)) if v is not None
        },
        "caption": {"max_tokens": int(node.max_tokens)},
        "generate": {"max_tokens": int(node.max_tokens)},
    }
    for task, extra in node.settings.items():
        if task not in settings:
            raise ValueError(f"settings: unknown task '{task}' (use image, caption or generate)")
        settings[task] = {**settings[task], **extra}
    trajectory = ctx.trajectory()
    start = str(node.start)

    # Resume: steps already stored (by an earlier attempt or an interrupted run) are kept.
    stored = trajectory.stored_steps()
    records: list[dict[str, Any]] = []
    seen: dict[Any, int] = {}  # repeat key of each output -> its first step
    for row in stored:
        if row["step"] != len(records):
            break  # keep only a gap-free prefix
        records.append(_record_from_row(row, ctx))
        seen.setdefault(repeat_key(mode, row["sha256"], row["step"], period), row["step"])
    trajectory.begin(
        network=json.dumps([link.spec.label() for link in links]),
        start=start,
        max_steps=max_steps,
        embed_models=json.dumps([e.label() for e in embedders]),
        seed=None if seed_random else ctx.seed,
        seed_random=int(seed_random),
        length=len(records),
        hit_limit=sum(1 for r in records if r.get("hit_limit")),
        status="running",
    )
    if records:
        ctx.log("info", f"resuming the trajectory at step {len(records)} of {max_steps}")

    def embed_invokes(kind: str, value: Any) -> tuple[list[Invoke], list[ModelSpec]]:
        task = "embed_text" if kind == "text" else "embed_image"
        users = [e for e in embedders if kind in embed_types(e)]
        return [Invoke(e, Invocation(task, value, ctx.seed)) for e in users], users

    # The start prompt is embedded too (as step -1): semantic drift is measured from it.
    pending: list[Invoke] = []
    pending_users: list[ModelSpec] = []
    pending_step = -1
    pending_source = start
    if not records:
        pending, pending_users = embed_invokes("text", start)
    current: Any = records[-1]["value"] if records else start
    current_input: Any = ctx.load_image(current) if isinstance(current, ImageRef) else current
    stop_reason, loop_length = "max_steps", None
    try:
        step = len(records)
        if records and mode and _repeats(records, mode, period):
            step = max_steps  # it had already stopped on a repeat before the interruption
            stop_reason, loop_length = "repeat", _repeats(records, mode, period)
        while step < max_steps:
            link = links[step % len(links)]
            seed = fresh_seed() if seed_random else ctx.seed
            asked = time.perf_counter()
            results = yield [
                Invoke(link.spec, Invocation(link.task, current_input, seed, settings[link.task])),
                *pending,
            ]
            # Wall time until the output came back: the model call (shared with the same step of
            # the experiment's other runs, batched) and any wait for the model's turn.
            duration = time.perf_counter() - asked
            output, vectors = results[0], results[1:]
            # Committed once the next step's calls have gone to the models (the executor runs
            # it before this generator resumes): the step's rows and a wait for its PNG never
            # hold up the batch that every run of the experiment is waiting to join.
            ctx.defer(
                functools.partial(
                    _store_pending,
                    ctx,
                    records,
                    pending_step,
                    pending_users,
                    vectors,
                    pending_source,
                )
            )
            if link.gives == "image":
                digest = _pixel_hash(output)
                value: Any = ctx.save_image(
                    output,
                    step=step,
                    seed=seed,
                    prompt=current_input if isinstance(current_input, str) else "",
                    **metadata_fields(link.spec),
                )
                pending_source = value.path
            else:
                value = str(output)
                digest = _text_hash(value)
                pending_source = value
            limited = hit_limit(output) if link.gives == "text" else None
            measured = _measurements(output, link.gives)
            records.append(
                {
                    "step": step,
                    "model": link.spec.label(),
                    "kind": link.gives,
                    "value": value,
                    "seed": seed,
                    "sha256": digest,
                    "embeddings": {},
                    "duration": duration,
                    "hit_limit": limited,
                    **measured,
                }
            )
            pending, pending_users = embed_invokes(link.gives, output)
            pending_step = step
            current, current_input = value, output
            if mode:
                key = repeat_key(mode, digest, step, period)
                if key in seen:
                    stop_reason, loop_length = "repeat", step - seen[key]
                    step += 1
                    break
                seen[key] = step
            step += 1
        if pending:
            vectors = yield pending
            _store_pending(ctx, records, pending_step, pending_users, vectors, pending_source)
        elif pending_step >= 0:
            ctx.run_deferred()  # the earlier steps' commits come first
            _store_pending(ctx, records, pending_step, [], [], pending_source)
    except BaseException:
        # This attempt failed (the executor closed it, or a step raised here): what is stored
        # stays for the retry. The store may be what failed, so marking it is best effort.
        with contextlib.suppress(Exception):
            trajectory.update(
                status="failed",
                stop_reason="failed",
                length=len(stored_or(records)),
            )
        raise
    trajectory.update(
        status="done",
        stop_reason=stop_reason,
        loop_length=loop_length,
        length=len(records),
    )
    if stop_reason == "repeat":
        ctx.log(
            "info",
            f"stopped at step {len(records) - 1}: the output repeats (loop of {loop_length} steps)",
        )
    cut = sum(1 for r in records if r.get("hit_limit"))
    if cut:
        texts = sum(1 for r in records if r["kind"] == "text")
        ctx.log(
            "warning",
            f"{cut} of {texts} texts were cut at the token ceiling (max_tokens {node.max_tokens}, "
            "or the model's position table) instead of ending by themselves",
        )
    truncated = sum(1 for r in records if r.get("prompt_truncated"))
    if truncated:
        images = sum(1 for r in records if r["kind"] == "image")
        ctx.log(
            "warning",
            f"{truncated} of {images} image prompts were longer than the painter's text encoder "
            "reads (77 tokens for CLIP) and were cut before they reached the image",
        )
    internals = ("sha256", "stored", "duration", "hit_limit", "tokens", "prompt_tokens")
    for record in records:
        for internal in (*internals, "prompt_truncated"):
            record.pop(internal, None)
    return records


def stored_or(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records that reached the store (the last may still await its embeddings)."""
    return [r for r in records if r.get("stored")]


def repeat_mode(value: Any) -> str | None:
    """`stop_on_repeat` as a rule: "any" (true), "position", or None (false: never stop)."""
    if value is True or value == "any":
        return "any"
    return "position" if value == "position" else None


def repeat_key(mode: str | None, digest: str, step: int, period: int) -> Any:
    """What must recur for a repeat: the output itself, or the output at its network position."""
    return digest if mode == "any" else (digest, step % period)


def _repeats(records: list[dict[str, Any]], mode: str, period: int) -> int | None:
    """The loop length if the last record repeats an earlier one under `mode`."""
    last = records[-1]
    key = repeat_key(mode, last["sha256"], last["step"], period)
    for earlier in reversed(records[:-1]):
        if repeat_key(mode, earlier["sha256"], earlier["step"], period) == key:
            return last["step"] - earlier["step"]
    return None


def _store_pending(
    ctx: ExecutionContext,
    records: list[dict[str, Any]],
    step: int,
    users: list[ModelSpec],
    vectors: list[Any],
    source: str,
) -> None:
    """Store the embeddings of one output, then commit its step (the start prompt is step -1)."""
    trajectory = ctx.trajectory()
    value = records[step]["value"] if step >= 0 else None
    if isinstance(value, ImageRef):
        value.sha256  # noqa: B018 (its PNG must be on disk before the step is committed)
    refs: dict[str, EmbeddingRef] = {}
    with trajectory.transaction():  # the step and its embeddings: one commit
        for spec, vector in zip(users, vectors, strict=True):
            refs[spec.label()] = ctx.store_embeddings(
                [vector], spec.label(), [source], items=[step]
            )[0]
        if step < 0:
            return
        record = records[step]
        record["embeddings"] = refs
        trajectory.add_step(
            step=step,
            model=record["model"],
            kind=record["kind"],
            value=value.path if isinstance(value, ImageRef) else value,
            sha256=record["sha256"],
            seed=record["seed"],
            embeddings=json.dumps({m: [r.id, r.dim] for m, r in refs.items()}),
            duration=record.get("duration"),
            hit_limit=None if record["hit_limit"] is None else int(record["hit_limit"]),
            tokens=record.get("tokens"),
            prompt_tokens=record.get("prompt_tokens"),
            prompt_truncated=record.get("prompt_truncated"),
            bytes=_file_size(value),
        )
        trajectory.update(
            length=step + 1,
            hit_limit=sum(1 for r in records[: step + 1] if r.get("hit_limit")),
        )
    record["stored"] = True


def _measurements(output: Any, gives: str) -> dict[str, Any]:
    """What a step's output tells beside its value: tokens of a text, the prompt's tokens of an
    image and whether its text encoder cut the prompt."""
    if gives == "text":
        return {"tokens": text_tokens(output)}
    tokens, limit = prompt_tokens(output)
    cut = None if tokens is None or limit is None else int(tokens > limit)
    return {"prompt_tokens": tokens, "prompt_truncated": cut}


def _file_size(value: Any) -> int | None:
    if not isinstance(value, ImageRef):
        return None
    try:
        return value.file.stat().st_size
    except OSError:
        return None


def _record_from_row(row: dict[str, Any], ctx: ExecutionContext) -> dict[str, Any]:
    value: Any = row["value"]
    if row["kind"] == "image":
        value = ctx.stored_image(value)
    embeds = {
        m: EmbeddingRef(int(i), m, int(d))
        for m, (i, d) in json.loads(row["embeddings"] or "{}").items()
    }
    return {
        "step": row["step"],
        "model": row["model"],
        "kind": row["kind"],
        "value": value,
        "seed": row["seed"],
        "sha256": row["sha256"],
        "embeddings": embeds,
        "stored": True,
        "hit_limit": None if row.get("hit_limit") is None else bool(row["hit_limit"]),
    }


def adopt(adoption: Adoption) -> Any:
    """A trajectory reused by another run (rerun, --only) is copied to it: its row, steps,
    embeddings (new ids, which the output's refs now name) and diagrams, so `runs list`, `tda`,
    exports and a `persistence` node below see the run's own trajectory."""
    output = adoption.output
    # The steps' images are the output's, already adopted (from the stored run's folder, where
    # the rows' paths, which may be the original run's, need not exist).
    adopted = {
        r["step"]: r["value"]["$image"]
        for r in output
        if isinstance(r.get("value"), dict) and "$image" in r["value"]
    }
    ids = adoption.trajectory.copy_from(
        adoption.stored, lambda step, rel: adopted.get(step) or adoption.image(rel)
    )
    return renumber_embeddings(output, ids)


KIND = NodeKind(
    name="cycle",
    params=CycleNode,
    run=run,
    description="Trajectory: `network` of models fed into each other for `steps`, from `start`; every output embedded with `embed`.",
    output="list of steps (step, model, kind, value, seed, embeddings)",
    model_refs=model_refs,
    check=check,
    # An identical trajectory (same network, models, start, steps, settings and fixed seed) is
    # taken from the cache like any execution: adopt copies its rows to the run. A random
    # seed never matches, and `--no-cache` runs it again (to measure nondeterminism).
    adopt=adopt,
    output_type=lambda spec: "list",
)
