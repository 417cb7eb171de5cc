"""Decision surface of a trained model over a 2-D dataset, with the data on top."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from gradprobe.viz.figures.common import finished, new_axes

OUTPUTS = ("auto", "logit", "probability")
# Grid points per forward pass: bounds the memory of a fine grid.
CHUNK = 65536
BINARY_CMAP = "RdBu_r"  # class 0 blue, class 1 red, P = 0.5 white
CLASS_COLOURS = colormaps["tab10"].colors
NOT_FINITE = "0.5"  # grey where the model's output is NaN/inf (a diverged model)


def as_numpy(a: Any) -> np.ndarray:
    """A numpy array from an array-like or a torch tensor (on any device)."""
    if hasattr(a, "detach"):
        a = a.detach().cpu()
    return np.asarray(a, dtype=np.float64)


def check_points(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """(x of shape (n, 2), y of shape (n,)); ValueError saying what is wrong otherwise."""
    x, y = as_numpy(x), as_numpy(y)
    if x.ndim != 2 or x.shape[1] != 2 or len(x) == 0:
        raise ValueError(
            f"decision_surface needs x of shape (n_samples, 2), n_samples >= 1 points of two "
            f"input features; "
            f"got shape {x.shape}"
        )
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != (len(x),):
        raise ValueError(f"y must have shape ({len(x)},) to match x; got shape {y.shape}")
    if not np.all(np.isfinite(y) & (y == np.round(y)) & (y >= 0)):
        raise ValueError("y must hold class labels 0, 1, ... (integers >= 0)")
    return x, y.astype(int)


def grid_axes(x: np.ndarray, resolution: int, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Two arrays of shape (resolution,): grid coordinates spanning x plus a margin."""
    if not isinstance(resolution, (int, np.integer)) or resolution < 2:
        raise ValueError(f"resolution must be an int >= 2; got {resolution!r}")
    lo, hi = x.min(axis=0), x.max(axis=0)
    pad = np.where(hi > lo, (hi - lo) * margin, 0.5)
    return tuple(np.linspace(lo[k] - pad[k], hi[k] + pad[k], resolution) for k in range(2))


def model_outputs(model, points: np.ndarray):
    """The model's outputs on `points` (m, 2), in eval mode and without gradients."""
    import torch

    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    device = param.device if param is not None else torch.device("cpu")
    inputs = torch.as_tensor(points, dtype=dtype, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = [model(inputs[i : i + CHUNK]) for i in range(0, len(inputs), CHUNK)]
    finally:
        model.train(was_training)
    return torch.cat(out).double().cpu().numpy()


def predictions(out: np.ndarray, output: str) -> tuple[np.ndarray, int]:
    """(P(class 1) or the argmax class per point, number of classes) from model outputs."""
    if output not in OUTPUTS:
        raise ValueError(f"output={output!r} is not one of: {', '.join(OUTPUTS)}")
    if out.ndim == 2 and out.shape[1] >= 2:
        classes = out.argmax(axis=1).astype(np.float64)
        classes[~np.isfinite(out).all(axis=1)] = np.nan
        return classes, out.shape[1]
    if out.ndim > 2 or (out.ndim == 2 and out.shape[1] != 1):
        raise ValueError(f"model output of shape {out.shape}: expected (m,), (m, 1) or (m, k)")
    out = out.reshape(-1)
    finite = out[np.isfinite(out)]
    is_probability = output == "probability" or (
        output == "auto" and bool(((finite >= 0) & (finite <= 1)).all())
    )
    if is_probability:
        return out, 2
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-out)), 2


def _surface(ax: Axes, image: np.ndarray, n_classes: int, extent: tuple) -> None:
    shown = np.ma.masked_invalid(image)
    if n_classes == 2:
        cmap = colormaps[BINARY_CMAP].with_extremes(bad=NOT_FINITE)
        im = ax.imshow(
            shown,
            origin="lower",
            extent=extent,
            aspect="auto",
            cmap=cmap,
            vmin=0.0,
            vmax=1.0,
            alpha=0.6,
            interpolation="nearest",
        )
        ax.figure.colorbar(im, ax=ax, label="P(class 1)")
        finite = image[np.isfinite(image)]
        if finite.size and finite.min() < 0.5 < finite.max():
            ax.contour(shown, levels=[0.5], origin="lower", extent=extent, colors="k")
        return
    cmap = ListedColormap(CLASS_COLOURS[:n_classes]).with_extremes(bad=NOT_FINITE)
    ax.imshow(
        shown,
        origin="lower",
        extent=extent,
        aspect="auto",
        cmap=cmap,
        vmin=-0.5,
        vmax=n_classes - 0.5,
        alpha=0.35,
        interpolation="nearest",
    )


def _class_colour(c: int, n_classes: int):
    if n_classes == 2:
        return colormaps[BINARY_CMAP](float(c))
    return CLASS_COLOURS[c % len(CLASS_COLOURS)]


def decision_surface(
    model,
    x: Any,
    y: Any,
    ax: Axes | None = None,
    resolution: int = 200,
    *,
    output: str = "auto",
    margin: float = 0.1,
) -> Figure:
    """The trained model's prediction over a grid spanning the data, with the points on top.

    Args:
        model: a torch.nn.Module mapping (m, 2) inputs to (m,) / (m, 1) outputs (binary)
            or (m, k) with k >= 2 (multi-class: argmax).
        x: array-like or tensor of shape (n_samples, 2).
        y: class labels of shape (n_samples,) (or (n_samples, 1)), integers 0, 1, ...
        ax: draw into these axes; None: a new Figure.
        resolution: grid points per axis.
        output: for one output unit, "logit" (P = sigmoid), "probability" (used as is)
            or "auto": probability when every finite output lies in [0, 1], else logit.
        margin: the grid extends this fraction of the data's range past it on each side.

    Returns:
        the Figure: an AxesImage of shape (resolution, resolution) (row r, column c is the
        grid point (xs[c], ys[r]); pixel centres lie on the grid) holding P(class 1) for a
        binary model or the predicted class, masked where the output is not finite; one
        scatter per class (gid "class:C").
    """
    x, y = check_points(x, y)
    xs, ys = grid_axes(x, resolution, margin)
    grid_x, grid_y = np.meshgrid(xs, ys)  # (resolution, resolution): row = y, column = x
    out = model_outputs(model, np.column_stack([grid_x.ravel(), grid_y.ravel()]))
    image, n_classes = predictions(out, output)
    if y.max() >= n_classes:
        raise ValueError(f"y has label {y.max()} but the model predicts {n_classes} classes")
    dx, dy = xs[1] - xs[0], ys[1] - ys[0]
    extent = (xs[0] - dx / 2, xs[-1] + dx / 2, ys[0] - dy / 2, ys[-1] + dy / 2)
    ax = new_axes(ax, figsize=(5.5, 4.5))
    _surface(ax, image.reshape(grid_x.shape), n_classes, extent)
    for c in np.unique(y):
        pts = x[y == c]
        ax.scatter(
            pts[:, 0],
            pts[:, 1],
            s=12,
            color=_class_colour(c, n_classes),
            edgecolors="k",
            linewidths=0.4,
            label=f"class {c}",
            gid=f"class:{c}",
        )
    ax.legend(fontsize="small", loc="upper right")
    bad = np.mean(~np.isfinite(image))
    note = f"; output non-finite on {bad:.0%} of the grid (grey)" if bad else ""
    shown = "P(class 1)" if n_classes == 2 else f"argmax of {n_classes} outputs"
    ax.set_title(f"Decision surface: {shown}{note}")
    ax.set_xlabel("x[:, 0]")
    ax.set_ylabel("x[:, 1]")
    return finished([ax])
