"""`--budget X` (in the price table's currency): refuse a run whose estimate exceeds it, and stop
a run cleanly, resumable, once its recorded spend reaches it.

The spend is what `runs show` reports as the runs' cost (genarun.usage.summary), read from the
rows as they are committed: the guard keeps a running sum over new execution and response rows,
so checking it costs the rows since the last check, not the whole run. A budget covers a run's
whole spend, its earlier sessions included: `genarun resume RUN --budget Y` goes on up to Y.
Usage no price covers is not counted, and the run says so before it starts.
"""

from __future__ import annotations

import json
import time
from typing import Any

from genarun.errors import GenarunError, UserError
from genarun.usage.cost import Cost, call_cost, model_cost, money
from genarun.usage.prices import price_table, table_note

CHECK_EVERY_S = 0.25  # how often the executor's loop asks (a query of the new rows)


class BudgetReached(GenarunError):
    """The runs' recorded spend reached --budget: they stopped, resumable."""

    exit_code = 3

    def __init__(self, spent: float, budget: float, currency: str) -> None:
        self.spent, self.budget, self.currency = spent, budget, currency
        super().__init__(
            f"budget reached: the recorded spend {money(spent, currency)} is at least "
            f"--budget {money(budget, currency)}; no new executions were started and finished "
            "work is saved"
        )


class BudgetGuard:
    """The running spend of some runs, checked against a budget."""

    def __init__(self, store: Any, run_ids: list[str], budget: float) -> None:
        self.store = store
        self.run_ids = list(run_ids)
        self.budget = float(budget)
        self.table = price_table()
        self.cost = Cost()
        self._last_execution = 0
        self._last_response = 0
        self._checked = 0.0

    @property
    def spent(self) -> float:
        return self.cost.amount

    def due(self) -> bool:
        """Whether it is time to look again (the loop turns many times a second)."""
        return time.monotonic() - self._checked >= CHECK_EVERY_S

    def check(self) -> BudgetReached | None:
        """Add the rows committed since the last check; the error to stop with once the spend
        reaches the budget."""
        self._checked = time.monotonic()
        self._read_new()
        if self.cost.amount >= self.budget:
            return BudgetReached(self.cost.amount, self.budget, self.table.currency)
        return None

    def _read_new(self) -> None:
        # Plain SQL on the store's own sqlite3 connection: a run imports no SQLAlchemy.
        from urllib.parse import urlsplit

        marks = ", ".join("?" * len(self.run_ids))
        rows = self.store.db.execute(
            f"SELECT id, usage FROM executions WHERE run_id IN ({marks}) AND id > ?"
            " AND reused_from IS NULL",
            (*self.run_ids, self._last_execution),
        ).fetchall()
        for row_id, text in rows:
            self._last_execution = max(self._last_execution, int(row_id))
            if not text:
                continue
            try:
                records = json.loads(text).get("models") or []
            except (ValueError, AttributeError):
                continue
            for record in records:
                self.cost.add(model_cost(record, self.table))
        calls = self.store.db.execute(
            f"SELECT id, request, attempts FROM responses WHERE run_id IN ({marks}) AND id > ?"
            " AND reused_from IS NULL",
            (*self.run_ids, self._last_response),
        ).fetchall()
        for row_id, request, attempts in calls:
            self._last_response = max(self._last_response, int(row_id))
            try:
                host = urlsplit(str(json.loads(request).get("url") or "")).hostname or "?"
            except (ValueError, AttributeError):
                host = "?"
            self.cost.add(call_cost(host, max(int(attempts or 1), 1), self.table))


def check_estimate(estimated: Cost, budget: float, per_node: list[tuple[str, Cost]]) -> str | None:
    """The message refusing a run whose estimated known cost exceeds `budget` (None: it fits;
    usage without a price is named by `unpriced_warning`)."""
    table = price_table()
    if estimated.amount <= budget:
        return None
    costly = sorted(
        ((node, cost) for node, cost in per_node if cost.amount), key=lambda item: -item[1].amount
    )
    shown = ", ".join(f"{node} {money(cost.amount, table.currency)}" for node, cost in costly[:5])
    return (
        f"the estimated cost {money(estimated.amount, table.currency)} exceeds --budget "
        f"{money(budget, table.currency)} ({table_note(table)}; by node: {shown}); "
        f"raise it (--budget {_round_up(estimated.amount)}), run fewer executions "
        "(--skip/--only), or see `genarun estimate TREE`"
    )


def unpriced_warning(estimated: Cost) -> str | None:
    """A line saying which usage the budget cannot count (no price), or None."""
    if not estimated.unknown:
        return None
    return (
        "warning: --budget counts only priced usage; unknown: "
        + "; ".join(sorted(estimated.unpriced))
        + " (give the model a price: in the tree, or name a price file in $GENARUN_PRICES)"
    )


def check_budget_value(budget: float) -> None:
    if budget < 0:
        raise UserError(f"--budget must be at least 0, not {budget}")


def _round_up(amount: float) -> str:
    """A budget a little above `amount`, written plainly."""
    for step in (0.01, 0.1, 1, 10, 100):
        if amount < step * 100:
            rounded = (int(amount / step) + 1) * step
            return f"{rounded:.2f}".rstrip("0").rstrip(".")
    return str(int(amount) + 1)
