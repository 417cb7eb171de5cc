"""Cost of SampleStore.append per recorded step, against a plain long table.

One append = one probe flush: 50 steps x 64 layers x 16 quantities + 2 per-step
quantities. 100 flushes (5,000 steps) make the WAL pass its checkpoint size, so the
checkpoint's cost is in the figure. The long table is DESIGN.md's samples(step, layer,
quantity, value) written naively, one row per value, no index (its cheapest form), same
WAL settings and page size. Best of 3 for the store, to see past a busy machine.

    python benchmarks/store_append.py
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np

from gradprobe.record import SampleStore

N_LAYERS, STEPS_PER_FLUSH = 64, 50
N_FLUSHES, N_FLUSHES_LONG, REPEATS = 100, 10, 3
QUANTITIES = [f"q{i:02d}" for i in range(16)]


def flushes(n: int) -> list[tuple[np.ndarray, dict, dict]]:
    rng = np.random.default_rng(0)
    out = []
    for f in range(n):
        steps = np.arange(f * STEPS_PER_FLUSH, (f + 1) * STEPS_PER_FLUSH)
        values = {q: rng.random((STEPS_PER_FLUSH, N_LAYERS)) for q in QUANTITIES}
        values["q00"][::7] = np.nan  # some not measured, as on a real run
        step_values = {q: rng.random(STEPS_PER_FLUSH) for q in ("loss", "global_grad_norm")}
        out.append((steps, values, step_values))
    return out


def time_store(path: Path, data) -> tuple[float, float]:
    """Seconds appending all flushes, and seconds closing (the final checkpoint)."""
    store = SampleStore(path)
    store.write_layers([{"name": f"layer{i}", "type": "Linear"} for i in range(N_LAYERS)])
    start = time.perf_counter()
    for steps, values, step_values in data:
        store.append(steps, values, step_values)
    appended = time.perf_counter()
    store.close()
    return appended - start, time.perf_counter() - appended


def long_rows(steps, values, step_values, names) -> list[tuple]:
    rows = [
        (int(s), names[j], q, float(a[i, j]))
        for q, a in values.items()
        for i, s in enumerate(steps)
        for j in range(N_LAYERS)
    ]
    return rows + [
        (int(s), None, q, float(a[i])) for q, a in step_values.items() for i, s in enumerate(steps)
    ]


def time_long_table(path: Path, data) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA page_size=32768")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE samples(step INTEGER, layer TEXT, quantity TEXT, value REAL)")
    names = [f"layer{i}" for i in range(N_LAYERS)]
    start = time.perf_counter()
    for steps, values, step_values in data:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO samples VALUES (?, ?, ?, ?)", long_rows(steps, values, step_values, names)
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def main() -> None:
    data = flushes(N_FLUSHES)
    n_steps = N_FLUSHES * STEPS_PER_FLUSH
    with tempfile.TemporaryDirectory() as tmp:
        runs = [time_store(Path(tmp) / f"wide{r}.sqlite", data) for r in range(REPEATS)]
        wide, close = min(runs)
        long = time_long_table(Path(tmp) / "long.sqlite", data[:N_FLUSHES_LONG])
    wide_us = wide / n_steps * 1e6
    long_us = long / (N_FLUSHES_LONG * STEPS_PER_FLUSH) * 1e6
    print(
        f"{N_LAYERS} layers x {len(QUANTITIES)} quantities, {STEPS_PER_FLUSH} steps per append, "
        f"{n_steps} steps (best of {REPEATS})"
    )
    print(f"SampleStore.append: {wide_us:8.1f} us per step (close: {close * 1e3:.0f} ms once)")
    print(f"plain long table:   {long_us:8.1f} us per step = {long_us / wide_us:.1f}x the store")


if __name__ == "__main__":
    main()
