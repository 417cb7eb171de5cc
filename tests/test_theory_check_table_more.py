"""THEORY.md's check table, the remaining rows: measured per-layer gain vs prediction.

As tests/test_theory_check_table.py (40 seeds x 32 inputs, width 256, 20 layers).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.test_theory_check_table import N_SE, PER_LAYER_TOL, PHI, SMOOTH, TABLE, _prediction
from tests.theory_oracle import measure_chain

torch.set_num_threads(1)
ROWS = [r for r in TABLE if r[0] == "relu"] + SMOOTH[4:]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r[0]}-{r[1]:.3g}-{r[2]:.3g}")
def test_measured_per_layer_gain_matches_prediction(row):
    act, w2, b2, _, table_meas, _ = row
    predicted = _prediction(act, w2, b2)["log_gain"][:-1]
    mean, se = measure_chain(PHI[act], w2, b2, n_layers=20, width=256, seeds=40, seed=1)
    tol = np.maximum(PER_LAYER_TOL, N_SE * se)
    assert np.all(np.abs(mean - predicted) <= tol), np.round(mean - predicted, 3)
    assert abs(mean.mean() - table_meas) <= 0.012  # the table's measurement, reproduced
