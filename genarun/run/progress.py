"""Progress of a run as people expect it: rich bars on a terminal, plain lines in a log.

On a terminal (rich): one bar per node with executions done of those planned so far (a foreach
node's bar grows as its items are known), the rate and the time left, a line with the
models loading and the batches in flight, waiting human steps, and at the end a table per
node (executions, reused, failed, waiting, time). Not on a terminal (CI logs): a plain line
every PLAIN_EVERY seconds, so short runs stay silent; `--verbose` adds a line per node as it
finishes, info logs and the table; `--quiet` shows nothing but errors.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TextIO

PLAIN_EVERY = 10.0  # seconds between plain progress lines
SHOWN_BARS = 12  # a tree of hundreds of nodes shows its most recently active ones


@dataclass
class NodeProgress:
    """What one node has planned and done, for the progress display."""

    planned: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    first: float | None = None
    last: float | None = None
    task: Any = None  # its rich task id

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    @property
    def seconds(self) -> float:
        return (self.last - self.first) if self.first is not None and self.last else 0.0


class Progress:
    """Receives the executor's events (scheduled, finished, model loads) and shows them."""

    def __init__(
        self,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        verbosity: str = "normal",
    ):
        if verbosity not in ("quiet", "normal", "verbose"):
            raise ValueError(f"verbosity: {verbosity!r}")
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty() if enabled is None else enabled
        self.verbosity = verbosity
        self.nodes: dict[str, NodeProgress] = {}
        self.totals: Counter[str] = Counter()
        self.started = time.time()
        self._runs = 0
        self._last_plain = time.monotonic()
        self._batcher: Any = None
        self._rich: Any = None  # rich.progress.Progress on a terminal
        self._overall: Any = None

    # Backwards-compatible name: on (a bar or lines may show) unless quiet.
    @property
    def enabled(self) -> bool:
        return self.verbosity != "quiet"

    def watch(self, batcher: Any) -> None:
        """The executor's batcher, read at each tick for model loads and batches in flight."""
        self._batcher = batcher

    def start(self, runs: list[Any]) -> None:
        self.started = time.time()
        self._runs = len(runs)
        if self.terminal and self.verbosity != "quiet":
            self._start_rich()

    def scheduled(self, node_id: str, count: int = 1) -> None:
        node = self._node(node_id)
        node.planned += count
        if self._rich is not None:
            self._rich.update(node.task, total=node.planned, visible=True)
            self._rich.update(self._overall, total=self._planned())

    def finished(self, run: Any, node_id: str, status: str) -> None:
        node = self._node(node_id)
        now = time.time()
        node.last = now
        node.counts[status] += 1
        node.planned = max(node.planned, node.finished)  # a slot that failed before it expanded
        self.totals[status] += 1
        if self._rich is not None:
            self._rich.update(node.task, completed=node.finished, total=node.planned)
            self._rich.update(self._overall, completed=self._finished(), total=self._planned())
        elif self.verbosity == "verbose" and node.finished == node.planned:
            self._line(f"{node_id}: {self._counts_text(node.counts)} ({node.seconds:.1f} s)")

    def message(self, text: str, level: str = "warning") -> None:
        """A log line from a node: warnings and errors on a terminal, info too with --verbose."""
        if self.verbosity == "quiet" and level != "error":
            return
        wanted = level in ("warning", "error") and self.terminal
        if wanted or self.verbosity == "verbose":
            if self._rich is not None:
                self._rich.console.print(text, markup=False, highlight=False)
            else:
                self._line(text)

    def note(self, text: str) -> None:
        """A line the person at the keyboard needs now (their Ctrl-C was seen), unless quiet."""
        if self.verbosity == "quiet":
            return
        if self._rich is not None:
            self._rich.console.print(text, markup=False, highlight=False)
        else:
            self._line(text)

    def tick(self) -> None:
        if self._rich is not None:
            self._rich.update(self._overall, status=self._status_text())
        elif self.verbosity != "quiet" and time.monotonic() - self._last_plain >= PLAIN_EVERY:
            self._last_plain = time.monotonic()
            done, planned = self._finished(), self._planned()
            elapsed = time.time() - self.started
            rate = done / elapsed if elapsed > 0 else 0.0
            status = self._status_text()
            self._line(
                f"progress: {done:,}/{planned:,} executions, {rate:.1f}/s, "
                f"{elapsed:.0f} s" + (f"; {status}" if status else "")
            )

    def stop(self) -> None:
        if self._rich is not None:
            self._rich.update(self._overall, status=self._status_text())
            self._rich.stop()
            self._rich = None
        if self.verbosity == "verbose" or (self.terminal and self.verbosity == "normal"):
            self._summary()

    # -- internals --------------------------------------------------------------------------

    def _node(self, node_id: str) -> NodeProgress:
        node = self.nodes.get(node_id)
        if node is None:
            node = self.nodes[node_id] = NodeProgress(first=time.time())
            if self._rich is not None:
                node.task = self._rich.add_task(node_id, total=0, status="")
                self._hide_old_bars()
        return node

    def _planned(self) -> int:
        return sum(n.planned for n in self.nodes.values())

    def _finished(self) -> int:
        return sum(self.totals.values())

    def _status_text(self) -> str:
        """Models loading, batches in flight and waiting human steps, when there are any."""
        parts = []
        batcher = self._batcher
        if batcher is not None:
            loading = [
                q.spec.label()
                for q in list(batcher.queues.values())
                if getattr(q, "loading_since", None) is not None
            ]
            loaded = sum(len(q.loads) for q in list(batcher.queues.values()))
            if loading:
                parts.append(f"loading {', '.join(loading)}")
            if loaded:
                parts.append(f"{loaded} model{'s' if loaded != 1 else ''} loaded")
            if batcher.in_flight:
                parts.append(
                    f"{batcher.in_flight} batch{'es' if batcher.in_flight != 1 else ''} in flight"
                )
        if self.totals.get("waiting"):
            parts.append(f"{self.totals['waiting']} waiting for an answer")
        return ", ".join(parts)

    def _start_rich(self) -> None:
        # rich is imported only here: a run in a pipe or a test never pays for it.
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import (
            Progress as RichProgress,
        )

        self._rich = RichProgress(
            TextColumn("{task.description:<24}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            _rate_column(),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=Console(file=self.stream, force_terminal=True),
            refresh_per_second=10,
            transient=False,
        )
        label = f"{self._runs} runs" if self._runs > 1 else "all"
        self._overall = self._rich.add_task(label, total=0, status="")
        self._rich.start()

    def _hide_old_bars(self) -> None:
        """Keep the bars of the SHOWN_BARS most recently started nodes that are not done."""
        open_nodes = [n for n in self.nodes.values() if n.finished < n.planned or n.planned == 0]
        for node in open_nodes[:-SHOWN_BARS]:
            self._rich.update(node.task, visible=False)

    def _summary(self) -> None:
        rows = [
            [
                node_id,
                str(n.finished),
                str(n.counts.get("reused", 0)),
                str(n.counts.get("failed", 0)),
                str(n.counts.get("waiting", 0)),
                f"{n.seconds:.2f}",
            ]
            for node_id, n in self.nodes.items()
        ]
        if not rows:
            return
        header = ["node", "executions", "reused", "failed", "waiting", "time (s)"]
        if self.terminal:
            from rich.console import Console
            from rich.table import Table

            table = Table(
                *header,
                title=f"{self._finished():,} executions in {time.time() - self.started:.1f} s",
            )
            for row in rows:
                table.add_row(*row)
            Console(file=self.stream, force_terminal=True).print(table)
        else:
            from genarun.store.reports import table as plain_table

            self._line(plain_table(rows, header))

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    @staticmethod
    def _counts_text(counts: Counter[str]) -> str:
        return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def _rate_column() -> Any:
    """A column of executions per second (rich's own speed column counts bytes); made here,
    as rich is imported only for a terminal."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.1f}/s" if speed else "", style="progress.data.speed")

    return RateColumn()
