"""Tokens and cost of a node before it runs (`genarun estimate`, `run --dry-run`, `--budget`).

Where past executions of the same kind and model (and the same `max_tokens`) recorded their
usage, an execution is expected to use their mean; else the tree tells what it can: `max_tokens`
bounds the completion, the prompt's text (about 4 characters a token) its prompt, an image node
makes one image. Each figure says which it came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from genarun.usage.cost import Cost, call_cost, model_cost
from genarun.usage.prices import PriceTable, price_table

PAST_SAMPLES = 200  # the newest executions a mean is taken over
CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text in BPE vocabularies
TEXT_KINDS = {"generate": ("generate",), "caption": ("caption",), "image": ("image",)}
_FIGURES = ("prompt_tokens", "completion_tokens", "images", "api_calls", "gpu_s", "busy_s")


@dataclass
class Forecast:
    prompt_tokens: float | None = None  # over all executions to run
    completion_tokens: float | None = None
    images: float | None = None
    source: str = "-"  # "past N" (executions), "tree", "-" (nothing to count), "unknown"
    cost: Cost = field(default_factory=Cost)

    def to_json(self) -> dict[str, Any]:
        def whole(value: float | None) -> int | None:
            return None if value is None else round(value)

        return {
            "prompt_tokens": whole(self.prompt_tokens),
            "completion_tokens": whole(self.completion_tokens),
            "images": whole(self.images),
            "usage_from": self.source,
            "cost": self.cost.to_json(),
        }


def _constant_value(value: Any) -> Any:
    """A field's value when the tree fixes it (no template), else None."""
    import re

    from genarun.tree.schema import TEMPLATE_PATTERN

    return None if isinstance(value, str) and re.search(TEMPLATE_PATTERN, value) else value


def _past_records(
    store: Any, kind: str, model: str | None, max_tokens: Any
) -> tuple[int, list[dict[str, Any]]]:
    """(samples, mean usage record per model) of the newest past executions that ran."""
    from sqlalchemy import select

    from genarun.store.db import executions as table

    where = [
        table.c.kind == kind,
        table.c.status == "done",
        table.c.reused_from.is_(None),
        table.c.usage.is_not(None),
        table.c.model == model if model is not None else table.c.model.is_(None),
    ]
    rows = store.conn.execute(
        select(table.c.usage, table.c.params)
        .where(*where)
        .order_by(table.c.id.desc())
        .limit(PAST_SAMPLES)
    ).all()
    samples = 0
    sums: dict[tuple[str, str], dict[str, Any]] = {}
    for usage_text, params_text in rows:
        if max_tokens is not None:  # the same ceiling: a raised one changes the tokens
            try:
                if json.loads(params_text or "{}").get("max_tokens") != max_tokens:
                    continue
            except (ValueError, AttributeError):
                continue
        try:
            usage = json.loads(usage_text)
        except ValueError:
            continue
        samples += 1
        for record in usage.get("models") or []:
            key = (str(record.get("provider")), str(record.get("id")))
            total = sums.setdefault(key, {**record, **dict.fromkeys(_FIGURES, 0.0)})
            total["tokens_unknown"] = max(total.get("tokens_unknown") or 0, 0)
            for name in _FIGURES:
                total[name] += float(record.get(name) or 0)
            total["tokens_unknown"] += int(record.get("tokens_unknown") or 0)
    means = []
    for total in sums.values():
        mean = dict(total)
        for name in (*_FIGURES, "tokens_unknown"):
            mean[name] = float(total.get(name) or 0) / max(samples, 1)
        means.append(mean)
    return samples, means


def _scaled(record: dict[str, Any], times: int) -> dict[str, Any]:
    out = dict(record)
    for name in (*_FIGURES, "tokens_unknown"):
        out[name] = float(record.get(name) or 0) * times
    return out


def _tree_record(node: Any, spec: Any, task: str, times: int) -> dict[str, Any]:
    """A usage record from what the tree says, for `times` executions."""
    fields = node.spec
    prompt = _constant_value(getattr(fields, "prompt", None))
    if prompt is None:  # a template: its own text, at least
        prompt = str(getattr(fields, "prompt", "") or "")
    prompt_tokens = max(len(str(prompt)) / CHARS_PER_TOKEN, 1.0) if task != "caption" else 0.0
    completion = 0.0
    if task in ("generate", "caption"):
        completion = float(_constant_value(getattr(fields, "max_tokens", None)) or 0)
    record: dict[str, Any] = {
        "name": spec.label(),
        "provider": spec.provider,
        "id": spec.id,
        "prompt_tokens": prompt_tokens * times,
        "completion_tokens": completion * times,
        # A ceiling that is a template is not known before the run.
        "tokens_unknown": times if task in ("generate", "caption") and not completion else 0,
        "images": float(times if task == "image" else 0),
        "api_calls": 0.0,
        "gpu_s": 0.0,
    }
    if spec.price:
        record["price"] = dict(spec.price)
    return record


def forecast(
    compiled: Any,
    node: Any,
    model: str | None,
    store: Any,
    to_run: int | None,
    table: PriceTable | None = None,
) -> Forecast:
    """The tokens, images and cost of `to_run` executions of `node`."""
    table = table or price_table()
    kind = node.kind.name
    if to_run is None:
        return Forecast(
            source="unknown",
            cost=Cost(
                unknown=True, unpriced={f"node {node.id}: its usage is not known before it runs"}
            ),
        )
    if to_run == 0:  # all reused: nothing to send, nothing to pay
        return Forecast(0, 0, 0, source="reused")
    if kind == "fetch":
        url = _constant_value(getattr(node.spec, "url", None))
        from urllib.parse import urlsplit

        host = (urlsplit(str(url)).hostname or "?") if url else "?"
        return Forecast(source="tree", cost=call_cost(host, to_run, table))
    max_tokens = _constant_value(getattr(node.spec, "max_tokens", None))
    samples, records = 0, list[dict[str, Any]]()
    if store is not None:
        samples, records = _past_records(store, kind, model, max_tokens)
    out = Forecast()
    if samples:
        out.source = f"past {samples}"
        records = [_scaled(_priced_now(compiled, r), to_run) for r in records]
    elif model is not None and kind in TEXT_KINDS:
        spec = _spec(compiled, model)
        if spec is None:
            return Forecast(
                source="unknown", cost=Cost(unknown=True, unpriced={f"model {model}: not resolved"})
            )
        out.source = "tree"
        records = [_tree_record(node, spec, TEXT_KINDS[kind][0], to_run)]
    elif model is not None or kind in ("cycle", "embed"):
        # A model whose use the tree does not tell (a cycle's steps), never run before.
        return Forecast(
            source="unknown",
            cost=Cost(
                unknown=True, unpriced={f"node {node.id}: its usage is not known before it runs"}
            ),
        )
    else:
        return out  # no model, no API: nothing to count or pay
    for record in records:
        out.prompt_tokens = (out.prompt_tokens or 0) + float(record.get("prompt_tokens") or 0)
        out.completion_tokens = (out.completion_tokens or 0) + float(
            record.get("completion_tokens") or 0
        )
        out.images = (out.images or 0) + float(record.get("images") or 0)
        out.cost.add(model_cost(record, table))
    return out


def _priced_now(compiled: Any, record: dict[str, Any]) -> dict[str, Any]:
    """A past record with the price the tree gives its model now (not the past run's)."""
    record = {k: v for k, v in record.items() if k != "price"}
    spec = _spec(compiled, str(record.get("name") or ""))
    if (
        spec is not None
        and spec.price
        and (spec.provider, spec.id)
        == (
            record.get("provider"),
            record.get("id"),
        )
    ):
        record["price"] = dict(spec.price)
    return record


def _spec(compiled: Any, model: str) -> Any:
    from genarun.errors import GenarunError
    from genarun.models.catalog import resolve_model

    try:
        return resolve_model(model, compiled.loaded.spec.models or {})
    except GenarunError:
        return None
