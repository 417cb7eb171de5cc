"""The hooks of a `Probe`: what they attach to and what each reads when it fires.

Forward hooks on the root module (start and end of a forward pass), on every watched
layer (its output: activations, and the output gradient delta where it is hooked) and on
parameter-free activation modules (saturation, dead units) unless the next layer's hook
reads their output as its input (activations.read_by_next_layer); the optimizer's pre-step hook
(gradients, read while still in cache) and post-step hook (the step ends). Hooks only
read and return None (DESIGN.md); every handle is kept and removed by _detach().
"""

from __future__ import annotations

from functools import partial

import torch

from gradprobe.probe.activations import activation_kind, read_by_next_layer
from gradprobe.probe.layers import Layer, first_tensor


class ProbeHooks:
    """Part of `Probe`: attaching and detaching its hooks, and the hooks themselves.

    Works on the state Probe.__init__ sets up (layers, buffer, capture, deltas, stats).
    """

    def _attach(self) -> None:
        self._handles.append(self.model.register_forward_pre_hook(self._on_model_start))
        for layer in self._layers:
            hook = partial(self._on_layer_forward, layer)
            self._layer_hooks.add(layer.module.register_forward_hook(hook))
        self._followers = [None] * len(self._layers)
        if self._activations:
            followers, covered = read_by_next_layer(self.model, self._layers)
            for index, follower in followers.items():
                self._followers[index] = follower
            for module in self.model.modules():
                is_act, kind = activation_kind(module)
                if id(module) in covered:
                    continue  # read by the next layer's hook (_on_layer_forward)
                if is_act and next(module.parameters(recurse=False), None) is None:
                    hook = partial(self._on_activation, kind, type(module).__name__)
                    self._layer_hooks.add(module.register_forward_hook(hook))
        self._layer_hooks.extend(self._through_time.attach())
        # registered last: runs after the root's own layer hook, at the end of forward
        self._handles.append(self.model.register_forward_hook(self._on_model_forward))
        if self.optimizer is not None:
            self._handles.append(self.optimizer.register_step_pre_hook(self._on_pre_step))
            self._handles.append(self.optimizer.register_step_post_hook(self._on_post_step))

    def _detach(self) -> None:
        self._layer_hooks.remove()
        while self._handles:
            self._handles.pop().remove()
        self._deltas.active = False
        self._through_time.active = False

    def _live(self) -> bool:
        return self._recording and not self._closed and torch.is_grad_enabled()

    def _measuring_time(self) -> bool:
        """Whether this forward pass measures the gradient through time (detail steps)."""
        return self._detail and self._live()

    def _begin_forward(self) -> None:
        """The first forward of a step (root or, when the root is not called, a layer)."""
        self._forward_since_step = True
        self._dropping = False
        if self._amp is not None and self._recording:  # the scale this step's backward uses
            self._amp.capture()
        if self._flusher.due():  # flush what is due before this step writes anything
            self.flush()

    def _on_model_start(self, module, args) -> None:
        if self._closed or not torch.is_grad_enabled():
            return
        if self._amp is not None and self._amp.skipped():
            self.discard_step()  # the GradScaler skipped the step these passes belong to
        if not self._forward_since_step:
            self._begin_forward()

    def _on_layer_forward(self, layer: Layer, module, args, output) -> None:
        if self._closed or not torch.is_grad_enabled():
            return
        if not self._forward_since_step:
            self._begin_forward()
        if not self._recording:
            return
        out = first_tensor(output)
        if out is None:
            return
        self._ran.add(layer.index)
        if layer.index not in self._seen:
            self._seen.add(layer.index)
            self._order.append(layer.index)
        if self._activations:
            follower = self._followers[layer.index]
            if follower is not None and args:
                self._capture.attribute_input(follower, args[0])
            self._capture.add(layer, out)
        if self._hooks_delta[layer.index]:
            self._deltas.attach(layer, out)

    def _on_activation(self, kind: str | None, name: str, module, args, output) -> None:
        if self._recording and args and not self._closed and torch.is_grad_enabled():
            self._capture.attribute(args[0], output, kind, name)

    def _on_model_forward(self, module, args, output) -> None:
        if self._live() and self._capture.has_pending:
            self._collect(self._buffer.current()[0])

    @torch.no_grad()
    def _collect(self, state: torch.Tensor) -> None:
        self._capture.collect(state, self._detail)

    @torch.no_grad()
    def _on_pre_step(self, optimizer, args, kwargs) -> None:
        if self._closed:
            return
        if self._detail:
            self._stats.snapshot()
        # a closure (LBFGS) computes the gradients inside step(): read them after it.
        # args are those of optimizer.step, the optimizer itself first (torch's wrapper)
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if self._recording and closure is None:
            self._measured = self._stats.measure(self._detail)
            self._hist.read(len(self._buffer.steps), self._n_recorded)

    def _on_post_step(self, optimizer, args, kwargs) -> None:
        if not self._closed:
            self._end_step()
