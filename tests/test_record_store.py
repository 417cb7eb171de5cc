"""SampleStore: what is appended is read back exactly, and the samples view shows it."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gradprobe.record import SampleStore
from gradprobe.record.connect import _open_query_only, open_reader

NAN, INF = np.nan, np.inf


def layer_info(n: int) -> list[dict]:
    return [{"name": f"net.{i}", "type": "Linear", "n_params": 10 * i} for i in range(n)]


@pytest.fixture
def store(tmp_path):
    with SampleStore(tmp_path / "metrics.sqlite") as s:
        s.write_layers(layer_info(3))
        yield s


def rows(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_round_trip_keeps_nan_and_inf(store):
    grad = np.array([[1.0, NAN, 3.0], [INF, -INF, 1e-300]])
    loss = np.array([2.5, NAN])
    store.append([3, 7], {"grad_norm": grad}, {"loss": loss})
    rec = store.read(meta={"status": "running"})
    np.testing.assert_array_equal(rec.steps, [3, 7])
    np.testing.assert_array_equal(rec["grad_norm"], grad)
    np.testing.assert_array_equal(rec.loss, loss)
    assert rec.layers == ["net.0", "net.1", "net.2"]
    assert rec.layer_info == layer_info(3)
    assert rec.status == "running"
    assert store.last_step() == 7 and store.n_steps() == 2


def test_samples_view_has_the_promised_columns(store):
    store.append([0, 1], {"delta_norm": [[1.0, NAN, 3.0], [4.0, 5.0, INF]]}, {"loss": [0.5, NAN]})
    conn = sqlite3.connect(store.path)
    cursor = conn.execute("SELECT * FROM samples WHERE quantity = 'delta_norm' ORDER BY step")
    assert [d[0] for d in cursor.description] == ["step", "layer", "quantity", "value"]
    assert cursor.fetchall() == [
        (0, "net.0", "delta_norm", 1.0),
        (0, "net.2", "delta_norm", 3.0),
        (1, "net.0", "delta_norm", 4.0),
        (1, "net.1", "delta_norm", 5.0),
        (1, "net.2", "delta_norm", INF),
    ]
    assert conn.execute("SELECT * FROM samples WHERE quantity = 'loss'").fetchall() == [
        (0, None, "loss", 0.5)
    ]
    conn.close()


def test_quantity_appearing_mid_run(store):
    store.append([0, 1], {"grad_norm": np.ones((2, 3))})
    store.append([2], {"grad_norm": [[2.0, 2, 2]], "act_mean": [[0.1, 0.2, 0.3]]}, {"loss": [9.0]})
    rec = store.read()
    np.testing.assert_array_equal(rec["act_mean"], [[NAN] * 3, [NAN] * 3, [0.1, 0.2, 0.3]])
    np.testing.assert_array_equal(rec["grad_norm"], [[1.0] * 3, [1.0] * 3, [2.0] * 3])
    np.testing.assert_array_equal(rec.loss, [NAN, NAN, 9.0])
    view = rows(store.path, "SELECT step, layer, value FROM samples WHERE quantity='act_mean'")
    assert view == [(2, "net.0", 0.1), (2, "net.1", 0.2), (2, "net.2", 0.3)]


def test_series_round_trip(store):
    hist = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    hist[1, 2, 0] = NAN
    store.append([0, 1], {}, series={"act_hist": hist})
    store.append([2], {"grad_norm": np.ones((1, 3))})
    rec = store.read()
    expected = np.concatenate([hist, np.full((1, 3, 4), NAN)])
    np.testing.assert_array_equal(rec.series["act_hist"], expected)
    with pytest.raises(ValueError, match=r"series 'act_hist' has 5 values per layer; .* holds 4"):
        store.append([3], {}, series={"act_hist": np.zeros((1, 3, 5))})


def test_append_errors_say_what_and_why(store):
    store.append([5], {"grad_norm": np.ones((1, 3))})
    cases = [
        (([5], {}), r"after the last stored step 5; got steps starting at 5"),
        (([7, 6], {}), r"strictly increasing"),
        (
            ([6], {"grad_norm": np.ones((1, 2))}),
            r"'grad_norm' has shape \(1, 2\); expected \(1, 3\)",
        ),
        (([6], {}, {"loss": np.ones(2)}), r"'loss' has shape \(2,\); expected \(1,\)"),
        (([6], {"Grad": np.ones((1, 3))}), r"quantity name 'Grad' is not allowed.*\^\[a-z\]"),
        (([6], {"step": np.ones((1, 3))}), r"quantity name 'step' is not allowed"),
        (([6], {}, {"grad_norm": np.ones(1)}), r"'grad_norm' cannot be per-step and per-layer"),
        (([2**60], {}), r"2\*\*53"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            store.append(*args)
    assert store.n_steps() == 1  # failed appends left nothing behind
    np.testing.assert_array_equal(store.read()["grad_norm"], np.ones((1, 3)))


def test_append_before_layers_and_on_readonly(tmp_path):
    path = tmp_path / "m.sqlite"
    with SampleStore(path) as store:
        with pytest.raises(ValueError, match="call write_layers before the first append"):
            store.append([0], {})
        store.write_layers(layer_info(1))
    with SampleStore(path, readonly=True) as reader:
        with pytest.raises(PermissionError, match="readonly=True"):
            reader.append([0], {})
        with pytest.raises(PermissionError, match="readonly=True"):
            reader.write_layers(layer_info(1))


def test_write_layers_protects_resume(store):
    store.write_layers(layer_info(3))  # the same list again: fine
    other = layer_info(3)[:2] + [
        {"name": "head", "type": "Conv2d"},
        {"name": "x", "type": "Linear"},
    ]
    with pytest.raises(ValueError) as err:
        store.write_layers(other)
    message = str(err.value)
    assert "3 layers stored, 4 given" in message
    assert "layer 2 is 'net.2' (Linear) stored, 'head' (Conv2d) given" in message
    assert "only stored: ['net.2']" in message and "only given: ['head', 'x']" in message
    with pytest.raises(ValueError, match="unique"):
        store.write_layers([{"name": "a"}, {"name": "a"}])
    with pytest.raises(ValueError, match=r"layer_info\[0\] needs a non-empty string 'name'"):
        store.write_layers([{"type": "Linear"}])


def test_empty_store_reads_empty(tmp_path):
    with SampleStore(tmp_path / "m.sqlite") as store:
        assert store.last_step() is None and store.n_steps() == 0 and store.layer_info() == []
        store.append([], {})  # nothing to do
        rec = store.read()
    assert len(rec) == 0 and rec.layers == [] and rec.quantities == []
    assert rows(tmp_path / "m.sqlite", "SELECT * FROM samples") == []


def test_readonly_needs_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics database at"):
        SampleStore(tmp_path / "absent.sqlite", readonly=True)
    assert not (tmp_path / "absent.sqlite").exists()


def test_not_a_database_and_newer_layout(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(ValueError, match="not a SQLite database"):
        SampleStore(junk)
    newer = tmp_path / "newer.sqlite"
    SampleStore(newer).close()
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ValueError, match="layout version 99.*upgrade gradprobe"):
        SampleStore(newer)


def test_reader_falls_back_when_readonly_open_fails(store):
    store.append([0], {"grad_norm": [[1.0, 2.0, 3.0]]})

    def refuse(path):
        """read-only open"""
        raise sqlite3.OperationalError("unable to open database file")

    conn = open_reader(store.path, readers=(refuse, _open_query_only))
    assert conn.execute("SELECT count(*) FROM layer_samples").fetchone() == (3,)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("DELETE FROM layer_samples")
    conn.close()
    with pytest.raises(OSError, match="read-only open: unable to open database file"):
        open_reader(store.path, readers=(refuse,))


def test_immutable_open_refuses_unmerged_wal(store):
    from gradprobe.record.connect import _open_immutable

    store.append([0], {"grad_norm": [[1.0, 2.0, 3.0]]})  # the writer is open: pages in -wal
    with pytest.raises(sqlite3.OperationalError, match="immutable open would miss"):
        _open_immutable(store.path)


def test_repr(store):
    assert repr(store) == f"SampleStore({str(store.path)!r}, writer)"


# -- property: any sequence of appends reads back exactly -------------------------------

FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
POOL = ["grad_norm", "delta_norm", "act_mean", "custom_q"]


@st.composite
def runs(draw):
    n_layers = draw(st.integers(1, 4))
    width = draw(st.integers(1, 3))
    step = draw(st.integers(-10, 10))
    appends = []
    for _ in range(draw(st.integers(1, 4))):
        k = draw(st.integers(1, 4))
        steps = step + np.cumsum(draw(st.lists(st.integers(1, 3), min_size=k, max_size=k)))
        step = int(steps[-1])
        per_layer = draw(st.lists(st.sampled_from(POOL), unique=True, max_size=3))
        per_step = draw(st.lists(st.sampled_from(["loss", "global_grad_norm"]), unique=True))
        with_series = draw(st.booleans())
        appends.append(
            (
                steps,
                {q: draw(arrays(np.float64, (k, n_layers), elements=FLOATS)) for q in per_layer},
                {q: draw(arrays(np.float64, (k,), elements=FLOATS)) for q in per_step},
                {"hist": draw(arrays(np.float64, (k, n_layers, width), elements=FLOATS))}
                if with_series
                else {},
            )
        )
    return n_layers, appends


def expected_arrays(appends, part: int, shape_of) -> dict[str, np.ndarray]:
    """Oracle: concatenate what each append gave, NaN where an append left a quantity out."""
    names = {q for a in appends for q in a[part]}
    out = {}
    for q in names:
        blocks = [a[part].get(q, np.full(shape_of(a), NAN)) for a in appends]
        out[q] = np.concatenate(blocks)
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs())
def test_any_appends_read_back_exactly(run):
    n_layers, appends = run
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.sqlite"
        with SampleStore(path) as store:
            store.write_layers(layer_info(n_layers))
            for steps, values, step_values, series in appends:
                store.append(steps, values, step_values, series)
        with SampleStore(path, readonly=True) as reader:
            rec = reader.read()
        n_view = rows(path, "SELECT count(*) FROM samples")[0][0]
    np.testing.assert_array_equal(rec.steps, np.concatenate([a[0] for a in appends]))
    values = expected_arrays(appends, 1, lambda a: (len(a[0]), n_layers))
    step_values = expected_arrays(appends, 2, lambda a: (len(a[0]),))
    width = next((a[3]["hist"].shape[2] for a in appends if a[3]), 0)
    series = expected_arrays(appends, 3, lambda a: (len(a[0]), n_layers, width))
    assert set(rec.quantities) == set(values)
    for q, array in values.items():
        np.testing.assert_array_equal(rec[q], array)
    assert set(rec.step_values) == set(step_values)
    for q, array in step_values.items():
        np.testing.assert_array_equal(rec.step_values[q], array)
    assert set(rec.series) == set(series)
    for q, array in series.items():
        np.testing.assert_array_equal(rec.series[q], array)
    measured = sum(int((~np.isnan(a)).sum()) for a in [*values.values(), *step_values.values()])
    assert n_view == measured


@pytest.mark.parametrize("rows_per_insert", [7, 100])
def test_large_append_split_across_inserts(store, monkeypatch, rows_per_insert):
    monkeypatch.setattr("gradprobe.record.bulk._ROWS_PER_INSERT", rows_per_insert)
    rng = np.random.default_rng(0)
    values = {q: rng.normal(size=(101, 3)) for q in ("grad_norm", "delta_norm")}
    values["grad_norm"][::5, 1] = NAN
    loss = rng.normal(size=101)
    store.append(np.arange(0, 202, 2), values, {"loss": loss})
    rec = store.read()
    np.testing.assert_array_equal(rec.steps, np.arange(0, 202, 2))
    for q, array in values.items():
        np.testing.assert_array_equal(rec[q], array)
    np.testing.assert_array_equal(rec.loss, loss)


READ_AS_OTHER_USER = """
import importlib.util, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("connect", sys.argv[1])
connect = importlib.util.module_from_spec(spec)
spec.loader.exec_module(connect)
conn = connect.open_reader(Path(sys.argv[2]))
print(conn.execute("SELECT count(*) FROM layer_samples").fetchone()[0])
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv") or not Path("/usr/bin/python3").exists(),
    reason="needs root to run a reader as user nobody",
)
@pytest.mark.parametrize("writer_state", ["writing", "closed"])
def test_another_user_reads_without_write_access(writer_state):
    # nobody can write neither the directory nor the -shm: the case each fallback is for.
    # The reader runs the system python on connect.py alone (stdlib only): root's python
    # and packages are not readable by nobody.
    tmp = Path(tempfile.mkdtemp())
    try:
        path = tmp / "metrics.sqlite"
        store = SampleStore(path)
        store.write_layers(layer_info(2))
        store.append([0, 1], {"grad_norm": np.ones((2, 2))})
        if writer_state == "closed":
            store.close()  # checkpoints and removes -wal and -shm
        tmp.chmod(0o755)
        connect = Path(__file__).parents[1] / "gradprobe" / "record" / "connect.py"
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        command += ["/usr/bin/python3", "-c", READ_AS_OTHER_USER, str(connect), str(path)]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd="/")
        assert (proc.returncode, proc.stdout.strip()) == (0, "4"), proc.stderr
        if writer_state == "writing":
            store.close()
    finally:
        shutil.rmtree(tmp)
