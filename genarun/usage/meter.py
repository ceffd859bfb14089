"""What each execution used, measured where the models run: invocations, the batches they rode
in, prompt and completion tokens, images, API requests, model busy time and GPU time.

The batcher calls `meter_chunk` on its worker thread after each model call; the figures add up
on the execution (`ExecutionUsage`, every attempt included: a retried answer was still paid for)
and are stored with its row (`executions.usage`, JSON) when it finishes.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Sequence
from typing import Any

# Which tasks read prompt tokens and which write completion tokens: where a count is missing
# for one of these, the tokens are unknown (and so is a price per token).
PROMPT_TASKS = frozenset({"generate", "image", "embed_text"})
COMPLETION_TASKS = frozenset({"generate", "caption"})
_PROCESS = uuid.uuid4().hex[:8]  # batch ids are unique across the processes of one run
_batch_numbers = iter(range(1, 2**62))
_number_lock = threading.Lock()


def new_batch_id() -> str:
    with _number_lock:
        return f"{_PROCESS}.{next(_batch_numbers)}"


def _empty(spec: Any, device: str, gpu: str | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "name": spec.label(),
        "provider": spec.provider,
        "id": spec.id,
        "device": device,
        "invocations": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "tokens_unknown": 0,  # invocations whose token counts the model did not tell
        "images": 0,
        "api_calls": 0,
        "busy_s": 0.0,
        "gpu_s": 0.0,
    }
    if gpu:
        record["gpu"] = gpu
    price = getattr(spec, "price", ())
    if price:
        record["price"] = dict(price)
    return record


class ExecutionUsage:
    """The usage of one execution, added to from model worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.models: dict[str, dict[str, Any]] = {}
        self.batches: set[str] = set()

    def add(
        self,
        spec: Any,
        device: str,
        gpu: str | None,
        batch_id: str,
        figures: dict[str, Any],
    ) -> None:
        with self._lock:
            record = self.models.get(spec.key)
            if record is None:
                record = self.models[spec.key] = _empty(spec, device, gpu)
            for key, value in figures.items():
                record[key] += value
            self.batches.add(batch_id)

    def to_json(self) -> str | None:
        """The stored form (None when no model ran for the execution)."""
        with self._lock:
            if not self.models:
                return None
            models = []
            for record in self.models.values():
                record = dict(record)
                record["busy_s"] = round(record["busy_s"], 6)
                record["gpu_s"] = round(record["gpu_s"], 6)
                models.append(record)
            return json.dumps({"models": models, "batches": sorted(self.batches)})


def token_counts(model: Any, task: str, invocation: Any, result: Any) -> tuple[Any, Any]:
    """(prompt tokens, completion tokens) of one invocation, None where not known: the model's
    own `token_counts` where it has one (the dummy provider counts words; the OpenAI provider
    reads its API's `usage`), else what the result carries (a GeneratedText's counts, an
    image's prompt tokens)."""
    hook = getattr(model, "token_counts", None)
    if callable(hook):
        counted = hook(task, invocation, result)
        if counted is not None:
            return counted
    if task in ("generate", "caption"):
        return getattr(result, "prompt_tokens", None), getattr(result, "tokens", None)
    if task == "image":
        from genarun.models.base import prompt_tokens

        return prompt_tokens(result)[0], None
    return None, None


def gpu_of(model: Any) -> tuple[str, str | None, float]:
    """(device, GPU name or None, the model's share of that GPU: 0 off a GPU) of a loaded
    model."""
    # A Ray actor's handle names the device of the actor's model (`actor_device`).
    device = str(getattr(model, "device", None) or getattr(model, "actor_device", None) or "cpu")
    if not device.startswith("cuda"):
        return device, None, 0.0
    from genarun.models.device import gpu_name

    # A model given a fraction of a GPU (Ray's `num_gpus`) is charged that fraction of it.
    share = float(getattr(model, "gpu_share", 1.0) or 1.0)
    return device, gpu_name(device), share


def meter_chunk(
    model: Any,
    spec: Any,
    task: str,
    requests: Sequence[Any],
    results: Sequence[Any],
    seconds: float,
) -> None:
    """Add one model call's usage (a chunk of a batch, `seconds` long) to its requests'
    executions, each taking an equal share of the time."""
    if not requests:
        return
    batch_id = new_batch_id()
    device, gpu, share = gpu_of(model)
    per_item = seconds / len(requests)
    remote = device == "remote"  # an API model: one request per invocation, or per batch
    per_batch_call = remote and task.startswith("embed")
    for position, (request, result) in enumerate(zip(requests, results, strict=False)):
        invocation = request.invoke.invocation
        prompt, completion = token_counts(model, task, invocation, result)
        unknown = (task in PROMPT_TASKS and prompt is None) or (
            task in COMPLETION_TASKS and completion is None
        )
        # An embeddings request carries its whole batch: counted once, on its first item.
        calls = int(position == 0) if per_batch_call else int(remote)
        figures = {
            "invocations": 1,
            "prompt_tokens": int(prompt or 0),
            "completion_tokens": int(completion or 0),
            "tokens_unknown": int(unknown),
            "images": int(task == "image"),
            "api_calls": calls,
            "busy_s": per_item,
            "gpu_s": per_item * share,
        }
        usage = request.instance.usage
        if usage is not None:
            usage.add(spec, device, gpu, batch_id, figures)
