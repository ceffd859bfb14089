"""The database's tables, as SQLAlchemy Core tables: the schema's source of truth.

Reading commands query them through SQLAlchemy. A run writes through the standard library's
sqlite3 (genarun/store/db.py), which creates the tables from genarun/store/schema_sql.py: the
DDL generated from these definitions (`python -m genarun.store.tables` writes it again after a
change; tests/test_store_schema.py fails until it matches), so a run never imports SQLAlchemy.
"""

from __future__ import annotations

import sys
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
)

metadata: MetaData = MetaData()


def execution_columns() -> tuple[Column[Any], ...]:
    """The columns that place a row at one execution of a run: its own id, the run, the node
    and the foreach path (its indexes as JSON, e.g. "[2, 0]"). Fresh columns for each table."""
    return (
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("run_id", String(32), ForeignKey("runs.id"), nullable=False),
        Column("node_id", String, nullable=False),
        Column("path", String, nullable=False),
    )


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
    *execution_columns(),
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
    # JSON (genarun.usage.meter): per model, invocations, tokens, images, API requests, busy
    # and GPU seconds, and the batches the execution rode in; NULL when no model ran for it
    # (and in databases written before the column).
    Column("usage", Text),
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
    *execution_columns(),
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
    *execution_columns(),
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
    *execution_columns(),
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


# Tables defined in their own modules join `metadata` here, so every Store creates them,
# whichever command opened the database.
from genarun.store import assembled as _assembled_tables  # noqa: E402, F401
from genarun.store import clusters as _clusters  # noqa: E402, F401
from genarun.store import copies as _copies  # noqa: E402, F401
from genarun.store import human as _human_tables  # noqa: E402, F401
from genarun.store import pauses as _pauses  # noqa: E402, F401


def schema() -> dict[str, Any]:
    """What genarun/store/schema_sql.py holds for the tables above: each table's columns, the
    scalar defaults SQLAlchemy fills in on insert, the column types (to add a missing column to
    an older file) and the CREATE statements, in the order `metadata.create_all` uses."""
    from sqlalchemy.dialects import sqlite
    from sqlalchemy.schema import CreateIndex, CreateTable

    dialect = sqlite.dialect()
    columns: dict[str, tuple[str, ...]] = {}
    types: dict[str, dict[str, str]] = {}
    defaults: dict[str, dict[str, object]] = {}
    ddl: list[str] = []
    for table in metadata.sorted_tables:
        columns[table.name] = tuple(c.name for c in table.columns)
        types[table.name] = {c.name: str(c.type.compile(dialect=dialect)) for c in table.columns}
        found = {
            c.name: c.default.arg  # type: ignore[attr-defined]
            for c in table.columns
            if c.default is not None and c.default.is_scalar
        }
        if found:
            defaults[table.name] = found
        ddl.append(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)).strip())
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            ddl.append(str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect)))
    return {"COLUMNS": columns, "TYPES": types, "DEFAULTS": defaults, "DDL": tuple(ddl)}


def write_schema_sql() -> Path:
    """Write genarun/store/schema_sql.py from the tables (then ruff-formatted, if ruff is here)."""
    import shutil
    import subprocess

    values = schema()
    target = Path(__file__).with_name("schema_sql.py")
    target.write_text(
        '"""Generated by `python -m genarun.store.tables` from genarun/store/tables.py: do not '
        "edit.\n\nThe schema a run creates and writes with the standard library's sqlite3, "
        'without importing\nSQLAlchemy (genarun/store/db.py)."""\n\n'
        f"COLUMNS: dict[str, tuple[str, ...]] = {values['COLUMNS']!r}\n\n"
        f"TYPES: dict[str, dict[str, str]] = {values['TYPES']!r}\n\n"
        f"DEFAULTS: dict[str, dict[str, object]] = {values['DEFAULTS']!r}\n\n"
        f"DDL: tuple[str, ...] = {values['DDL']!r}\n"
    )
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if Path(ruff).exists():
        subprocess.run([ruff, "format", "-q", str(target)], check=False)
    return target


if __name__ == "__main__":
    # Through the package's own module: run as __main__, this file's tables would be a copy.
    from genarun.store import tables

    print(f"wrote {tables.write_schema_sql()}")
