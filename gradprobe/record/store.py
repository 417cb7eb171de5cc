"""`SampleStore`: metrics.sqlite, appended at each flush and readable while written."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from gradprobe.record import schema
from gradprobe.record.bulk import insert_block
from gradprobe.record.connect import open_reader, open_writer
from gradprobe.record.layers import layer_difference, layer_rows
from gradprobe.record.readback import read_parts
from gradprobe.record.record import Record, check_steps, shaped

# Steps travel as float64 in bulk inserts, exact for integers up to 2**53.
_MAX_STEP = 2**53


def _check_kinds(path: Path, kinds: dict[str, tuple[Mapping, list[str]]]) -> None:
    # One name, one kind: the samples view and a Record would otherwise mix them up.
    for kind, (given, _) in kinds.items():
        for name in given:
            schema.check_name(name)
            for other, (other_given, other_stored) in kinds.items():
                if other != kind and (name in other_given or name in other_stored):
                    raise ValueError(f"quantity {name!r} cannot be {kind} and {other} ({path})")


class SampleStore:
    """The SQLite file of a run: per-layer and per-step samples, appended in flushes.

    Every `append` is one transaction, committed before it returns, so a crash loses only
    what was never appended. Layout: see `gradprobe.record.schema`.

    Args:
        path: the database file (created unless `readonly`).
        readonly: open for reading only; works while another process appends and after
            that process was killed.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        # The probe may flush from a background thread while the user reads.
        self._lock = threading.RLock()
        if readonly:
            self._conn = open_reader(self.path)
        else:
            self._conn = open_writer(self.path)
            with self._transaction(write=True):
                schema.create(self._conn)

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front; a plain BEGIN gives readers one
        # snapshot for all their SELECTs, so they see whole appends only.
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _check_writable(self) -> None:
        if self.readonly:
            raise PermissionError(f"{self.path} was opened readonly=True")

    # -- layers -------------------------------------------------------------------------

    def write_layers(self, layer_info: Sequence[Mapping[str, Any]]) -> None:
        """Record the layers, in forward order; a second call must give the same ones.

        Args:
            layer_info: one dict per layer with at least "name" (unique) and "type".

        Raises:
            ValueError: the store already holds a different layer list (resuming a run of
                another model); the message says how the lists differ.
        """
        self._check_writable()
        rows = layer_rows(layer_info)
        with self._transaction(write=True) as conn:
            stored = conn.execute("SELECT idx, name, type, info FROM layers ORDER BY idx")
            stored = stored.fetchall()
            if not stored:
                conn.executemany("INSERT INTO layers VALUES (?, ?, ?, ?)", rows)
                return
            diff = layer_difference([r[1:3] for r in stored], [r[1:3] for r in rows])
            if diff:
                raise ValueError(f"{self.path} already holds other layers: {diff}")

    def layer_info(self) -> list[dict]:
        """One dict per layer, in forward order, as given to `write_layers`."""
        with self._transaction(write=False) as conn:
            if not schema.exists(conn):
                return []
            return [json.loads(r[0]) for r in conn.execute("SELECT info FROM layers ORDER BY idx")]

    def _n_layers(self, conn: sqlite3.Connection) -> int:
        n = conn.execute("SELECT count(*) FROM layers").fetchone()[0]
        if n == 0:
            raise ValueError(f"{self.path}: call write_layers before the first append")
        return n

    # -- append -------------------------------------------------------------------------

    def append(
        self,
        steps: Any,
        values: Mapping[str, Any],
        step_values: Mapping[str, Any] | None = None,
        series: Mapping[str, Any] | None = None,
    ) -> None:
        """Append k recorded steps in one committed transaction.

        Args:
            steps: array-like of int of shape (k,), increasing, after `last_step()`.
            values: quantity -> array of shape (k, n_layers); NaN = not measured.
            step_values: quantity -> array of shape (k,), e.g. "loss".
            series: quantity -> array of shape (k, n_layers, m); m fixed per quantity.

        Raises:
            ValueError: bad shapes, names or steps; the message names what and why.
        """
        self._check_writable()
        steps = check_steps(steps)
        if len(steps) == 0:
            return
        with self._transaction(write=True) as conn:
            n_layers = self._n_layers(conn)
            k = len(steps)
            values = {
                q: shaped(a, q, (k, n_layers), "k, n_layers", "quantity") for q, a in values.items()
            }
            step_values = {
                q: shaped(a, q, (k,), "k,", "step quantity") for q, a in (step_values or {}).items()
            }
            series = {
                q: shaped(a, q, (k, n_layers, "m"), "k, n_layers, m", "series")
                for q, a in (series or {}).items()
            }
            self._check_after_last(conn, steps)
            self._ensure_columns(conn, values, step_values, series)
            self._insert_steps(conn, steps, step_values)
            self._insert_layer_samples(conn, steps, values, n_layers)
            self._insert_series(conn, steps, series)

    def _check_after_last(self, conn: sqlite3.Connection, steps: np.ndarray) -> None:
        last = conn.execute("SELECT max(step) FROM steps").fetchone()[0]
        if last is not None and steps[0] <= last:
            raise ValueError(
                f"{self.path}: steps must come after the last stored step {last}; "
                f"got steps starting at {steps[0]}"
            )
        if abs(steps).max() > _MAX_STEP:
            raise ValueError(f"steps must lie within +-2**53 to be stored exactly; got {steps}")

    def _ensure_columns(self, conn, values: dict, step_values: dict, series: dict) -> None:
        layer_cols = schema.columns(conn, "layer_samples")
        step_cols = schema.columns(conn, "steps")
        widths = schema.series_widths(conn)
        kinds = {
            "per-layer": (values, layer_cols),
            "per-step": (step_values, step_cols),
            "series": (series, list(widths)),
        }
        _check_kinds(self.path, kinds)
        for name, array in series.items():
            if widths.setdefault(name, array.shape[2]) != array.shape[2]:
                raise ValueError(
                    f"series {name!r} has {array.shape[2]} values per layer; "
                    f"{self.path} holds {widths[name]}"
                )
        schema.add_columns(conn, "layer_samples", [q for q in values if q not in layer_cols])
        schema.add_columns(conn, "steps", [q for q in step_values if q not in step_cols])
        schema.add_series(conn, {q: widths[q] for q in series})

    @staticmethod
    def _insert_steps(conn, steps: np.ndarray, step_values: dict) -> None:
        block = np.column_stack([steps, *step_values.values()]).astype(np.float64)
        insert_block(conn, "steps", ["step", *step_values], block)

    @staticmethod
    def _insert_layer_samples(conn, steps: np.ndarray, values: dict, n_layers: int) -> None:
        if not values:
            return
        k = len(steps)
        block = np.empty((k, n_layers, 2 + len(values)))  # (k, n_layers, 2 + n_quantities)
        block[:, :, 0] = steps[:, None]
        block[:, :, 1] = np.arange(n_layers)
        block[:, :, 2:] = np.stack(list(values.values()), axis=-1)
        insert_block(
            conn, "layer_samples", ["step", "layer", *values], block.reshape(k * n_layers, -1)
        )

    @staticmethod
    def _insert_series(conn, steps: np.ndarray, series: dict) -> None:
        for name, array in series.items():
            data = array.astype("<f8")  # the layout promised in schema.py
            # A (step, layer) with nothing measured is left out: readers fill it with NaN.
            # Sparse series (delta_norm_t: recurrent layers on detail steps) stay small.
            measured = ~np.isnan(data).all(axis=2)  # (k, n_layers)
            rows = (
                (int(steps[i]), int(layer), name, data[i, layer].tobytes())
                for i, layer in zip(*np.nonzero(measured))
            )
            conn.executemany("INSERT INTO series VALUES (?, ?, ?, ?)", rows)

    # -- series widths ------------------------------------------------------------------

    def series_width(self, name: str) -> int | None:
        """Values per step and layer of a stored series; None when it is not stored."""
        with self._transaction(write=False) as conn:
            if not schema.exists(conn):
                return None
            return schema.series_widths(conn).get(name)

    def widen_series(self, name: str, width: int) -> None:
        """Pad every stored row of series `name` with NaN to `width` values, in one commit.

        For a series whose length grows during a run (delta_norm_t when a longer
        sequence comes); `append` keeps refusing a width other than the stored one.

        Raises:
            ValueError: no such series, or `width` is smaller than the stored width.
        """
        self._check_writable()
        with self._transaction(write=True) as conn:
            stored = schema.series_widths(conn).get(name)
            if stored is None:
                raise ValueError(f"{self.path} holds no series {name!r} to widen")
            if width < stored:
                raise ValueError(f"series {name!r} holds {stored} values; cannot narrow to {width}")
            pad = np.full(width - stored, np.nan, dtype="<f8").tobytes()
            sql = "SELECT step, layer, data FROM series WHERE quantity = ?"
            rows = [
                (data + pad, name, step, layer) for step, layer, data in conn.execute(sql, (name,))
            ]
            update = "UPDATE series SET data = ? WHERE quantity = ? AND step = ? AND layer = ?"
            conn.executemany(update, rows)
            conn.execute("UPDATE series_quantities SET width = ? WHERE quantity = ?", (width, name))

    # -- read ---------------------------------------------------------------------------

    def read(self, *, meta: Mapping[str, Any] | None = None) -> Record:
        """Everything stored, as a Record (one consistent snapshot of the file).

        Args:
            meta: the run.json contents to attach; the store does not hold them.
        """
        with self._transaction(write=False) as conn:
            parts = read_parts(conn)
        return Record(**parts, meta=meta)

    def last_step(self) -> int | None:
        """The last stored step, None before the first append."""
        with self._transaction(write=False) as conn:
            if not schema.exists(conn):
                return None
            return conn.execute("SELECT max(step) FROM steps").fetchone()[0]

    def n_steps(self) -> int:
        """How many steps are stored."""
        with self._transaction(write=False) as conn:
            if not schema.exists(conn):
                return 0
            return conn.execute("SELECT count(*) FROM steps").fetchone()[0]

    def close(self) -> None:
        """Close the connection; the writer's close also checkpoints the -wal file."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SampleStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "readonly" if self.readonly else "writer"
        return f"SampleStore({str(self.path)!r}, {mode})"
