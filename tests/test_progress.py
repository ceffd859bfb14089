"""Progress as people meet it: rich bars and a summary table on a terminal (checked through a
pseudo-terminal), plain lines in a log, --quiet and --verbose."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from genarun.run import progress as progress_module
from genarun.run.progress import Progress
from tests.helpers import PATIENCE

TREE = """\
genarun: 1
name: progress
seed: 1
models:
  slow: {provider: dummy, id: dummy, options: {delay: 0.05}}
nodes:
  - id: plan
    kind: template
    text: '["a", "b", "c", "d", "e", "f"]'
    parse: json
    children:
      - id: article
        kind: generate
        foreach: plan
        model: slow
        prompt: "Write about {{ item }}"
        max_tokens: 8
  - id: footer
    kind: template
    text: "the end"
"""

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_in_terminal(args: list[str], cwd: Path, timeout: float = 120) -> str:
    """Run `python -m genarun ARGS` with a pseudo-terminal as its stdout and stderr; return
    what the terminal received (escape sequences removed)."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "genarun", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
        env=env,
    )
    os.close(terminal)
    received = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed: the process is gone
                break
            if not chunk:
                break
            received += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=PATIENCE)
    os.close(controller)
    assert process.returncode == 0, received.decode(errors="replace")
    return _ANSI.sub("", received.decode(errors="replace").replace("\r", "\n"))


@pytest.fixture
def progress_tree(workdir: Path) -> Path:
    path = workdir / "progress.yaml"
    path.write_text(TREE)
    return path


@pytest.mark.slow  # two processes on a terminal, one of them to see the cache reused
def test_terminal_shows_bars_rate_and_a_summary_table(workdir: Path, progress_tree: Path) -> None:
    shown = run_in_terminal(["run", str(progress_tree)], workdir)
    # A bar per node with done/total: the foreach node's total is its 6 items.
    assert re.search(r"article\s+━+\s+6/6", shown), shown
    assert re.search(r"plan\s+━+\s+1/1", shown)
    assert re.search(r"all\s+━+\s+8/8", shown)  # plan, 6 articles, footer
    assert re.search(r"\d+\.\d/s", shown)  # the rate
    # The summary table: per node executions, reused, failed, waiting, time.
    assert "8 executions in" in shown
    header = re.search(r"node\s+.\s+executions\s+.\s+reused\s+.\s+failed\s+.\s+waiting", shown)
    assert header, shown
    assert re.search(r"article\s+.\s+6\s+.\s+0\s+.\s+0\s+.\s+0\s+.\s+\d+\.\d\d", shown)
    assert "run " in shown and ": 8 done" in shown  # the outcome line stays
    # Run again: every execution is reused from the cache, and the table says so.
    again = run_in_terminal(["run", str(progress_tree)], workdir)
    assert re.search(r"article\s+.\s+6\s+.\s+6\s+.\s+0", again), again


def test_quiet_terminal_shows_only_the_outcome(workdir: Path, progress_tree: Path) -> None:
    shown = run_in_terminal(["run", str(progress_tree), "--quiet"], workdir)
    assert "━" not in shown and "executions in" not in shown
    assert ": 8 done" in shown


def test_not_a_terminal_is_silent_for_a_short_run_and_verbose_adds_lines(
    cli: Callable[..., Result], progress_tree: Path
) -> None:
    plain = cli("run", progress_tree)
    assert plain.exit_code == 0, plain.output
    assert "━" not in plain.output and "executions" not in plain.output
    verbose = cli("run", progress_tree, "--verbose", "--no-cache")
    assert verbose.exit_code == 0, verbose.output
    assert "━" not in verbose.output and "\x1b[" not in verbose.output
    assert re.search(r"^article: 6 done \(\d+\.\d s\)$", verbose.output, re.M), verbose.output
    assert re.search(
        r"^node\s+executions\s+reused\s+failed\s+waiting\s+time \(s\)$", verbose.output, re.M
    )
    assert re.search(r"^article\s+6\s+0\s+0\s+0\s+\d+\.\d\d$", verbose.output, re.M)


def test_plain_lines_come_at_intervals_in_a_long_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a terminal: a line every PLAIN_EVERY seconds with done/planned, the rate and the
    models loading, batches in flight and waiting steps."""
    monkeypatch.setattr(progress_module, "PLAIN_EVERY", 0.0)
    stream = io.StringIO()
    progress = Progress(stream=stream, enabled=False)
    progress.start([object()])
    progress.scheduled("article", 4)
    progress.finished(None, "article", "done")
    progress.finished(None, "article", "waiting")
    progress.tick()
    progress.stop()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines  # no table unless --verbose
    assert re.fullmatch(
        r"progress: 2/4 executions, \d+\.\d/s, \d+ s; 1 waiting for an answer", lines[0]
    )


def test_a_bad_verbosity_is_refused() -> None:
    with pytest.raises(ValueError):
        Progress(verbosity="loud")
