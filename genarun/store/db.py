"""SQLite storage through SQLAlchemy 2 Core: experiments, runs, executions, logs, embeddings.

Every finished execution is committed at once (WAL mode), so a crash, kill or Ctrl-C never loses
finished work, and two genarun processes can write one database at the same time.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DatabaseError

from genarun.errors import StoreError, did_you_mean
from genarun.redaction import redact_row
from genarun.store import opening

metadata = MetaData()

experiments = Table(
    "experiments",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String, nullable=False),
    Column("tree_path", String),
    Column("tree_hash", String),
    Column("matrix", Text),  # JSON: key -> values
    Column("created", Float, nullable=False),
    Column("out_dir", String),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("experiment_id", String(32), ForeignKey("experiments.id"), index=True),
    Column("name", String, nullable=False),
    Column("tree_path", String),
    Column("tree_text", Text),
    Column("tree_hash", String),
    Column("seed", Integer),
    # 1: the seed was drawn (`seed: random`): a resume or rerun keeps drawing fresh randomness
    # per trajectory step; NULL in databases written before the column (resume infers it).
    Column("seed_random", Integer),
    Column("bindings", Text),  # JSON: matrix values and --set overrides
    Column("status", String, nullable=False),  # running, completed, failed, interrupted
    Column("started", Float, nullable=False),
    Column("ended", Float),
    Column("out_dir", String),
    Column("source_run_id", String(32)),  # for reruns
    Column("error", Text),
    Column("summary", Text),  # JSON counts
    # The claim of the process running it (store/claims.py): tells a killed run from a live
    # one, and lets one process at a time resume it.
    Column("pid", Integer),
    Column("host", String),
    Column("heartbeat", Float),  # refreshed every few seconds while the process runs it
    Column("plan", Text),  # JSON: what the run reuses (rerun, --only, cache), for resume
    Column("picks", Text),  # JSON: var name -> random picks drawn in the tree's vars
    # JSON: each model name the run used (alias or reference) -> what it resolved to
    # (model, provider, revision, weights: genarun.models.weights.resolved)
    Column("models", Text),
)

executions = Table(
    "executions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.id"), nullable=False),
    Column("node_id", String, nullable=False),
    Column("path", String, nullable=False),  # foreach indexes as JSON, e.g. "[2, 0]"
    Column("kind", String, nullable=False),
    Column("params", Text),  # rendered parameters, JSON
    Column("input_hash", String),
    Column("cache_key", String, index=True),
    Column("output", Text),  # JSON (tagged images and embeddings)
    Column("seed", Integer),
    Column("model", String),
    Column("status", String, nullable=False),  # done, failed, skipped
    Column("started", Float),
    Column("ended", Float),
    Column("duration", Float),
    Column("error", Text),
    # JSON: a failed execution's model text (e.g. an answer `parse: json` could not read)
    Column("raw_output", Text),
    Column("picks", Text),  # JSON list of pick records
    Column("reused_from", Integer),  # execution id whose output was reused
    Column("attempts", Integer, default=1),
    Index("ix_executions_run_node", "run_id", "node_id", "path"),
)

logs = Table(
    "logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.id"), index=True),
    Column("node_id", String),
    Column("path", String),
    Column("time", Float, nullable=False),
    Column("level", String, nullable=False),
    Column("message", Text, nullable=False),
)

embeddings = Table(
    "embeddings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.id"), index=True),
    Column("node_id", String),
    Column("path", String),
    Column("item", Integer, nullable=False, default=0),
    Column("model", String, nullable=False),
    Column("dim", Integer, nullable=False),
    Column("vector", LargeBinary, nullable=False),  # float32, little-endian
    Column("source", Text),  # the embedded text, or the image path
)

# Vectors of the base documents' chunks, once per (content hash, model identity): an edited
# document re-embeds only the chunks it changed (genarun.retrieval.documents).
document_vectors = Table(
    "document_vectors",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("content_hash", String, nullable=False),
    Column("model", String, nullable=False),  # genarun.retrieval.scopes.model_identity
    Column("dim", Integer, nullable=False),
    Column("vector", LargeBinary, nullable=False),  # float32, little-endian
    Column("created", Float),
    Index("ix_document_vectors_key", "content_hash", "model", unique=True),
)

# Trajectories of `cycle` nodes: one row per cycle execution and one per step, each committed
# as it happens, so a resumed run continues from its last stored step.
trajectories = Table(
    "trajectories",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.id"), nullable=False),
    Column("node_id", String, nullable=False),
    Column("path", String, nullable=False),
    Column("network", Text, nullable=False),  # JSON list of model labels
    Column("start", Text),
    Column("max_steps", Integer, nullable=False),
    Column("embed_models", Text),  # JSON list of model labels
    Column("seed", Integer),
    Column("seed_random", Integer, nullable=False, default=0),
    Column("length", Integer, nullable=False, default=0),
    Column("status", String, nullable=False),  # running, done, failed
    Column("stop_reason", String),  # max_steps, repeat, failed
    Column("loop_length", Integer),
    Column("hit_limit", Integer),  # how many text outputs stopped at the token ceiling
    Column("error", Text),
    Column("updated", Float),
    Index("ix_trajectories_run_node", "run_id", "node_id", "path", unique=True),
)

trajectory_steps = Table(
    "trajectory_steps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.id"), nullable=False),
    Column("node_id", String, nullable=False),
    Column("path", String, nullable=False),
    Column("step", Integer, nullable=False),
    Column("model", String, nullable=False),
    Column("kind", String, nullable=False),  # text or image
    Column("value", Text, nullable=False),  # the text, or the image path in the run folder
    Column("sha256", String, nullable=False),
    Column("seed", Integer),
    Column("embeddings", Text),  # JSON list of embedding ids
    Column("duration", Float),
    Column("hit_limit", Integer),  # a text cut at the token ceiling: 1; ended by itself: 0
    # Measurements (NULL where the model does not tell): tokens generated for a text; for an
    # image, its prompt's tokens in the painter's text encoder, whether the encoder cut the
    # prompt (CLIP reads 77), and the PNG's size in bytes.
    Column("tokens", Integer),
    Column("prompt_tokens", Integer),
    Column("prompt_truncated", Integer),
    Column("bytes", Integer),
    Column("created", Float),
    Index("ix_trajectory_steps_key", "run_id", "node_id", "path", "step", unique=True),
)

persistence = Table(
    "persistence",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.id"), nullable=False),
    Column("node_id", String, nullable=False),
    Column("path", String, nullable=False, default="[]"),
    Column("embedding_model", String, nullable=False),
    Column("maxdim", Integer, nullable=False),
    Column("points", Integer, nullable=False),
    Column("diagrams", Text, nullable=False),  # JSON of genarun.analysis.Diagrams.to_json()
    Column("entropy", Text, nullable=False),  # JSON: persistence entropy per dimension
    Column("duration", Float),
    Column("created", Float, nullable=False),
    Index(
        "ix_persistence_key", "run_id", "node_id", "path", "embedding_model", "maxdim", unique=True
    ),
)

# The answers of `fetch` executions (genarun/store/responses.py): what the API said, for
# `runs show` and the `cache: {ttl}` reuse. Secret values never reach it (placeholders only).
responses = Table(
    "responses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.id"), nullable=False),
    Column("node_id", String, nullable=False),
    Column("path", String, nullable=False),
    Column("request", Text, nullable=False),  # JSON: method, url, params, headers, json, body
    Column("status", Integer),
    Column("content_type", String),
    Column("headers", Text),  # JSON of the response's headers
    Column("body", Text),  # the body, when small
    Column("asset", String),  # else the file in the run's folder that holds it
    Column("size", Integer),
    Column("sha256", String),
    Column("cache_key", String, index=True),
    Column("fetched", Float, nullable=False),
    Column("elapsed", Float),
    Column("attempts", Integer),
    Column("reused_from", Integer),  # the response a `cache: {ttl}` reused
    Index("ix_responses_run_node", "run_id", "node_id", "path"),
)

# Prebuilt statements for the per-step writes of trajectories (parameters bound per call).
_INSERT_EMBEDDING = insert(embeddings)


# Every column but the id, and a plain insert of them for record_executions.
_COLUMNS = tuple(c.name for c in executions.columns if c.name != "id")
_INSERT_EXECUTION = (
    f"INSERT INTO executions ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
)


def default_db_path() -> Path:
    return Path(os.environ.get("GENARUN_DB") or "genarun.db")


def new_id() -> str:
    return uuid.uuid4().hex


def now() -> float:
    return time.time()


def iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def path_key(path: Sequence[int]) -> str:
    return json.dumps(list(path))


class Store:
    """One SQLite database. Methods commit their own writes."""

    def __init__(self, db_path: Path | str | None = None, *, writing: bool = False):
        """Open (or create) a database; `writing`: the command will write to it, so a
        read-only one is refused at once, before any other effect."""
        self.path = Path(db_path) if db_path else default_db_path()
        memory = str(self.path) == ":memory:"
        # Read with the standard library first: damage and a newer schema are reported before
        # anything is written to the file.
        found = opening.inspect(self.path, metadata) if not memory else None
        self.read_only = bool(found and found.read_only)
        if found and found.read_only and found.missing:
            raise opening.read_only_error(
                self.path, "written by an older genarun: open it once writable to upgrade it"
            )
        self.engine: Engine = create_engine(
            opening.url(self.path, found.mode if found else None),
            connect_args={"timeout": 60, "check_same_thread": False},
        )
        try:
            if not memory and not found:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            event.listen(self.engine, "handle_error", opening.translate(self.path, self.read_only))
            if not self.read_only:
                event.listen(self.engine, "connect", opening.sqlite_pragmas)
                opening.create_schema(self.engine, metadata)
                opening.record_version(self.engine)
        except BaseException as exc:
            # No connection may outlive a failed open: one left in the pool holds its locks
            # for as long as the process lives.
            self.engine.dispose()
            if not isinstance(exc, OSError | DatabaseError):
                raise
            reason = exc.strerror if isinstance(exc, OSError) else opening.reason(exc.orig)
            if isinstance(exc, FileExistsError | NotADirectoryError):
                reason = "a folder on its path is a file"
            raise StoreError(
                f"cannot open the database {self.path}: {reason} "
                "(name another with --db or $GENARUN_DB)"
            ) from None
        if not memory:
            opening.remember(self.path, self)
        if writing and self.read_only:
            self.engine.dispose()
            raise opening.read_only_error(self.path)
        self._conn: Connection | None = None
        self._grouped = False  # inside transaction(): writes wait for its commit
        # Rows that belong to an execution (a fetch's response), written with the next
        # executions in one commit: a commit per row cost more than the request (bench/fetch.py).
        self._deferred: list[tuple[Table, dict[str, Any]]] = []

    @classmethod
    def existing(cls, db_path: Path | str | None = None) -> Store:
        """The store of a database that must exist already (commands that read runs): a
        missing file is a message, not a new empty database left in the current folder."""
        path = Path(db_path) if db_path else default_db_path()
        if str(path) != ":memory:" and not path.is_file():
            where = "" if path.is_absolute() else f" (in {Path.cwd()})"
            raise StoreError(
                f"no database at {path}{where}: run a tree first, or point at one with --db or $GENARUN_DB"
            )
        return cls(path)

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            self._conn = self.engine.connect()
        return self._conn

    def close(self) -> None:
        if self._deferred and not self.read_only:
            with contextlib.suppress(Exception):
                self._write_deferred()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.engine.dispose()

    # --- writes -------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Writes inside commit together (one commit, all or nothing) instead of one by one."""
        if self._grouped:
            yield
            return
        self._grouped = True
        try:
            yield
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        finally:
            self._grouped = False

    def _write(self, stmt: Any, rows: Any = None) -> Any:
        try:
            if isinstance(stmt, str):  # plain SQL with positional rows (record_executions)
                result = self.conn.exec_driver_sql(stmt, rows)
            elif rows is not None:
                result = self.conn.execute(stmt, rows)
            else:
                result = self.conn.execute(stmt)
            if not self._grouped:
                self.conn.commit()
        except BaseException:
            # Ctrl-C between insert and commit: roll back, so writing the rows again (the
            # executor flushes once more) cannot store them twice.
            self.conn.rollback()
            raise
        return result

    def create_experiment(self, **values: Any) -> str:
        values.setdefault("id", new_id())
        values.setdefault("created", now())
        self._write(insert(experiments).values(**values))
        return str(values["id"])

    def create_run(self, **values: Any) -> str:
        values.setdefault("id", new_id())
        values.setdefault("started", now())
        values.setdefault("status", "running")
        self._write(insert(runs).values(**values))
        return str(values["id"])

    def update_run(self, run_id: str, **values: Any) -> None:
        # Secrets and their echoes are masked in every text written here (errors, summaries).
        values = redact_row(values)
        self._write(update(runs).where(runs.c.id == run_id).values(**values))

    def record_executions(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert finished executions and commit them together."""
        # The hot write path (one row per execution): plain SQL with positional tuples goes
        # straight to sqlite3's executemany; Core's per-row parameter building cost more than
        # the insert itself. Missing keys are NULL, as before.
        if not rows and not self._deferred:
            return
        with self.transaction():
            self._write_deferred()
            if rows:
                rows = [redact_row(row) for row in rows]
                self._write(_INSERT_EXECUTION, [tuple(map(row.get, _COLUMNS)) for row in rows])

    def defer_row(self, table: Table, row: dict[str, Any]) -> None:
        """Write `row` (already redacted) with the next executions, in their commit."""
        self._deferred.append((table, row))

    def _write_deferred(self) -> None:
        deferred, self._deferred = self._deferred, []
        for table, group in itertools.groupby(deferred, key=lambda item: item[0]):
            self._write(insert(table), [row for _table, row in group])

    def add_logs(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self._write(insert(logs), [redact_row(row) for row in rows])

    def add_embeddings(self, rows: Sequence[dict[str, Any]]) -> list[int]:
        # A NaN or zero vector is refused here, where every vector is written, rather than
        # found later by a distance that is NaN or a diagram that is wrong (`genarun doctor`
        # finds those written before this check).
        from genarun.store.vectors import check_vector

        for row in rows:
            check_vector(row)
        # One prebuilt statement with parameters: building `.values(**row)` each time cost 4x.
        ids = [_inserted_id(self.conn.execute(_INSERT_EMBEDDING, row)) for row in rows]
        if not self._grouped:
            self.conn.commit()
        return ids

    def copy_embeddings(
        self, ids: Iterable[int], *, run_id: str, node_id: str, path: str
    ) -> dict[int, int]:
        """Copy the embedding rows `ids` that belong to other runs to (run, node, path), in one
        transaction; returns each copy's new id by its old one (rows already the run's are
        left as they are)."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        rows = [
            dict(r)
            for r in self.conn.execute(
                select(embeddings)
                .where(embeddings.c.id.in_(wanted), embeddings.c.run_id != run_id)
                .order_by(embeddings.c.id)
            ).mappings()
        ]
        if not rows:
            return {}
        copies = [
            {
                **{k: v for k, v in r.items() if k != "id"},
                "run_id": run_id,
                "node_id": node_id,
                "path": path,
            }
            for r in rows
        ]
        with self.transaction():
            new_ids = self.add_embeddings(copies)
        return dict(zip((r["id"] for r in rows), new_ids, strict=True))

    # --- reads --------------------------------------------------------------------------
    def resolve_run(self, ref: str) -> dict[str, Any]:
        """A run by id, unique id prefix, `latest`, or its output folder (the one holding its
        run.json, as `genarun run` prints it)."""
        where = str(self.path)
        if where == "genarun.db" and not os.environ.get("GENARUN_DB"):  # perhaps the wrong folder
            where += " in this folder (--db or $GENARUN_DB name another database)"
        if ref.strip().lower() == "latest":
            row = (
                self.conn.execute(select(runs).order_by(runs.c.started.desc()).limit(1))
                .mappings()
                .first()
            )
            if row is None:
                raise StoreError(f"no runs in {where}")
            return dict(row)
        prefix = ref.strip().lower()
        run_json = Path(ref) / "run.json"
        if not re.fullmatch(r"[0-9a-f]+", prefix) and run_json.is_file():
            with contextlib.suppress(ValueError, AttributeError):
                prefix = str(json.loads(run_json.read_text()).get("run", ""))
        # Ids are hex: anything else (an empty string, LIKE's % and _) would match other runs.
        if not re.fullmatch(r"[0-9a-f]+", prefix):
            hint = " (did you mean `latest`?)" if did_you_mean(prefix, ["latest"]) else ""
            raise StoreError(
                f"'{ref}' is not a run{hint}: give `latest`, a run id or its first characters, or its output folder (see `genarun runs list`)"
            )
        rows = (
            self.conn.execute(select(runs).where(runs.c.id.like(prefix + "%")).limit(6))
            .mappings()
            .all()
        )
        if not rows:
            raise StoreError(f"no run matches '{ref}' in {where} (see `genarun runs list`)")
        if len(rows) > 1:
            shown = ", ".join(r["id"][:12] for r in rows[:5])
            raise StoreError(
                f"'{ref}' matches several runs ({shown}...): give more characters of the id"
            )
        return dict(rows[0])

    def list_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest runs with their execution counts and `paused` (when, or None)."""
        from genarun.store.pauses import run_pauses

        counts = (
            select(executions.c.run_id, func.count().label("executions"))
            .group_by(executions.c.run_id)
            .subquery()
        )
        stmt = (
            select(runs, counts.c.executions, run_pauses.c.paused)
            .outerjoin(counts, counts.c.run_id == runs.c.id)
            .outerjoin(run_pauses, run_pauses.c.run_id == runs.c.id)
            .order_by(runs.c.started.desc())
            .limit(limit)
        )
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def run_executions(self, run_id: str) -> list[dict[str, Any]]:
        stmt = select(executions).where(executions.c.run_id == run_id).order_by(executions.c.id)
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def run_logs(self, run_id: str) -> list[dict[str, Any]]:
        stmt = select(logs).where(logs.c.run_id == run_id).order_by(logs.c.id)
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def runs_of_experiment(self, experiment_id: str) -> list[dict[str, Any]]:
        stmt = select(runs).where(runs.c.experiment_id == experiment_id).order_by(runs.c.started)
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def embedding_vectors(self, ids: Iterable[int]) -> dict[int, Any]:
        import numpy as np

        ids = list(ids)
        stmt = select(embeddings.c.id, embeddings.c.vector).where(embeddings.c.id.in_(ids))
        return {row.id: np.frombuffer(row.vector, dtype="<f4") for row in self.conn.execute(stmt)}


# Tables defined in their own modules join `metadata` here, so every Store creates them,
# whichever command opened the database.
from genarun.store import assembled as _assembled_tables  # noqa: E402, F401
from genarun.store import clusters as _clusters  # noqa: E402, F401
from genarun.store import copies as _copies  # noqa: E402, F401
from genarun.store import human as _human_tables  # noqa: E402, F401
from genarun.store import pauses as _pauses  # noqa: E402, F401


def _inserted_id(result: Any) -> int:
    """The primary key an INSERT gave its row."""
    key = result.inserted_primary_key
    assert key is not None, "an INSERT of one row has a primary key"
    return int(key[0])
