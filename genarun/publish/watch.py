"""`genarun watch`: rerun trees when their files change, and refresh their site exports.

A tree is run again when its file, or a file it names (a local image, a document: any string
value that is the path of an existing file beside it), changes. Every execution whose kind,
parameters, inputs, model and seed are unchanged comes from the execution cache, so an edit to
one node runs that node and what depends on it. A tree with `site.out` has its export
refreshed after each run that finished (`export site` into that folder, replacing its files).
Polling (mtime and size) keeps it dependency-free and works on every file system.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genarun.errors import GenarunError, Interrupted
from genarun.run.interrupts import taken_by_last_run


@dataclass
class WatchEvent:
    """What one pass did for one tree."""

    tree: Path
    outcome: Any = None  # the run's Outcome
    error: str | None = None
    exported: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def files_read(tree: Path) -> list[Path]:
    """The tree file and the files beside it that it names (plain paths, not templates)."""
    import yaml

    out = [tree]
    try:
        data = yaml.safe_load(tree.read_text())
    except (OSError, yaml.YAMLError, ValueError):
        return out
    base = tree.parent.resolve()
    for text in _strings(data):
        if "{{" in text or "{%" in text or "\n" in text or len(text) > 300:
            continue
        candidate = (base / text).resolve()
        try:
            inside = candidate.is_relative_to(base) and candidate.is_file()
        except OSError:
            inside = False
        if inside and candidate != tree.resolve():
            out.append(candidate)
    return out


def _stamp(paths: list[Path]) -> tuple[tuple[str, float, int], ...]:
    stamps = []
    for path in paths:
        try:
            info = path.stat()
            stamps.append((str(path), info.st_mtime, info.st_size))
        except OSError:
            stamps.append((str(path), -1.0, -1))
    return tuple(stamps)


class Watcher:
    """Reruns trees whose files changed since the last pass."""

    def __init__(self, paths: list[Path], *, db: Path | None = None, out: Path | None = None):
        self.paths = paths
        self.db = db
        self.out = out
        self.stamps: dict[Path, tuple[tuple[str, float, int], ...]] = {}

    def trees(self) -> list[Path]:
        """The tree files named, and those in the folders named."""
        from genarun.tree.discover import trees_in

        found: list[Path] = []
        for path in self.paths:
            if path.is_dir():
                found.extend(trees_in(path)[0])
            elif path.is_file():
                found.append(path)
        return found

    def changed(self) -> list[Path]:
        """Trees that are new or whose files changed since the last pass (and records them)."""
        out = []
        for tree in self.trees():
            stamp = _stamp(files_read(tree))
            if self.stamps.get(tree) != stamp:
                self.stamps[tree] = stamp
                out.append(tree)
        return out

    def poll(self) -> list[WatchEvent]:
        """One pass: run every changed tree, refresh its export."""
        return [self.run_one(tree) for tree in self.changed()]

    def run_one(self, tree: Path) -> WatchEvent:
        from genarun.run.runner import RunOptions, run_tree

        event = WatchEvent(tree)
        try:
            event.outcome = run_tree(tree, RunOptions(db=self.db, out=self.out))
        except GenarunError as exc:
            event.error = str(exc)
            return event
        if event.outcome.status == "interrupted":  # Ctrl-C: stop watching, as `run` stops
            ids = " ".join(state.id[:12] for state in event.outcome.runs)
            raise Interrupted(
                f"interrupted: finished work is saved; to finish the run: genarun resume {ids}"
            )
        if event.outcome.status != "completed":
            event.error = "; ".join(map(str, event.outcome.failures)) or event.outcome.status
        site = event.outcome.runs[0].compiled.loaded.spec.site if event.outcome.runs else None
        if site is not None and site.out and event.outcome.status == "completed":
            try:
                self._export(tree, site.out, event)
            except GenarunError as exc:
                event.error = f"site export: {exc}"
        return event

    def _export(self, tree: Path, site_out: str, event: WatchEvent) -> None:
        from genarun.errors import PublishError
        from genarun.publish.export import ExportOptions, export_site
        from genarun.publish.files import path_problem
        from genarun.store.db import Store

        problem = path_problem(site_out.rstrip("/"))
        if problem:
            raise PublishError(f"site.out '{site_out}': {problem}")
        root = tree.parent / site_out.rstrip("/")
        runs = event.outcome.runs
        store = Store(self.db)
        try:
            for state in runs:
                folder = root if len(runs) == 1 else root / state.label
                result = export_site(store, state.id, ExportOptions(out=folder, force=True))
                event.exported.append(folder)
                event.missing.extend(result.site.missing)
        finally:
            store.close()

    def loop(
        self,
        report: Callable[[WatchEvent], None],
        *,
        interval: float = 1.0,
        passes: int | None = None,
    ) -> None:
        """Poll until interrupted (or for `passes` passes that ran something)."""
        done = 0
        while passes is None or done < passes:
            events = self.poll()
            for event in events:
                report(event)
            if taken_by_last_run():  # the press came as a run finished: it still stops us
                raise KeyboardInterrupt
            if events:
                done += 1
                continue
            time.sleep(interval)
