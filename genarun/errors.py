"""Typed errors. The core raises these; only `cli.py` turns them into messages and exit codes."""

from __future__ import annotations

from dataclasses import dataclass


class GenarunError(Exception):
    """Base of every error genarun reports to a user without a traceback."""

    exit_code = 1


class UserError(GenarunError):
    """Bad input from the user: a tree, an argument, a model reference. Exit code 2."""

    exit_code = 2


@dataclass
class Problem:
    """One located problem in a tree file."""

    message: str
    file: str | None = None
    line: int | None = None
    node: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "")
        if self.node:
            where = f"{where} node '{self.node}'" if where else f"node '{self.node}'"
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class TreeError(UserError):
    """One or more problems in a tree file, each with file, line, node and a fix."""

    def __init__(self, problems: list[Problem] | Problem):
        self.problems = problems if isinstance(problems, list) else [problems]
        super().__init__("\n".join(str(p) for p in self.problems))


class ModelError(UserError):
    """A model reference that cannot be used: unknown, wrong task, or weights missing."""


class StoreError(UserError):
    """A run, experiment or execution that cannot be found or used as asked."""


class InvalidVector(StoreError):
    """An embedding that is no usable vector (NaN or infinite values, all zeros, or a length
    that is not its dimension): refused when written, so analyses never meet it."""


class PriceTableError(UserError):
    """A price table that cannot be used (the file named by $GENARUN_PRICES, or genarun's own):
    unreadable, not JSON/YAML, or an entry that is no price. Said before anything is priced."""

    def __init__(self, problem: Problem):
        self.problem = problem
        super().__init__(str(problem))


class PublishError(UserError):
    """An export that cannot be made as asked: a refused path, a missing template or file."""


class NodeFailed(GenarunError):
    """A node's execution failed after its retries; the run stops with exit code 1."""

    def __init__(
        self,
        node: str,
        path: tuple[int, ...],
        error: str,
        file: str | None = None,
        line: int | None = None,
    ):
        self.node, self.path, self.error = node, path, error
        self.file, self.line = file, line
        index = "".join(f"[{i}]" for i in path)
        where = f"{file}:{line} " if file and line else f"{file}: " if file else ""
        super().__init__(f"{where}node '{node}{index}' failed: {error}")


class Interrupted(GenarunError):
    """The user pressed Ctrl-C; finished work is stored and the run can be resumed."""

    exit_code = 130


def did_you_mean(word: str, choices: list[str] | set[str]) -> str | None:
    """A 'did you mean ...?' hint for a misspelt name, or None."""
    import difflib

    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
