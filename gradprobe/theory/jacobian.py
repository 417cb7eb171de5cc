"""The input-output Jacobian's spectrum at a batch, from random probes (no full Jacobian).

For each example x_b, J_b = d f(x_b) / d x_b, shape (n_out, n_in). With Gaussian probes v
(Hutchinson): m_1 = E||J v||^2 / n_in = tr(J^T J) / n_in, m_2 = E||J^T J v||^2 / n_in =
tr((J^T J)^2) / n_in; the normalised spread is (m_2 - m_1^2) / m_1^2 and s_max^2 comes
from power iteration on J^T J (Pennington, Schoenholz & Ganguli 2017, arXiv:1711.04735).
Three vjps per probe and iteration, batched over the examples: the model must
treat examples independently (no BatchNorm in training mode).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PROBE_CHUNK = 64  # probes evaluated in one batched jvp/vjp (memory: 64 x the batch)


@dataclass(frozen=True)
class JacobianSpectrum:
    """Moments of the squared singular values of J, averaged over the batch.

    Attributes:
        m1: mean squared singular value, tr(J^T J) / n_in.
        m2: tr((J^T J)^2) / n_in.
        spread: (m2 - m1^2) / m1^2, the normalised variance of the squared singular values.
        s_max2: the largest squared singular value, the batch's largest.
        n_probes, n_iter: the probes and power iterations used.
    """

    m1: float
    m2: float
    spread: float
    s_max2: float
    n_probes: int
    n_iter: int

    @property
    def max_over_mean(self) -> float:
        """s_max^2 / m_1: 1 for an isometry, large for an ill-conditioned Jacobian."""
        return self.s_max2 / self.m1

    def __repr__(self) -> str:
        return (
            f"JacobianSpectrum(m1={self.m1:.4g}, spread={self.spread:.4g}, "
            f"s_max2/m1={self.max_over_mean:.4g}; {self.n_probes} probes, "
            f"{self.n_iter} power iterations)"
        )


def _jtj(model, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(J v, J^T J v) for every example at once: v and the second of shape (B, *in).

    J v by the double-vjp trick (J v = d/du <J^T u, v>), then J^T (J v) by one more vjp;
    plain torch.autograd, no torch.func (whose first call costs seconds of set-up).
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        y = model(x)
        u = torch.zeros_like(y, requires_grad=True)
        (jtu,) = torch.autograd.grad(y, x, u, create_graph=True)
        (jv,) = torch.autograd.grad(jtu, u, v)
        (jtjv,) = torch.autograd.grad(y, x, jv)
    return jv.detach(), jtjv.detach()


def _per_example_sq(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).pow(2).sum(1)  # (B,)


def jacobian_spectrum(
    model,
    x: torch.Tensor,
    *,
    n_probes: int = 16,
    n_iter: int = 30,
    generator: torch.Generator | None = None,
) -> JacobianSpectrum:
    """m_1, spread and s_max^2 of the per-example input-output Jacobian at the batch `x`.

    Args:
        model: a callable on a batch (B, *in) -> (B, *out), examples independent.
        x: the batch, a float tensor of shape (B, *in).
        n_probes: Gaussian probes per example for m_1 and m_2 (relative error of m_1
            ~ sqrt(2 / (n_probes * n_in))).
        n_iter: power iterations for s_max^2.
        generator: draw the probes from this generator.

    Returns:
        A JacobianSpectrum averaged over the batch (s_max2: the batch's largest).

    Raises:
        ValueError: n_probes or n_iter < 1, or x not a floating tensor with a batch dim.
    """
    for label, value in (("n_probes", n_probes), ("n_iter", n_iter)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label}={value!r} must be an int >= 1")
    if not torch.is_tensor(x) or not x.is_floating_point() or x.dim() < 2:
        raise ValueError("x must be a floating tensor of shape (B, *in) with a batch dimension")
    x = x.detach()
    n_in, batch = x[0].numel(), x.shape[0]
    m1 = torch.zeros((), dtype=torch.float64, device=x.device)
    m2 = torch.zeros_like(m1)
    with torch.no_grad():  # _jtj enables grad for its own graph only
        for start in range(0, n_probes, PROBE_CHUNK):
            k = min(PROBE_CHUNK, n_probes - start)
            xs = x.repeat(k, *([1] * (x.dim() - 1)))  # (k B, *in): probes batched with examples
            v = torch.randn(xs.shape, generator=generator, dtype=x.dtype, device=x.device)
            jv, jtjv = _jtj(model, xs, v)
            m1 += _per_example_sq(jv).double().sum() / n_in
            m2 += _per_example_sq(jtjv).double().sum() / n_in
        s_max2 = _power_iteration(model, x, n_iter, generator)
    m1, m2 = float(m1) / (n_probes * batch), float(m2) / (n_probes * batch)
    return JacobianSpectrum(
        m1=m1,
        m2=m2,
        spread=(m2 - m1 * m1) / (m1 * m1) if m1 > 0 else float("nan"),
        s_max2=s_max2,
        n_probes=n_probes,
        n_iter=n_iter,
    )


def _power_iteration(model, x: torch.Tensor, n_iter: int, generator) -> float:
    """Largest eigenvalue of J_b^T J_b over the batch (Rayleigh quotient ||J v||^2 / ||v||^2)."""
    v = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    shape = (-1,) + (1,) * (x.dim() - 1)
    rayleigh = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for _ in range(n_iter):
        v = v / _per_example_sq(v).sqrt().clamp_min(1e-300).reshape(shape)
        jv, jtjv = _jtj(model, x, v)
        rayleigh = _per_example_sq(jv).double()
        v = jtjv
    return float(rayleigh.max())
