"""Which experiments of a database are copies (`genarun export db`) of another database's: a
copy names the same run folders, which belong to the original, so deleting the copy keeps them."""

from __future__ import annotations

from sqlalchemy import Column, Float, String, Table, Text

from genarun.store.db import metadata

copied_experiments = Table(
    "copied_experiments",
    metadata,
    Column("experiment_id", String(32), primary_key=True),
    Column("source_db", Text, nullable=False),
    Column("copied", Float, nullable=False),
)
