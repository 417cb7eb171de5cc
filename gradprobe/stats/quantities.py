"""The named quantities a Record holds: what each means, per layer and per step.

These names are the public vocabulary of DESIGN.md ("Quantities"); add, never rename.
"""

from __future__ import annotations

# Per layer, per recorded step. Order is the canonical column order of a Record.
LAYER_QUANTITIES: dict[str, str] = {
    "grad_norm": "L2 norm of the layer's weight gradient (all non-bias parameters)",
    "bias_grad_norm": "L2 norm of the layer's bias gradient",
    "delta_norm": "L2 norm of dC/dz, the gradient of the layer's output summed over the batch "
    "(Nielsen's learning speed ||delta^l||)",
    "grad_abs_mean": "mean |g| over the weight gradient's elements",
    "grad_abs_max": "max |g| over the weight gradient's elements",
    "grad_nonfinite": "count of NaN/Inf elements in the layer's parameter gradients (detail "
    "steps; elsewhere 0 where the sums of squares prove every element finite, else NaN)",
    "weight_norm": "L2 norm of the weights after the optimizer step",
    "update_norm": "L2 norm of W_t - W_{t-1}, the change the step made to the weights",
    "update_ratio": "update_norm / weight_norm",
    "weight_change_mean": "mean |W_t - W_{t-1}| per weight (the weight-change curve)",
    "act_mean": "mean of the layer's activations",
    "act_std": "standard deviation of the layer's activations",
    "saturated_frac": "fraction of sigmoid/tanh activations in their flat tails",
    "dead_frac": "fraction of ReLU units at zero for the whole batch",
    "act_nonfinite": "count of NaN/Inf elements in the layer's activations (detail steps; "
    "elsewhere 0 where the sums prove every element finite, else NaN)",
    "abs_min_nonzero": "smallest nonzero |activation| (underflow toward 1e-100)",
    "grad_all_finite": "1 where every element of the layer's parameter gradients was finite, "
    "0 where one was NaN/Inf (every recorded step, from the sums of squares)",
    "act_all_finite": "1 where every activation of the layer was finite, 0 where one was "
    "NaN/Inf (every recorded step, from the sum and sum of squares)",
}

# One value per recorded step.
STEP_QUANTITIES: dict[str, str] = {
    "loss": "the loss given to probe.log_loss (mean over the calls in the step)",
    "global_grad_norm": "L2 norm of all recorded parameter gradients together",
}

# Per layer and recorded step, a vector: Record.series[name], array of shape
# (n_steps, n_layers, k); NaN where not measured.
SERIES_QUANTITIES: dict[str, str] = {
    "delta_norm_t": "recurrent layers (nn.RNN / LSTM / GRU), detail steps: per time step t, "
    "L2 norm over batch and hidden units of the total dC/dh_t, the top stacked layer's hidden "
    "state, through every later step (the gradient through time); k = longest T, NaN-padded",
    "grad_hist": "histogram steps only (watch(histograms=...)): counts of |g| over the layer's "
    "parameter gradients in the fixed bins of gradprobe.stats.histogram.HIST_EDGES (bin 0 below "
    "1e-30 incl. zeros, then 4 per decade, the last >= 1e10; NaN/Inf not counted); k = 162",
}
