"""The tables whose rows belong to runs, read from the schema instead of listed by hand.

Deleting an experiment, copying one (`export db`) and finding orphans (`doctor`) each need
every such table. Hand-written lists missed the tables added after them (human requests and
answers, responses, assembled requests, pauses): deleting an experiment whose run had asked a
person failed on the foreign key, and a copy left those rows behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Table, select


@dataclass(frozen=True)
class RunTable:
    """A table holding rows of runs: by its own run_id column, or (`via`) through the row of
    another such table that its key names (a human answer belongs to its request's run)."""

    table: Table
    via: tuple[Column[Any], Table] | None = None  # (this table's key column, the run table)

    def where(self, run_ids: Sequence[str]) -> Any:
        """The SQLAlchemy condition selecting the rows of `run_ids`."""
        if self.via is None:
            return self.table.c.run_id.in_(run_ids)
        key, parent = self.via
        target = next(iter(key.foreign_keys)).column.name
        return key.in_(select(parent.c[target]).where(parent.c.run_id.in_(run_ids)))

    def where_sql(self, marks: str, schema: str = "main") -> str:
        """The same condition as SQL text over `marks` (`?,?`), for sqlite3 (one parameter
        list of the run ids)."""
        if self.via is None:
            return f"run_id IN ({marks})"
        key, parent = self.via
        target = next(iter(key.foreign_keys)).column.name
        return (
            f"{key.name} IN (SELECT {target} FROM {schema}.{parent.name} WHERE run_id IN ({marks}))"
        )


def run_tables() -> list[RunTable]:
    """Every table holding rows of runs, parents before children (copy in this order; delete
    in the reverse, so that no row is left pointing at a removed one)."""
    from genarun.store.tables import metadata  # with the tables of the other store modules

    found: list[RunTable] = []
    by_name: dict[str, RunTable] = {}
    for table in metadata.sorted_tables:
        if table.name == "runs":
            continue
        if "run_id" in table.c:
            entry = RunTable(table)
        else:
            keys = [  # through a table with its own run_id (none goes deeper today)
                (key.parent, key.column.table)
                for key in table.foreign_keys
                if key.column.table.name in by_name and by_name[key.column.table.name].via is None
            ]
            if not keys:
                continue
            entry = RunTable(table, (keys[0][0], by_name[keys[0][1].name].table))
        found.append(entry)
        by_name[table.name] = entry
    return found
