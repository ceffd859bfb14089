"""What the executor writes to the store: a row per finished or skipped execution, and log lines.

Rows are buffered and committed in groups (the executor flushes often enough that nothing
finished is lost); warnings and errors are also shown on the progress display.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from genarun.errors import GenarunError
from genarun.graph.compiled import CompiledNode
from genarun.redaction import redact
from genarun.run.reuse import StoredExecution
from genarun.run.state import NodeResult, RunState, Status
from genarun.run.work_units import Instance
from genarun.tree.picks import picks_json
from genarun.tree.template_core import RenderError
from genarun.values import json_text

if TYPE_CHECKING:
    from genarun.store.db import Store


class ExecutionRecorder:
    """Buffers the execution rows and log lines of one experiment's runs for its store."""

    def __init__(self, store: Store | None, progress: Any = None) -> None:
        self.store = store  # None only for an experiment without runs, which records nothing
        self.progress = progress  # run.progress.Progress
        self.finished_rows: list[dict[str, Any]] = []
        self.log_rows: list[dict[str, Any]] = []

    def record_execution(
        self, inst: Instance, result: NodeResult, stored: StoredExecution | None
    ) -> None:
        """Add the row of a finished execution; `stored`: the execution whose output it reused."""
        if inst.kept and stored is not None:  # resume: the run's own rows stay as they are
            return
        run, node = inst.run, inst.node
        ended = time.time()
        params_json = json_text(_by_alias(node, inst.params), sort_keys=True)
        input_hash: str | None
        if stored is None:
            model = inst.ctx.model_name if inst.ctx else None
            identity = f"{node.kind.name}\0{model}\0{params_json}"
            input_hash = hashlib.sha256(identity.encode()).hexdigest()
            picks = picks_json(inst.picks) if inst.picks else None
            cache_key, reused_from = inst.cache_key, None
        else:  # a reused execution keeps the stored one's params, hashes, model and picks
            params_json = params_json if inst.params else (stored.params or "{}")
            model, input_hash, picks = stored.model, stored.input_hash, stored.picks
            cache_key, reused_from = inst.cache_key or stored.cache_key, stored.origin
        self.finished_rows.append(
            {
                "run_id": run.id,
                "node_id": node.id,
                "path": _path_json(inst.path),
                "kind": node.kind.name,
                "params": params_json,
                "input_hash": input_hash,
                "cache_key": cache_key,
                # A waiting execution's output is what it waits for ({key, payload}).
                "output": json_text(result.value)
                if result.status in (Status.DONE, Status.WAITING)
                else None,
                "seed": inst.seed,
                "model": model,
                # A plain str: sqlite3 binds an exact str directly, but looks a str subclass
                # (the Status enum) up in its adapters first, failing attribute lookups each.
                "status": str(result.status),
                "started": inst.started,
                "ended": ended,
                "duration": ended - inst.started,
                "error": result.error,
                "raw_output": result.raw_output,
                "picks": picks,
                "attempts": inst.attempts,
                "reused_from": reused_from,
                # A reused output cost nothing now; what it cost is on the execution it reuses.
                "usage": inst.usage.to_json() if stored is None else None,
            }
        )

    def record_skip(
        self, run: RunState, node: CompiledNode, parent_path: tuple[int, ...], reason: str
    ) -> None:
        """Add the row of a node that the run does not run (disabled, --skip, or below one)."""
        kept = run.reuse.kept.get((node.id, parent_path)) if run.reuse is not None else None
        if kept is not None and kept.status == Status.SKIPPED:  # recorded before the interruption
            return
        self.finished_rows.append(
            {
                "run_id": run.id,
                "node_id": node.id,
                "path": json.dumps(list(parent_path)),
                "kind": node.kind.name,
                "status": Status.SKIPPED.value,
                "error": reason,
                "started": time.time(),
                "ended": time.time(),
                "duration": 0.0,
            }
        )

    def logger(self, inst: Instance) -> Callable[[str, str], None]:
        """The `log(level, message)` a node's run function gets: lines name its execution."""
        return lambda level, message: self.log(inst.run, level, message, inst)

    def log(self, run: RunState, level: str, message: str, inst: Instance | None = None) -> None:
        message = redact(message)
        self.log_rows.append(
            {
                "run_id": run.id,
                "node_id": inst.node.id if inst else None,
                "path": json.dumps(list(inst.path)) if inst else None,
                "time": time.time(),
                "level": level,
                "message": message,
            }
        )
        if self.progress:
            where = f"{inst.node.id}{''.join(f'[{i}]' for i in inst.path)}: " if inst else ""
            self.progress.message(f"{level}: {where}{message}", level)

    def flush(self) -> None:
        """Commit finished executions and logs: nothing finished is ever lost."""
        if not self.finished_rows and not self.log_rows:
            return
        assert self.store is not None, "rows come from runs, which have a store"
        if self.finished_rows:
            self.store.record_executions(self.finished_rows)
            self.finished_rows = []
        if self.log_rows:
            self.store.add_logs(self.log_rows)
            self.log_rows = []


def kept_text(exc: BaseException, returned: Any) -> str | None:
    """The text a failed execution had produced, as JSON, to store with the failure: the text an
    error carries (`ParseError.text`: a model's or template's unparseable answer), or else what
    the models had returned to it when it failed, where that is text (or a list of texts)."""
    text = getattr(exc, "text", None)
    if isinstance(text, str):
        return json.dumps(text)
    if isinstance(returned, str) or (
        isinstance(returned, list) and returned and all(isinstance(t, str) for t in returned)
    ):
        return json.dumps(returned)
    return None


def short_error(exc: BaseException) -> str:
    """An error as one line for a row or a log: its message, named by type where that helps."""
    text = redact(str(exc).strip()) or type(exc).__name__
    # genarun's own errors are written for the person reading them: a class name
    # (`ApiError: POST ... failed`) says nothing to them. Other exceptions keep theirs.
    if (
        not isinstance(exc, RenderError | ValueError | GenarunError)
        and type(exc).__name__ not in text
    ):
        text = f"{type(exc).__name__}: {text}"
    return text.splitlines()[0][:500] if len(text) > 500 else text


def _by_alias(node: CompiledNode, params: dict[str, Any]) -> dict[str, Any]:
    """Params under the names the tree writes (`json`, `schema`, `from`), not the Python
    field names that avoid clashes (`json_`, `schema_`, `from_`)."""
    aliases = _aliases(type(node.spec))  # type: ignore[arg-type]
    if aliases.keys().isdisjoint(params):  # most kinds have no aliased field
        return params
    return {aliases.get(name, name): value for name, value in params.items()}


@functools.lru_cache(maxsize=256)
def _aliases(spec_type: type[Any]) -> dict[str, str]:
    """A kind's field names that the tree writes under another name, with that name."""
    return {
        name: field.alias
        for name, field in spec_type.model_fields.items()
        if field.alias and field.alias != name
    }


@functools.lru_cache(maxsize=65536)
def _path_json(path: tuple[int, ...]) -> str:
    """`json.dumps(list(path))`, computed once per path (the same paths recur per node)."""
    return json.dumps(list(path))
