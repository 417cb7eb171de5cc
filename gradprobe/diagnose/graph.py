"""One forward pass on a user's model, leaving it as it was, and a walk over its graph.

Each graph node is the backward of one op (`SoftmaxBackward0`, ...); `next_functions` links
it to its inputs' nodes. `nn.CrossEntropyLoss` is NllLossBackward0 over LogSoftmaxBackward0.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

TARGET_KEYS = ("y", "target", "targets", "label", "labels")
INPUT_KEYS = ("x", "input", "inputs")

# Ops that move or pick values without computing on them: a log over a view of a
# softmax is still a log of a softmax.
VALUE_PRESERVING = frozenset(
    {
        "View", "UnsafeView", "Reshape", "ReshapeAlias", "Transpose", "T", "Permute",
        "Squeeze", "Unsqueeze", "Expand", "Clone", "Contiguous", "Select", "Slice",
        "Index", "Alias", "ToCopy", "Narrow", "Flatten", "Unflatten",
    }
)  # fmt: skip

_BACKWARD_SUFFIX = re.compile(r"Backward\d*$")


def split_batch(batch: Any) -> tuple[tuple, dict, Any]:
    """(positional inputs, keyword inputs, target) of a batch.

    Args:
        batch: `(x, y)`, where x is a tensor, a tuple of positional inputs or a dict of
            keyword inputs; or a dict holding the target under one of TARGET_KEYS and the
            inputs under one of INPUT_KEYS (or as keyword inputs, by name).

    Returns:
        (args, kwargs, target), so that the output is model(*args, **kwargs).
    """
    if isinstance(batch, (tuple, list)):
        if len(batch) != 2:
            raise ValueError(f"batch must be (inputs, target); got a sequence of {len(batch)}")
        x, target = batch
        if isinstance(x, (tuple, list)):
            return tuple(x), {}, target
        if isinstance(x, dict):
            return (), dict(x), target
        return (x,), {}, target
    if isinstance(batch, dict):
        found = [k for k in TARGET_KEYS if k in batch]
        if len(found) != 1:
            raise ValueError(
                f"a dict batch needs exactly one target key of {TARGET_KEYS}; got keys "
                f"{sorted(batch)}"
            )
        rest = {k: v for k, v in batch.items() if k != found[0]}
        if len(rest) == 1 and next(iter(rest)) in INPUT_KEYS:
            return (next(iter(rest.values())),), {}, batch[found[0]]
        return (), rest, batch[found[0]]
    raise TypeError(
        f"batch must be a tuple (inputs, target) or a dict with a target key {TARGET_KEYS}; "
        f"got {type(batch).__name__}"
    )


@dataclass
class ForwardPass:
    """What one forward pass produced.

    Attributes:
        output: the model's output.
        target: the batch's target, as given.
        loss: loss_fn(output, target), a scalar tensor.
        output_module: qualified name of the innermost submodule that returned the
            output tensor itself, or None (the root computed it, or it is not a tensor).
        output_module_type: that submodule's class name, or None.
    """

    output: Any
    target: Any
    loss: torch.Tensor
    output_module: str | None = None
    output_module_type: str | None = None

    def __repr__(self) -> str:
        where = f"{self.output_module!r} ({self.output_module_type})"
        return f"ForwardPass(loss={float(self.loss.detach()):.4g}, output_module={where})"


def forward(model: nn.Module, batch: Any, loss_fn: Callable) -> ForwardPass:
    """Run model on the batch and loss_fn on (output, target), with autograd on.

    Raises:
        ValueError: the loss is not a scalar tensor with an autograd graph.
    """
    args, kwargs, target = split_batch(batch)
    produced: list[tuple[str, nn.Module, Any]] = []
    handles = [
        module.register_forward_hook(lambda m, a, out, name=name: produced.append((name, m, out)))
        for name, module in model.named_modules()
        if name
    ]
    try:
        with torch.enable_grad():
            output = model(*args, **kwargs)
            loss = loss_fn(output, target)
    finally:
        for handle in handles:
            handle.remove()
    check_loss(loss)
    # hooks fire inner modules first: the first producer of the output is the innermost
    name, module = next(((n, m) for n, m, out in produced if out is output), (None, None))
    kind = None if module is None else type(module).__name__
    return ForwardPass(output, target, loss, name, kind)


def check_loss(loss: Any) -> None:
    """Raise ValueError unless `loss` is a scalar tensor with an autograd graph."""
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"loss_fn(output, target) must return a scalar tensor; got {shape}")
    if loss.grad_fn is None:
        raise ValueError(
            "the loss has no autograd graph: no parameter of the model requires grad, or "
            "the forward ran under torch.no_grad() / detached its output"
        )


@contextmanager
def untouched(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> Iterator[None]:
    """Restore, on exit, everything a forward, backward and optimizer step can change.

    Bit for bit: every parameter and buffer of the model and the optimizer (values, and
    the very tensor objects in their modules), every `.grad` (None stays None), the
    requires_grad flags, each submodule's train/eval mode, the optimizer's state and
    param_groups, and torch's global RNG (CPU, and CUDA where initialised). numpy's and
    Python's RNGs are not saved: torch modules do not draw from them.
    """
    restore = [_save_tensors(model, optimizer), _save_modes(model), _save_rng()]
    if optimizer is not None:
        restore.append(_save_optimizer(optimizer))
    try:
        yield
    finally:
        for undo in restore:
            undo()


def _save_tensors(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> Callable:
    slots = [(m._parameters, n, t) for m in model.modules() for n, t in m._parameters.items()]
    slots += [(m._buffers, n, t) for m in model.modules() for n, t in m._buffers.items()]
    owned = {id(t) for _, _, t in slots}
    extra = [p for g in (optimizer.param_groups if optimizer else []) for p in g["params"]]
    tensors = list({id(t): t for _, _, t in slots if t is not None}.values())
    tensors += [p for p in extra if id(p) not in owned]
    values = [t.detach().clone() for t in tensors]
    grads = [(t.grad, t.requires_grad, t._version) for t in tensors]

    @torch.no_grad()
    def undo() -> None:
        for table, name, tensor in slots:
            table[name] = tensor
        for tensor, value, (grad, requires_grad, _) in zip(tensors, values, grads):
            if not torch.equal(tensor, value):
                tensor.copy_(value)
            tensor.grad = grad
            tensor.requires_grad_(requires_grad)
        # The values are back bit for bit, so a graph the caller built before still holds:
        # put back the version counters autograd checks it by (BatchNorm's kernel updates
        # running statistics without bumping them; an optimizer step bumps the weights').
        setter = getattr(torch._C._autograd, "_unsafe_set_version_counter", None)
        if setter is not None:
            setter(tuple(tensors), tuple(version for _, _, version in grads))

    return undo


def _save_modes(model: nn.Module) -> Callable:
    modes = [(m, m.training) for m in model.modules()]

    def undo() -> None:
        for module, training in modes:
            module.training = training

    return undo


def _save_rng() -> Callable:
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def undo() -> None:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)

    return undo


def _save_optimizer(optimizer: torch.optim.Optimizer) -> Callable:
    attrs = dict(vars(optimizer))  # e.g. the flag an LR scheduler sets on the first step
    groups = [(group, dict(group)) for group in optimizer.param_groups]
    states = {p: (s, dict(s)) for p, s in optimizer.state.items()}
    tensors = [(p, k, v) for p, (_, s) in states.items() for k, v in s.items()]
    values = {(p, k): v.clone() for p, k, v in tensors if torch.is_tensor(v)}

    @torch.no_grad()
    def undo() -> None:
        for key in set(vars(optimizer)) - set(attrs):
            delattr(optimizer, key)
        vars(optimizer).update(attrs)
        optimizer.param_groups[:] = [group for group, _ in groups]
        for group, entries in groups:
            group.clear()
            group.update(entries)
        for p in [p for p in optimizer.state if p not in states]:
            del optimizer.state[p]
        for p, (state, entries) in states.items():
            optimizer.state[p] = state
            state.clear()
            state.update(entries)
        for (p, k), value in values.items():
            optimizer.state[p][k].copy_(value)

    return undo


def op_name(node: Any) -> str:
    """The op a graph node differentiates: "Softmax" for SoftmaxBackward0."""
    return _BACKWARD_SUFFIX.sub("", node.name())


def inputs_of(node: Any) -> list[Any]:
    """The nodes of a node's differentiable inputs, in argument order (None dropped)."""
    return [child for child, _ in node.next_functions if child is not None]


def through_values(node: Any) -> Any:
    """Follow value-preserving ops (views, copies, picks) down to the op that computed."""
    while op_name(node) in VALUE_PRESERVING:
        children = inputs_of(node)
        if len(children) != 1:
            break
        node = children[0]
    return node


class Graph:
    """The autograd graph reachable from a tensor's grad_fn.

    Attributes:
        nodes: every node once, depth-first from the root (iterative: graphs of deep or
            unrolled recurrent nets are far deeper than Python's recursion limit).
        parents: node -> the nodes that take it as an input (towards the loss).
    """

    def __init__(self, tensor: torch.Tensor) -> None:
        if tensor.grad_fn is None:
            raise ValueError("the tensor has no grad_fn: there is no autograd graph to walk")
        self.root = tensor.grad_fn
        self.nodes: list[Any] = []
        self.parents: dict[Any, list[Any]] = {self.root: []}
        stack = [self.root]
        while stack:
            node = stack.pop()
            self.nodes.append(node)
            for child in inputs_of(node):
                if child not in self.parents:
                    self.parents[child] = []
                    stack.append(child)
                self.parents[child].append(node)

    def with_op(self, *ops: str) -> list[Any]:
        """The nodes whose op is one of `ops` (e.g. "LogSoftmax")."""
        return [node for node in self.nodes if op_name(node) in ops]

    def consumers(self, node: Any) -> list[Any]:
        """The nodes that use `node`'s value, looking up through value-preserving ops."""
        found, stack, seen = [], list(self.parents.get(node, [])), set()
        while stack:
            parent = stack.pop()
            if parent in seen:
                continue
            seen.add(parent)
            if op_name(parent) in VALUE_PRESERVING:
                stack.extend(self.parents.get(parent, []))
            else:
                found.append(parent)
        return found

    def __len__(self) -> int:
        return len(self.nodes)

    def __repr__(self) -> str:
        return f"Graph({len(self.nodes)} nodes, root={self.root.name()})"
