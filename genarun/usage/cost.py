"""What recorded usage costs under the price table: known amounts, and whether any part is unknown
(an unpriced model, device or host, or tokens a model did not count). Unknown is never 0."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from genarun.usage.prices import Price, PriceTable, make_price


@dataclass
class Cost:
    amount: float = 0.0  # the known part
    unknown: bool = False  # some usage has no price (or no count to price)
    sources: set[str] = field(default_factory=set)  # where the prices came from
    unpriced: set[str] = field(default_factory=set)  # why a part is unknown, one line each

    def add(self, other: Cost) -> None:
        self.amount += other.amount
        self.unknown = self.unknown or other.unknown
        self.sources |= other.sources
        self.unpriced |= other.unpriced

    @property
    def billable(self) -> bool:
        """Whether anything was priced or left unpriced (a template node's cost is none)."""
        return self.unknown or bool(self.sources)

    def text(self, currency: str = "USD") -> str:
        if not self.billable:
            return "-"
        known = money(self.amount, currency)
        if not self.unknown:
            return known
        return "unknown" if not self.sources else f"{known} + unknown"

    def to_json(self) -> dict[str, Any]:
        return {
            "amount": round(self.amount, 8) if self.sources else None,
            "unknown": self.unknown,
            "sources": sorted(self.sources),
            "unpriced": sorted(self.unpriced),
        }


def money(amount: float, currency: str = "USD") -> str:
    sign = "$" if currency == "USD" else f"{currency} "
    if amount and amount < 0.01:
        return f"{sign}{amount:.6f}".rstrip("0")
    return f"{sign}{amount:.2f}"


def _price_of(record: dict[str, Any], table: PriceTable) -> Price | None:
    override = record.get("price")
    if isinstance(override, dict) and override:
        return make_price(override, "the model's price: in the tree", "the tree's")
    return table.model(str(record.get("provider")), str(record.get("id")))


def model_cost(record: dict[str, Any], table: PriceTable) -> Cost:
    """The cost of one model's usage record (genarun.usage.meter) in an execution. A price
    that names any of what the model did (tokens, images, requests, GPU time) is its whole
    price (an image API is priced per image, whatever its prompt's tokens); one that names
    none of it, like a model no entry names, is unknown."""
    cost = Cost()
    label = f"model {record.get('name') or record.get('id')} ({record.get('provider')})"
    price = _price_of(record, table)
    gpu_s = float(record.get("gpu_s") or 0.0)
    if price is None:
        device = table.device(record.get("gpu")) if gpu_s else None
        if device is not None and device.get("per_gpu_hour") is not None:
            cost.amount = gpu_s / 3600 * float(device.get("per_gpu_hour") or 0.0)
            cost.sources.add(f"{record.get('gpu')}: {device.source} ({device.as_of})")
        else:
            cost.unknown = True
            cost.unpriced.add(f"no price for {label}")
        return cost
    uncounted = bool(record.get("tokens_unknown"))
    used = {
        "input_per_1m": bool(record.get("prompt_tokens")) or uncounted,
        "output_per_1m": bool(record.get("completion_tokens")) or uncounted,
        "per_image": bool(record.get("images")),
        "per_call": bool(record.get("api_calls")),
        "per_gpu_hour": gpu_s > 0,
    }
    covered = [key for key, was_used in used.items() if was_used and price.get(key) is not None]
    if not covered:  # its price says nothing about what it did
        cost.unknown = True
        named = ", ".join(k for k, u in used.items() if u) or "what it used"
        cost.unpriced.add(f"{label}: its price names none of {named}")
        return cost
    figures = {
        "input_per_1m": float(record.get("prompt_tokens") or 0) / 1e6,
        "output_per_1m": float(record.get("completion_tokens") or 0) / 1e6,
        "per_image": float(record.get("images") or 0),
        "per_call": float(record.get("api_calls") or 0),
        "per_gpu_hour": gpu_s / 3600,
    }
    for key in covered:
        cost.amount += figures[key] * float(price.get(key) or 0.0)
    if record.get("tokens_unknown") and ("input_per_1m" in covered or "output_per_1m" in covered):
        cost.unknown = True
        times = record["tokens_unknown"]
        cost.unpriced.add(f"{label}: tokens not counted for {times} invocation(s)")
    cost.sources.add(f"{label}: {price.source} ({price.as_of})")
    return cost


def call_cost(host: str, calls: int, table: PriceTable) -> Cost:
    """The cost of `calls` requests a fetch node sent to `host`."""
    cost = Cost()
    if not calls:
        return cost
    price = table.host(host)
    if price is None or price.get("per_call") is None:
        cost.unknown = True
        cost.unpriced.add(f"no price for API host {host}")
        return cost
    cost.amount = calls * float(price.get("per_call") or 0.0)
    cost.sources.add(f"{host}: {price.source} ({price.as_of})")
    return cost
