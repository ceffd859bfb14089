"""Table and column names in SQL text that the standard library's sqlite3 runs.

A database file is data someone may send: its tables' and columns' names are whatever its
author wrote, and pasted into SQL they are SQL (`export db` once copied every experiment of a
file, with an output folder of its choosing, because one column's name ended a column list
and began a query). Names are read with bound parameters, checked against genarun's own
schema before they reach a statement, and quoted there all the same.
"""

from __future__ import annotations

import sqlite3

# How much of a strange name a message repeats: enough to recognise it, not a page of it.
_SHOWN_CHARS = 60


def quoted(name: str) -> str:
    """`name` as an SQL identifier that means exactly that name."""
    return '"' + name.replace('"', '""') + '"'


def table_columns(conn: sqlite3.Connection, table: str, schema: str = "main") -> list[str]:
    """The columns of `schema`.`table` in file order, read without putting `table` in SQL."""
    rows = conn.execute("SELECT name FROM pragma_table_info(?, ?)", (table, schema))
    return [str(name) for (name,) in rows]


def shown(name: str) -> str:
    """A name from a file as a message shows it: quoted, escaped, shortened."""
    text = ascii(name)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."
