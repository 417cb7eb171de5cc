"""Output gradients delta = dC/dz for layers whose bias gradient does not already hold it.

A tensor hook on the layer's output, registered from the forward hook, receives dC/dz and
nothing else. It is lighter than `register_full_backward_hook`, which wraps every input and
output in an extra autograd Function and raises on an in-place op applied to the output
(nn.ReLU(inplace=True) after a Linear). A tensor hook registered before such an in-place
op receives the gradient with respect to the value before it, which is dC/dz exactly.
"""

from __future__ import annotations

import torch

from gradprobe.probe.layers import Layer

_WIDE = (torch.float32, torch.float64)


class DeltaAccumulator:
    """Sums, per layer, dC/dz over every non-unit axis and over the calls in a step."""

    def __init__(self) -> None:
        self._vectors: dict[int, torch.Tensor] = {}
        self.active = True

    def attach(self, layer: Layer, out: torch.Tensor) -> None:
        """Register the hook on a layer's output tensor (from its forward hook)."""
        if not out.requires_grad or out.dim() == 0:
            return
        feature_dim = layer.spec.feature_dim % out.dim()
        index = layer.index

        def on_grad(grad: torch.Tensor | None) -> None:
            # None: the output's node ran in backward but this output got no gradient
            # (an LSTM's output sequence when only h_n / c_n are read, on CPU).
            if not self.active or grad is None:
                return
            dims = tuple(d for d in range(grad.dim()) if d != feature_dim)
            # half-precision gradients are summed in float32: scaled by a GradScaler,
            # a batch sum of them may pass float16's 65504 when each one does not
            wide = grad.dtype if grad.dtype in _WIDE else torch.float32
            vec = grad.detach().sum(dim=dims, dtype=wide) if dims else grad.detach().to(wide)
            prev = self._vectors.get(index)
            self._vectors[index] = vec if prev is None else prev + vec

        out.register_hook(on_grad)

    def take(self) -> dict[int, torch.Tensor]:
        """The accumulated vectors (layer index -> (F,)) of this step; resets."""
        vectors, self._vectors = self._vectors, {}
        return vectors
