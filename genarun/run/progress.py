"""Progress on a terminal: per-node status, counts and elapsed time; silent when not a TTY."""

from __future__ import annotations

import sys
import time
from collections import Counter, defaultdict
from typing import Any, TextIO


class Progress:
    """Redraws a small status block on a TTY at most ten times a second."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.per_node: dict[str, Counter[str]] = defaultdict(Counter)
        self.totals: Counter[str] = Counter()
        self.started = time.time()
        self._last = 0.0
        self._lines = 0
        self._runs = 0

    def start(self, runs: list[Any]) -> None:
        self.started = time.time()
        self._runs = len(runs)

    def finished(self, run: Any, node_id: str, status: str) -> None:
        self.per_node[node_id][status] += 1
        self.totals[status] += 1

    def message(self, text: str) -> None:
        if self.enabled:
            self._clear()
            self.stream.write(text + "\n")
            self._lines = 0
            self._draw()

    def tick(self) -> None:
        if self.enabled and time.time() - self._last >= 0.1:
            self._draw()

    def stop(self) -> None:
        if self.enabled:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()

    def _clear(self) -> None:
        up = f"\x1b[{self._lines}A" if self._lines else ""
        self.stream.write(f"\r{up}\x1b[J")

    def _draw(self) -> None:
        self._last = time.time()
        self._clear()
        lines = []
        for node_id, counts in list(self.per_node.items())[-12:]:
            parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            lines.append(f"  {node_id:<24} {parts}")
        elapsed = time.time() - self.started
        total = ", ".join(f"{n} {s}" for s, n in sorted(self.totals.items())) or "starting"
        runs = f"{self._runs} runs, " if self._runs > 1 else ""
        lines.append(f"{runs}{total}  [{elapsed:.1f}s]")
        self.stream.write("\n".join(lines))
        self._lines = len(lines) - 1
        self.stream.flush()
