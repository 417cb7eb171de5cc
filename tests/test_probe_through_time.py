"""delta_norm_t: ||dC/dh_t|| per time step of recurrent layers, against an unrolled oracle.

The oracle builds the same recurrence from nn.RNNCell / LSTMCell / GRUCell sharing the
module's weights, unrolled in Python, keeps every h_t with retain_grad, and reads
||h_t.grad|| after backward: the total derivative through every later time step.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe as gp

KINDS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
B, T, F_IN, H = 4, 9, 3, 6


def make_rnn(kind: str, batch_first: bool, num_layers: int = 1, **kwargs) -> nn.RNNBase:
    if kind.startswith("rnn"):
        nonlinearity = kind.split("_")[1]
        return nn.RNN(F_IN, H, num_layers, nonlinearity=nonlinearity, batch_first=batch_first)
    cls = nn.LSTM if kind == "lstm" else nn.GRU
    return cls(F_IN, H, num_layers, batch_first=batch_first, **kwargs)


class Classifier(nn.Module):
    """rnn, then a head on the last step ("last"), every step ("all") or h_n / c_n ("state")."""

    def __init__(self, rnn: nn.RNNBase, reads: str) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(H, 2)
        self.reads = reads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, state = self.rnn(x)
        return self.read(out, state)

    def read(self, out: torch.Tensor, state) -> torch.Tensor:
        time_dim = 1 if self.rnn.batch_first else 0
        if self.reads == "last":
            return self.head(out.select(time_dim, -1))
        if self.reads == "all":
            return self.head(out).mean(time_dim)
        h_n, c_n = state if isinstance(state, tuple) else (state, None)
        return self.head(h_n[-1] if c_n is None else h_n[-1] + c_n[-1].tanh())


def cells_of(rnn: nn.RNNBase) -> list[nn.RNNCellBase]:
    """One cell per stacked layer, sharing the module's parameters."""
    cells = []
    for k in range(rnn.num_layers):
        n_in = rnn.input_size if k == 0 else rnn.hidden_size
        if rnn.mode == "LSTM":
            cell = nn.LSTMCell(n_in, rnn.hidden_size)
        elif rnn.mode == "GRU":
            cell = nn.GRUCell(n_in, rnn.hidden_size)
        else:
            cell = nn.RNNCell(n_in, rnn.hidden_size, nonlinearity=rnn.mode[4:].lower())
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(cell, name, getattr(rnn, f"{name}_l{k}"))
        cells.append(cell)
    return cells


def oracle_forward(model: Classifier, x: torch.Tensor, hx=None) -> tuple[torch.Tensor, list]:
    """The model's output with its rnn unrolled cell by cell; h_t of the top layer kept."""
    rnn = model.rnn
    seq = x.transpose(0, 1) if rnn.batch_first else x  # (T, B, F)
    if hx is None:
        h = seq.new_zeros(rnn.num_layers, seq.shape[1], rnn.hidden_size)
        hx = (h, h) if rnn.mode == "LSTM" else h
    finals = []
    for k, cell in enumerate(cells_of(rnn)):
        state = (hx[0][k], hx[1][k]) if rnn.mode == "LSTM" else hx[k]
        hs = []
        for t in range(seq.shape[0]):
            state = cell(seq[t], state)
            h = state[0] if rnn.mode == "LSTM" else state
            h.retain_grad()
            hs.append(h)
        finals.append(state)
        seq = torch.stack(hs)
    out = seq.transpose(0, 1) if rnn.batch_first else seq
    if rnn.mode == "LSTM":
        state = (torch.stack([s[0] for s in finals]), torch.stack([s[1] for s in finals]))
    else:
        state = torch.stack(finals)
    return model.read(out, state), hs


def oracle_delta_norm_t(model: Classifier, x: torch.Tensor, y: torch.Tensor, hx=None):
    """Array of shape (T,): ||dC/dh_t|| over batch and units, from the unrolled twin."""
    twin = copy.deepcopy(model)
    logits, hs = oracle_forward(twin, x, hx)
    nn.functional.cross_entropy(logits, y).backward()
    return np.array([float(h.grad.double().norm()) for h in hs])


def data(seed: int, batch_first: bool, length: int = T) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, length, F_IN, generator=g)
    return (x if batch_first else x.transpose(0, 1).contiguous()), torch.randint(0, 2, (B,))


def train(model, batches, **watch_kwargs):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gp.watch(model, opt, **watch_kwargs) as probe:
        for x, y in batches:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return probe.record()


def probed_once(model: Classifier, x, y) -> np.ndarray:
    rec = train(model, [(x, y)], detail_every=1)
    return rec.series["delta_norm_t"][0, rec.layers.index("rnn")]


# -- against the oracle -------------------------------------------------------------------


@pytest.mark.parametrize("reads", ["last", "all"])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_equals_unrolled_autograd(kind, batch_first, reads):
    torch.manual_seed(0)
    model = Classifier(make_rnn(kind, batch_first), reads)
    x, y = data(1, batch_first)
    expected = oracle_delta_norm_t(model, x, y)
    got = probed_once(model, x, y)
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    if reads == "last":  # the direct part is zero before T-1; the through-time part is not
        assert np.all(expected[:-1] > 0)


@pytest.mark.parametrize("kind", KINDS)
def test_states_read_and_stacked_layers(kind):
    torch.manual_seed(2)
    model = Classifier(make_rnn(kind, True, num_layers=2), "state")
    x, y = data(3, True)
    expected = oracle_delta_norm_t(model, x, y)  # before the probed step updates the weights
    np.testing.assert_allclose(probed_once(model, x, y), expected, rtol=1e-4)


class GivenState(Classifier):
    """Passes an initial state as the keyword hx (the forward hook sees it in kwargs)."""

    def forward(self, x: torch.Tensor, hx=None) -> torch.Tensor:
        out, state = self.rnn(x, hx=hx)
        return self.read(out, state)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_initial_state_given(kind):
    torch.manual_seed(5)
    model = GivenState(make_rnn(kind, False, num_layers=2), "state")
    x, y = data(6, False)
    h0 = torch.randn(2, B, H)
    hx = (h0, torch.randn(2, B, H)) if kind == "lstm" else h0
    expected = oracle_delta_norm_t(model, x, y, hx)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gp.watch(model, opt, detail_every=1) as probe:
        nn.functional.cross_entropy(model(x, hx=hx), y).backward()
        opt.step()
    got = probe.record().series["delta_norm_t"][0, 0]
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_direct_gradient_at_output_is_zero_before_last_step():
    """The pitfall: the gradient reaching `output` is only the direct part."""
    torch.manual_seed(0)
    model = Classifier(make_rnn("lstm", True), "last")
    x, y = data(1, True)
    out, _ = model.rnn(x)
    out.retain_grad()
    nn.functional.cross_entropy(model.head(out[:, -1]), y).backward()
    direct = out.grad.norm(dim=(0, 2))
    assert torch.all(direct[:-1] == 0) and direct[-1] > 0
    model.zero_grad()
    assert np.all(probed_once(model, x, y)[:-1] > 1e-6)


# -- vanishing and exploding along time --------------------------------------------------


def _linear_regime_rnn(scale: float, length: int) -> tuple[Classifier, torch.Tensor, torch.Tensor]:
    """A tanh RNN with W_hh = scale x orthogonal, zero biases and tiny inputs: |tanh'| ~ 1,
    so ||dC/dh_t|| ~ scale^(T-1-t) ||dC/dh_{T-1}|| (Pascanu et al. 2013, sec. 2)."""
    torch.manual_seed(0)
    model = Classifier(make_rnn("rnn_tanh", True), "last")
    with torch.no_grad():
        nn.init.orthogonal_(model.rnn.weight_hh_l0)
        model.rnn.weight_hh_l0.mul_(scale)
        model.rnn.bias_ih_l0.zero_()
        model.rnn.bias_hh_l0.zero_()
    x, y = data(4, True, length)
    return model, x * 1e-3, y


def test_small_recurrent_weights_vanish_toward_t0():
    model, x, y = _linear_regime_rnn(0.5, 20)
    got = probed_once(model, x, y)
    assert np.all(np.diff(got) > 0)  # grows toward the last step = decays toward t=0
    np.testing.assert_allclose(got[0] / got[-1], 0.5**19, rtol=0.01)


def test_large_recurrent_weights_grow_toward_t0():
    model, x, y = _linear_regime_rnn(1.5, 12)
    got = probed_once(model, x, y)
    assert np.all(np.diff(got) < 0)
    np.testing.assert_allclose(got[0] / got[-1], 1.5**11, rtol=0.01)


# -- where it is NaN ---------------------------------------------------------------------


def test_nan_for_other_layers_and_steps_between_detail_steps():
    torch.manual_seed(0)
    model = Classifier(make_rnn("gru", True), "all")
    rec = train(model, [data(s, True) for s in range(5)], detail_every=2)
    series = rec.series["delta_norm_t"]
    assert series.shape == (5, 2, T)
    rnn, head = rec.layers.index("rnn"), rec.layers.index("head")
    assert np.isnan(series[:, head]).all()
    assert np.isnan(series[1::2, rnn]).all() and np.isfinite(series[0::2, rnn]).all()
    assert not np.isnan(rec["delta_norm"][:, rnn]).any()  # per-step delta_norm every step
    assert "through time" in rec.layer_info[rnn]["delta_norm_t"]
    assert "delta_norm_t" not in rec.layer_info[head]


@pytest.mark.parametrize(
    "rnn, reason",
    [
        (nn.LSTM(F_IN, H, batch_first=True, bidirectional=True), "bidirectional=True"),
        (nn.LSTM(F_IN, H, batch_first=True, proj_size=3), "proj_size=3"),
    ],
    ids=["bidirectional", "proj_size"],
)
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_unsupported_variants_are_nan_with_a_reason(rnn, reason):
    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = rnn
            self.head = nn.LazyLinear(2)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    model = Head()
    model(data(0, True)[0])  # materialise the lazy head
    rec = train(model, [data(0, True)], detail_every=1)
    assert "delta_norm_t" not in rec.series  # nothing measured anywhere
    info = rec.layer_info[rec.layers.index("rnn")]["delta_norm_t"]
    assert info.startswith("not measured") and reason in info


def test_packed_sequence_is_skipped_with_a_warning():
    torch.manual_seed(0)
    rnn = make_rnn("gru", True)
    head = nn.Linear(H, 2)
    model = nn.ModuleDict({"rnn": rnn, "head": head})
    x, y = data(0, True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    warns = pytest.warns(RuntimeWarning, match="packed sequence input is not supported")
    with warns, gp.watch(model, opt, detail_every=1) as probe:
        packed = nn.utils.rnn.pack_padded_sequence(x, [T, T - 2, 5, 3], batch_first=True)
        _, h_n = rnn(packed)
        nn.functional.cross_entropy(head(h_n[-1]), y).backward()
        opt.step()
    rec = probe.record()
    assert "packed sequence" in rec.layer_info[rec.layers.index("rnn")]["delta_norm_t"]
    assert "delta_norm_t" not in rec.series


# -- steps with several calls, varying lengths, the run directory -------------------------


def test_two_micro_batches_add_in_squares():
    torch.manual_seed(0)
    model = Classifier(make_rnn("lstm", False), "all")
    (x1, y1), (x2, y2) = data(1, False), data(2, False)
    expected = np.hypot(oracle_delta_norm_t(model, x1, y1), oracle_delta_norm_t(model, x2, y2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gp.watch(model, opt, detail_every=1) as probe:
        for x, y in ((x1, y1), (x2, y2)):
            nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    got = probe.record().series["delta_norm_t"][0, 0]
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_unbatched_input():
    torch.manual_seed(0)
    rnn = make_rnn("gru", False)
    head = nn.Linear(H, 2)
    model = nn.Sequential(rnn)
    x = torch.randn(T, F_IN)  # (T, F): no batch axis
    batched = Classifier(copy.deepcopy(rnn), "last")
    batched.head = copy.deepcopy(head)
    expected = oracle_delta_norm_t(batched, x.unsqueeze(1), torch.tensor([1]))
    opt = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=0.1)
    with gp.watch(model, opt, detail_every=1) as probe:
        out, _ = rnn(x)
        nn.functional.cross_entropy(head(out[-1:]), torch.tensor([1])).backward()
        opt.step()
    np.testing.assert_allclose(probe.record().series["delta_norm_t"][0, 0], expected, rtol=1e-4)


def test_round_trip_through_run_dir_with_growing_length(tmp_path):
    lengths = [5, 5, 9, 3, 7]

    def run(**kwargs):
        torch.manual_seed(0)
        model = Classifier(make_rnn("lstm", True), "last")
        batches = [data(s, True, n) for s, n in enumerate(lengths)]
        return train(model, batches, detail_every=1, flush_every=2, **kwargs)

    in_memory = run()
    on_disk = run(run_dir=tmp_path / "run")
    loaded = gp.load(tmp_path / "run").series["delta_norm_t"]
    assert loaded.shape == (5, 2, 9)  # NaN-padded to the longest sequence
    np.testing.assert_array_equal(loaded, in_memory.series["delta_norm_t"])
    np.testing.assert_array_equal(loaded, on_disk.series["delta_norm_t"])
    for i, n in enumerate(lengths):
        assert np.isfinite(loaded[i, 0, :n]).all() and np.isnan(loaded[i, 0, n:]).all()


# -- training untouched ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_training_is_bit_identical(kind):
    def run(with_probe: bool):
        torch.manual_seed(0)
        model = Classifier(make_rnn(kind, True, num_layers=2), "last")
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        probe = gp.watch(model, opt, detail_every=1) if with_probe else None
        for s in range(4):
            x, y = data(s, True)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        if probe is not None:
            probe.close()
            assert np.isfinite(probe.record().series["delta_norm_t"][:, 0]).all()
        return model.state_dict(), torch.get_rng_state()

    (plain, rng_plain), (probed, rng_probed) = run(False), run(True)
    for key in plain:
        assert torch.equal(plain[key], probed[key]), key
    assert torch.equal(rng_plain, rng_probed)


def test_resumed_run_with_shorter_sequences_is_padded(tmp_path):
    torch.manual_seed(0)
    model = Classifier(make_rnn("rnn_tanh", True), "last")
    train(model, [data(0, True, 9)], detail_every=1, run_dir=tmp_path)
    rec = train(model, [data(1, True, 4)], detail_every=1, run_dir=tmp_path, resume=True)
    series = rec.series["delta_norm_t"]
    assert series.shape == (2, 2, 9)
    assert np.isfinite(series[1, 0, :4]).all() and np.isnan(series[1, 0, 4:]).all()
    assert np.isfinite(series[0, 0]).all()


def test_store_widen_series(tmp_path):
    from gradprobe.record.store import SampleStore

    with SampleStore(tmp_path / "m.sqlite") as store:
        store.write_layers([{"name": "rnn", "type": "RNN"}, {"name": "head", "type": "Linear"}])
        block = np.full((2, 2, 3), np.nan)
        block[0, 0] = [1.0, 2.0, 3.0]
        store.append([0, 1], {}, series={"delta_norm_t": block})
        with pytest.raises(ValueError, match="holds 3 values; cannot narrow to 2"):
            store.widen_series("delta_norm_t", 2)
        with pytest.raises(ValueError, match="holds no series 'other'"):
            store.widen_series("other", 5)
        store.widen_series("delta_norm_t", 5)
        assert store.series_width("delta_norm_t") == 5 and store.series_width("other") is None
        got = store.read().series["delta_norm_t"]
    expected = np.full((2, 2, 5), np.nan)
    expected[0, 0, :3] = [1.0, 2.0, 3.0]
    np.testing.assert_array_equal(got, expected)
