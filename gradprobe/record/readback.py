"""Reading metrics.sqlite back into dense arrays: the parts a `Record` is built from."""

from __future__ import annotations

import json
import sqlite3
from itertools import groupby
from typing import Any

import numpy as np

from gradprobe.record import schema

# Rows fetched at a time when reading back.
_CHUNK_ROWS = 10_000


def read_parts(conn: sqlite3.Connection) -> dict[str, Any]:
    """Everything stored, as keyword arguments of `Record` (all but `meta`).

    Call inside one read transaction, so that every table comes from the same snapshot.
    """
    if not schema.exists(conn):
        return {"layers": [], "steps": np.zeros(0, dtype=np.int64), "values": {}}
    infos = [json.loads(row[0]) for row in conn.execute("SELECT info FROM layers ORDER BY idx")]
    n_layers = len(infos)
    steps, step_values = _read_steps(conn)
    return {
        "layers": [info["name"] for info in infos],
        "steps": steps,
        "values": _read_layer_samples(conn, steps, n_layers),
        "step_values": step_values,
        "layer_info": infos,
        "series": _read_series(conn, steps, n_layers),
    }


def _fetch(conn: sqlite3.Connection, sql: str, width: int) -> np.ndarray:
    """All rows of `sql` as an array of shape (n_rows, width) of float64; NULL -> NaN.

    In chunks: one list of a million row tuples costs twice the time of chunks turned
    into arrays as they come. Integers (steps, layer indices) come through float64
    exactly, as appends keep steps within 2**53.
    """
    cursor = conn.execute(sql)
    chunks = [np.zeros((0, width))]
    while rows := cursor.fetchmany(_CHUNK_ROWS):
        # numpy turns the None of a NULL into NaN when the dtype is float.
        chunks.append(np.array(rows, dtype=np.float64).reshape(len(rows), width))
    return np.concatenate(chunks)


def _select(names: list[str]) -> str:
    return "".join(f', "{name}"' for name in names)


def _read_steps(conn: sqlite3.Connection) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    names = schema.columns(conn, "steps")
    table = _fetch(conn, f"SELECT step{_select(names)} FROM steps ORDER BY step", 1 + len(names))
    steps = table[:, 0].astype(np.int64)
    return steps, {name: table[:, 1 + j] for j, name in enumerate(names)}


def _read_layer_samples(
    conn: sqlite3.Connection, steps: np.ndarray, n_layers: int
) -> dict[str, np.ndarray]:
    names = schema.columns(conn, "layer_samples")
    sql = f"SELECT step, layer{_select(names)} FROM layer_samples"
    table = _fetch(conn, sql, 2 + len(names))
    at_step = np.searchsorted(steps, table[:, 0].astype(np.int64))
    at_layer = table[:, 1].astype(np.int64)
    values = {}
    for j, name in enumerate(names):
        values[name] = np.full((len(steps), n_layers), np.nan)
        values[name][at_step, at_layer] = table[:, 2 + j]
    return values


def _read_series(
    conn: sqlite3.Connection, steps: np.ndarray, n_layers: int
) -> dict[str, np.ndarray]:
    # Names and widths from series_quantities: a (step, layer) left out is NaN, and a
    # series whose rows are all left out (nothing measured yet) is all NaN.
    series = {
        name: np.full((len(steps), n_layers, width), np.nan)
        for name, width in schema.series_widths(conn).items()
    }
    sql = "SELECT quantity, step, layer, data FROM series ORDER BY quantity, step, layer"
    for name, rows in groupby(conn.execute(sql), key=lambda row: row[0]):
        rows = list(rows)
        out = series[name]
        at_step = np.searchsorted(steps, [row[1] for row in rows])
        at_layer = [row[2] for row in rows]
        out[at_step, at_layer] = [np.frombuffer(row[3], dtype="<f8") for row in rows]
    return series
