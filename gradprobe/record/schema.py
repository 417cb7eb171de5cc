"""The tables of metrics.sqlite, and the `samples` view users query.

DESIGN.md promises a table `samples(step, layer, quantity, value)`. Writing it row by row
costs one row per step, layer and quantity (1,024 rows a step for 64 layers x 16
quantities), too slow for the probe's flush. So the data live in wide tables, one REAL
column per quantity, and `samples` is a view over them with exactly the promised columns:

    layers(idx INTEGER PRIMARY KEY, name TEXT UNIQUE, type TEXT, info TEXT)  -- info: JSON
    steps(step INTEGER PRIMARY KEY, <one REAL column per per-step quantity>)
    layer_samples(step, layer -> layers.idx, <one REAL column per quantity>)  -- rowid order
    series(step, layer, quantity, data BLOB)   -- data: little-endian float64, k values
    series_quantities(quantity TEXT PRIMARY KEY, width INTEGER)  -- k of each series
    VIEW samples(step, layer -> layers.name or NULL, quantity, value)  -- no NULL values

NULL is "not measured": SQLite stores a bound NaN as NULL, and readers turn it back.
"""

from __future__ import annotations

import re
import sqlite3

# Version of this layout, kept in PRAGMA user_version; bump when it changes.
FORMAT = 1

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Key columns of the wide tables; a quantity with one of these names would shadow them.
_RESERVED = frozenset({"step", "layer"})

_TABLES = (
    "CREATE TABLE IF NOT EXISTS layers("
    "idx INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, type TEXT, info TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS steps(step INTEGER PRIMARY KEY)",
    # A rowid table, not WITHOUT ROWID keyed on (step, layer): appends come in (step,
    # layer) order anyway, and the key costs a third more per append (benchmarks/).
    "CREATE TABLE IF NOT EXISTS layer_samples(step INTEGER NOT NULL, layer INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS series_quantities(quantity TEXT PRIMARY KEY, width INTEGER)",
    "CREATE TABLE IF NOT EXISTS series(step INTEGER NOT NULL, layer INTEGER NOT NULL, "
    "quantity TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY(quantity, step, layer)) "
    "WITHOUT ROWID",
)


def check_name(name: object) -> str:
    """Return `name` if it may be a quantity (it becomes a column name), else raise."""
    if not isinstance(name, str) or not _NAME.match(name) or name in _RESERVED:
        raise ValueError(
            f"quantity name {name!r} is not allowed: use lower-case letters, digits and _, "
            f"starting with a letter (^[a-z][a-z0-9_]*$), and not {sorted(_RESERVED)}"
        )
    return name


def create(conn: sqlite3.Connection) -> None:
    """Create the tables and the view if absent; refuse a newer layout. Call in a write tx."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > FORMAT:
        raise ValueError(
            f"metrics.sqlite has layout version {version}; this gradprobe reads up to "
            f"{FORMAT}: upgrade gradprobe"
        )
    for sql in _TABLES:
        conn.execute(sql)
    if version == 0:
        conn.execute(f"PRAGMA user_version = {FORMAT}")
        rebuild_view(conn)


def exists(conn: sqlite3.Connection) -> bool:
    """Whether the writer has created the tables yet."""
    sql = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'layer_samples'"
    return conn.execute(sql).fetchone()[0] > 0


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    """Quantity columns of `table` ("steps" or "layer_samples"), in the order added."""
    rows = conn.execute(f"PRAGMA table_info({table})").fetchall()
    return [row[1] for row in rows if row[1] not in _RESERVED]


def add_columns(conn: sqlite3.Connection, table: str, names: list[str]) -> None:
    """Add one REAL column per new quantity and rebuild the view. Call in a write tx."""
    for name in names:
        conn.execute(f'ALTER TABLE {table} ADD COLUMN "{check_name(name)}" REAL')
    if names:
        rebuild_view(conn)


def _view_sql(layer_columns: list[str], step_columns: list[str]) -> str:
    parts = [
        f"SELECT s.step, l.name, '{q}', s.\"{q}\" FROM layer_samples AS s "
        f'JOIN layers AS l ON l.idx = s.layer WHERE s."{q}" IS NOT NULL'
        for q in layer_columns
    ]
    parts += [
        f'SELECT step, NULL, \'{q}\', "{q}" FROM steps WHERE "{q}" IS NOT NULL'
        for q in step_columns
    ]
    # A view needs one SELECT even before any quantity exists.
    body = "\nUNION ALL\n".join(parts) or "SELECT NULL, NULL, NULL, NULL WHERE 0"
    return f"CREATE VIEW samples(step, layer, quantity, value) AS\n{body}"


def rebuild_view(conn: sqlite3.Connection) -> None:
    """(Re)create `samples` over the current quantity columns. Call in a write tx."""
    conn.execute("DROP VIEW IF EXISTS samples")
    conn.execute(_view_sql(columns(conn, "layer_samples"), columns(conn, "steps")))


def series_widths(conn: sqlite3.Connection) -> dict[str, int]:
    """Each stored series quantity and its number of values per step and layer."""
    return dict(conn.execute("SELECT quantity, width FROM series_quantities").fetchall())


def add_series(conn: sqlite3.Connection, widths: dict[str, int]) -> None:
    """Register series quantities and their widths (known ones are left as they are)."""
    rows = [(check_name(name), width) for name, width in widths.items()]
    conn.executemany("INSERT OR IGNORE INTO series_quantities VALUES (?, ?)", rows)
