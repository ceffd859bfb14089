"""The dated price table: what a model's tokens, images and calls, a GPU-hour on a device class
and a call to an API host cost.

genarun ships `prices.json` (an `as_of` date, a currency, a source per entry). A user file named
by $GENARUN_PRICES (same layout, JSON or YAML) overrides entries of it, and a model's `price:` in
a tree overrides both for that model. What no entry prices is *unknown*, never 0.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genarun.errors import PriceTableError, Problem, did_you_mean

PRICES_ENV = "GENARUN_PRICES"
TABLE = Path(__file__).with_name("prices.json")

# What a price may say (amounts in the table's currency), and a note on where it came from.
PRICE_KEYS = {
    "input_per_1m": "per 1M prompt (input) tokens",
    "output_per_1m": "per 1M completion (output) tokens",
    "per_image": "per image made",
    "per_call": "per API request",
    "per_gpu_hour": "per hour of GPU busy time (scaled by the model's share of the GPU)",
}
NOTE_KEYS = ("source", "as_of")


@dataclass(frozen=True)
class Price:
    """One entry: amounts by PRICE_KEYS name, and where they came from."""

    amounts: tuple[tuple[str, float], ...]
    source: str
    as_of: str

    def get(self, key: str) -> float | None:
        return dict(self.amounts).get(key)

    def to_json(self) -> dict[str, Any]:
        return {**dict(self.amounts), "source": self.source, "as_of": self.as_of}


@dataclass
class PriceTable:
    as_of: str
    currency: str
    sources: list[str]  # the files read, the shipped table first
    models: dict[tuple[str, str], Price] = field(default_factory=dict)  # (provider, id)
    providers: dict[str, Price] = field(default_factory=dict)
    devices: dict[str, Price] = field(default_factory=dict)  # device class, e.g. "H100"
    hosts: dict[str, Price] = field(default_factory=dict)

    def model(self, provider: str, model_id: str) -> Price | None:
        return self.models.get((provider, model_id)) or self.providers.get(provider)

    def device(self, name: str | None) -> Price | None:
        """The price of a GPU named `name` (torch's name, e.g. "NVIDIA H100 80GB HBM3"): the
        longest device class the name contains ("A100" before "A10")."""
        if not name:
            return None
        upper = name.upper()
        for key in sorted(self.devices, key=len, reverse=True):
            if key.upper() in upper:
                return self.devices[key]
        return None

    def host(self, host: str | None) -> Price | None:
        return self.hosts.get(host or "")


def price_problem(value: Any) -> str | None:
    """Why `value` is no price mapping (a misspelt key, a negative or non-number amount)."""
    if not isinstance(value, dict):
        return f"price: must be a mapping such as {{input_per_1m: 0.15}}, not {value!r:.60}"
    for key, amount in value.items():
        if key in NOTE_KEYS:
            if not isinstance(amount, str):
                return f"price.{key} must be text, not {amount!r:.60}"
            continue
        if key not in PRICE_KEYS:
            hint = did_you_mean(str(key), list(PRICE_KEYS))
            return (
                f"price: unknown key '{key}'"
                + (f" ({hint})" if hint else "")
                + f"; allowed: {', '.join(PRICE_KEYS)} (amounts), source, as_of (notes)"
            )
        # inf and NaN are numbers to YAML (.inf, .nan) and Python's JSON, but no price.
        if (
            isinstance(amount, bool)
            or not isinstance(amount, int | float)
            or not math.isfinite(amount)
            or amount < 0
        ):
            return f"price.{key} must be a number of at least 0 ({PRICE_KEYS[key]}), not {amount!r:.60}"
    if not any(key in PRICE_KEYS for key in value):
        return f"price: names no amount; give one of {', '.join(PRICE_KEYS)}"
    return None


def make_price(value: dict[str, Any], source: str, as_of: str) -> Price:
    amounts = tuple(sorted((k, float(v)) for k, v in value.items() if k in PRICE_KEYS))
    return Price(amounts, str(value.get("source") or source), str(value.get("as_of") or as_of))


def tree_price(value: dict[str, Any], tree: str) -> Price:
    """A model's `price:` from a tree (already validated)."""
    return make_price(value, f"the model's price: in {tree}", "the tree's")


def _problem(path: Path, message: str, line: int | None = None) -> PriceTableError:
    """The error for a price table that cannot be used, with how to go on."""
    if path == TABLE:
        hint = "genarun's own table is damaged: reinstall genarun"
    else:
        hint = f"fix the file, or unset {PRICES_ENV} to use genarun's table alone"
        message = f"price table (${PRICES_ENV}): {message}"
    return PriceTableError(Problem(message, str(path), line, hint=hint))


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _problem(path, f"cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise _problem(
            path, f"not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#x})"
        ) from None
    kind = "YAML" if path.suffix in (".yaml", ".yml") else "JSON"
    try:
        if kind == "YAML":
            from genarun.bounded_yaml import load_bounded_yaml

            data = load_bounded_yaml(text)
        else:
            data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _problem(
            path, f"not valid JSON: {exc.msg} (column {exc.colno})", exc.lineno
        ) from None
    except Exception as exc:  # YAMLError, YamlBoundsError: each says where, when it knows
        mark = getattr(exc, "problem_mark", None)
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise _problem(
            path, f"not valid {kind}: {what}", mark.line + 1 if mark is not None else None
        ) from None
    if not isinstance(data, dict):
        raise _problem(path, "must be a mapping with as_of and models, providers, devices, hosts")
    return data


_SECTIONS = {"models": ("provider", "id"), "providers": ("provider",), "devices": ("device",)}


def _merge(table: PriceTable, data: dict[str, Any], path: Path) -> None:
    allowed = {"as_of", "currency", "note", "hosts", *_SECTIONS}
    unknown = sorted(str(key) for key in data if key not in allowed)
    if unknown:
        hint = did_you_mean(unknown[0], sorted(allowed))
        raise _problem(
            path,
            f"unknown key '{unknown[0]}'"
            + (f" ({hint})" if hint else "")
            + f"; allowed: {', '.join(sorted(allowed))}",
        )
    as_of = data.get("as_of")
    if not as_of or not isinstance(as_of, str | datetime.date):
        raise _problem(path, "needs an as_of date such as '2025-06-01' (when its prices were read)")
    currency = data.get("currency") or table.currency
    if not isinstance(currency, str):
        raise _problem(path, f"currency must be a currency code such as USD, not {currency!r:.60}")
    if currency != table.currency:
        raise _problem(
            path,
            f"currency {currency} differs from genarun's table ({table.currency}); "
            "convert its amounts",
        )
    source = f"{path.name} ({as_of})"
    for section in (*_SECTIONS, "hosts"):
        entries = data.get(section) or []
        if not isinstance(entries, list):
            raise _problem(path, f"{section} must be a list of entries")
        for number, entry in enumerate(entries, 1):
            names = _SECTIONS.get(section, ("host",))
            where = f"{section} entry {number}"
            if not isinstance(entry, dict) or any(
                not isinstance(entry.get(n), str) or not entry.get(n) for n in names
            ):
                raise _problem(path, f"{where}: needs {' and '.join(names)} (text)")
            amounts = {k: v for k, v in entry.items() if k not in names}
            problem = price_problem(amounts)
            if problem:
                raise _problem(path, f"{where} ({'/'.join(entry[n] for n in names)}): {problem}")
            price = make_price(amounts, source, str(as_of))
            if section == "models":
                table.models[(entry["provider"], entry["id"])] = price
            elif section == "providers":
                table.providers[entry["provider"]] = price
            elif section == "devices":
                table.devices[entry["device"]] = price
            else:
                table.hosts[entry["host"]] = price
    table.sources.append(f"{path.name} as of {as_of}")


@functools.cache
def _load(user: str) -> PriceTable:
    shipped = _read(TABLE)
    table = PriceTable(as_of="", currency=str(shipped.get("currency") or "USD"), sources=[])
    _merge(table, shipped, TABLE)
    table.as_of = str(shipped.get("as_of"))
    if user:
        _merge(table, _read(Path(user)), Path(user))
    return table


def price_table() -> PriceTable:
    """The shipped table with $GENARUN_PRICES's entries over it (read once per file)."""
    return _load(os.environ.get(PRICES_ENV, "").strip())


def table_note(table: PriceTable) -> str:
    """One line naming the table's date (and a user file's) and its currency."""
    user = f", overridden by {', '.join(table.sources[1:])}" if len(table.sources) > 1 else ""
    return f"costs in {table.currency} from genarun's price table as of {table.as_of}{user}"
