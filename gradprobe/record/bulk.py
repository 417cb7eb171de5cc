"""Bulk inserts fast enough for the probe's flush (64 layers x 16 quantities per step).

sqlite3's executemany pays about half a microsecond per row on top of the cost per value,
and building a tuple per row costs as much again. One INSERT with many rows in its VALUES
clause, bound from one flat list of floats, pays neither: measured on 64 x 16 x 50-step
flushes (benchmarks/store_append.py) it is about 25% faster than executemany.
"""

from __future__ import annotations

import sqlite3

import numpy as np

# Rows per INSERT: past ~100, longer statements stop paying off.
_ROWS_PER_INSERT = 100
# SQLite's default bound on ? parameters per statement (32766 since 3.32, 999 before).
_OLD_VARIABLE_LIMIT = 999


def _variable_limit(conn: sqlite3.Connection) -> int:
    getlimit = getattr(conn, "getlimit", None)  # Python >= 3.11
    if getlimit is None:
        return _OLD_VARIABLE_LIMIT
    return getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)


def insert_block(
    conn: sqlite3.Connection, table: str, columns: list[str], block: np.ndarray
) -> None:
    """Insert the rows of `block` into `table`.

    Args:
        conn: a connection inside a write transaction.
        table: the table name.
        columns: the column names, one per column of `block`.
        block: array of shape (n_rows, n_columns) of float64; NaN is stored as NULL (SQLite
            binds a NaN as NULL), and a whole number lands as INTEGER in an INTEGER column.
    """
    n_rows, width = block.shape
    per_insert = max(1, min(_ROWS_PER_INSERT, _variable_limit(conn) // width))
    row = "(" + ", ".join("?" * width) + ")"
    head = f"INSERT INTO {table}(" + ", ".join(f'"{c}"' for c in columns) + ") VALUES "
    flat = block.reshape(-1).tolist()
    full = head + ", ".join([row] * per_insert)
    for start in range(0, n_rows, per_insert):
        count = min(per_insert, n_rows - start)
        sql = full if count == per_insert else head + ", ".join([row] * count)
        conn.execute(sql, flat[start * width : (start + count) * width])
