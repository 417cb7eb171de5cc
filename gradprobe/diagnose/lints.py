"""Static lints: loss and output pairings that weaken or break the gradient.

Read from the autograd graph of one forward pass (see graph.py), so they see what the
code does, whether the softmax is an nn.Softmax module or a call inside forward:

- lint_mse_for_classification: a quadratic loss on class targets over a sigmoid / softmax
  output, the torch op or one written out (1/(1+exp(-z)), exp(z)/sum exp(z)); the output
  delta carries the factor sigma'(z) (Nielsen ch. 3);
- lint_double_softmax: a softmax fed to cross-entropy, which applies log_softmax itself;
- lint_unstable_log_softmax: log(softmax(z)) or log(sigmoid(z)), -inf once it underflows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gradprobe.diagnose.finding import Finding
from gradprobe.diagnose.graph import (
    ForwardPass,
    Graph,
    forward,
    inputs_of,
    op_name,
    through_values,
    untouched,
)

SQUASHING = ("Softmax", "Sigmoid")
_OUTPUT_MODULES = ("Softmax", "LogSoftmax", "Sigmoid")


def lint(model: nn.Module, batch: Any, loss_fn: Callable) -> list[Finding]:
    """The lints on one forward pass of `model` on `batch`; the model is left untouched.

    Args:
        model: any module.
        batch: (inputs, target) or a dict, as for `gradprobe.check`.
        loss_fn: loss_fn(output, target) -> scalar tensor.

    Returns:
        the findings of kinds lint_mse_for_classification, lint_double_softmax and
        lint_unstable_log_softmax; empty for a healthy setup.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"lint() needs a torch.nn.Module as model; got {type(model).__name__}")
    with untouched(model):
        return lint_pass(forward(model, batch, loss_fn))


def lint_pass(fp: ForwardPass) -> list[Finding]:
    """The three lints on the graph of a forward pass already run."""
    graph = Graph(fp.loss)
    layers = (fp.output_module,) if fp.output_module_type in _OUTPUT_MODULES else ()
    return [
        *lint_mse_for_classification(graph, fp.target, layers=layers),
        *lint_double_softmax(graph, n_classes=_n_classes(fp.output), layers=layers),
        *lint_unstable_log_softmax(graph, loss_finite=bool(torch.isfinite(fp.loss).all())),
    ]


def _n_classes(output: Any) -> int | None:
    # cross_entropy's class axis: 1 for (B, K, ...), 0 for an unbatched (K,)
    if not isinstance(output, torch.Tensor) or output.dim() == 0:
        return None
    return int(output.shape[1] if output.dim() >= 2 else output.shape[0])


def classification_target(target: Any) -> str | None:
    """What kind of class target `target` is, or None for a regression target.

    Returns:
        "integer class labels" (an integer tensor), "one-hot targets" (0/1 values, one 1
        per row of the last axis), "binary labels" (other 0/1 tensors), or None.
    """
    if not isinstance(target, torch.Tensor) or target.numel() == 0:
        return None
    if not (target.is_floating_point() or target.is_complex()):
        return "binary labels" if target.dtype == torch.bool else "integer class labels"
    t = target.detach()
    if not bool(((t == 0) | (t == 1)).all()):
        return None
    if t.dim() >= 2 and t.shape[-1] > 1 and bool((t.sum(-1) == 1).all()):
        return "one-hot targets"
    return "binary labels"


def _exponent(node: Any) -> Any:
    try:
        return node._saved_exponent
    except (AttributeError, RuntimeError):  # a tensor exponent, or freed after backward
        return None


def _difference_terms(node: Any) -> list[Any]:
    node = through_values(node)
    return inputs_of(node) if op_name(node) in ("Sub", "Rsub") else [node]


def _same_value(a: Any, b: Any) -> bool:
    """The same node, or the same op twice over the same graph inputs, e.g. (y - a) * (y - a)."""
    a, b = through_values(a), through_values(b)
    if a is b:
        return True
    ins = inputs_of(a)
    return bool(ins) and op_name(a) == op_name(b) and ins == inputs_of(b)


def quadratic_terms(graph: Graph) -> list[tuple[Any, list[Any]]]:
    """(node, its prediction-side inputs) for each MSE / squared-difference node."""
    found = []
    for node in graph.nodes:
        op, children = op_name(node), inputs_of(node)
        squared = op == "Pow" and _exponent(node) == 2 and len(children) == 1
        squared = squared or (op == "Mul" and len(children) == 2 and _same_value(*children))
        if op == "MseLoss":
            found.append((node, children))
        elif squared:
            found.append((node, _difference_terms(children[0])))
    return found


def _over_exp(node: Any, op: str) -> bool:
    """True when `node` is an `op` (Add, Sum) with an exp among its direct inputs."""
    node = through_values(node)
    return op_name(node) == op and any(op_name(through_values(c)) == "Exp" for c in inputs_of(node))


def squashing(node: Any) -> tuple[str | None, Any, bool]:
    """(the squashing op "Sigmoid" / "Softmax" or None, its node, whether written out):
    a torch op, or 1/(1+exp(-z)) (Reciprocal over Add over Exp, maybe under a Mul by 1.0),
    exp(z)/(1+exp(z)) (Div over Exp and Add) or exp(z)/sum(exp(z)) (Div over Exp and Sum)."""
    if op_name(node) in SQUASHING:
        return op_name(node), node, False
    if op_name(node) == "Mul" and len(inputs_of(node)) == 1:  # 1.0 / t is 1.0 * reciprocal(t)
        node = through_values(inputs_of(node)[0])
    kind = None
    if op_name(node) == "Reciprocal":
        kind = "Sigmoid" if _over_exp(inputs_of(node)[0], "Add") else None
    elif op_name(node) == "Div" and node.next_functions[1][0] is not None:
        numerator, denominator = (child for child, _ in node.next_functions[:2])
        exp_numerator = numerator is not None and op_name(through_values(numerator)) == "Exp"
        if _over_exp(denominator, "Add") and (numerator is None or exp_numerator):
            kind = "Sigmoid"
        elif exp_numerator and _over_exp(denominator, "Sum"):
            kind = "Softmax"
    return kind, node, kind is not None


def _mean_derivative(node: Any) -> float | None:
    """Mean sigma'(z) = a (1 - a) of a sigmoid / softmax node's saved output, if kept."""
    try:
        a = node._saved_result.detach().double()
    except (AttributeError, RuntimeError):
        return None
    return float((a * (1 - a)).mean())


def lint_mse_for_classification(
    graph: Graph, target: Any, *, layers: tuple[str, ...] = ()
) -> list[Finding]:
    """A quadratic loss on class targets over a sigmoid or softmax output."""
    kind = classification_target(target)
    if kind is None:
        return []
    hits = [
        (loss_node, *squashing(term))
        for loss_node, terms in quadratic_terms(graph)
        for term in map(through_values, terms)
        if squashing(term)[0] is not None
    ]
    if not hits:
        return []
    loss_node, op, squash, by_hand = hits[0]
    output = "written-out " * by_hand + op.lower()
    derivative = _mean_derivative(squash)
    shown = "" if derivative is None else f", mean sigma'(z) = {derivative:.3g} (at most 0.25)"
    return [
        Finding(
            "lint_mse_for_classification",
            layers,
            (),
            "warning",
            evidence={
                "loss_op": loss_node.name(),
                "output_op": squash.name(),
                "written_out": by_hand,
                "target": kind,
                "mean_output_derivative": derivative,
            },
            cause=(
                f"a quadratic loss on {kind} over a {output} output: the "
                "output error is delta^L = (a - y) * sigma'(z^L), and sigma'(z) vanishes "
                "where the output saturates, so a confidently wrong unit learns slowest "
                "(Nielsen, Neural Networks and Deep Learning, ch. 3, the learning slowdown)"
            ),
            fix=(
                "use cross-entropy on the logits: nn.CrossEntropyLoss / F.cross_entropy for "
                "class labels (drop the softmax), nn.BCEWithLogitsLoss for binary or "
                "multi-label targets (drop the sigmoid); delta^L is then a - y"
                + (f" (a written-out {op.lower()} also overflows exp)" if by_hand else "")
            ),
            summary=f"{loss_node.name()} over {squash.name()}{by_hand * ' (by hand)'} "
            f"on {kind}{shown}",
        )
    ]


def lint_double_softmax(
    graph: Graph, *, n_classes: int | None = None, layers: tuple[str, ...] = ()
) -> list[Finding]:
    """A log_softmax (cross-entropy's first op) applied to a softmax or log_softmax."""
    pairs = [
        (node, inner)
        for node in graph.with_op("LogSoftmax")
        for inner in map(through_values, inputs_of(node))
        if op_name(inner) in ("Softmax", "LogSoftmax")
    ]
    if not pairs:
        return []
    outer, inner = next((p for p in pairs if op_name(p[1]) == "Softmax"), pairs[0])
    losses = [c.name() for c in graph.consumers(outer) if op_name(c).startswith("NllLoss")]
    probabilities = op_name(inner) == "Softmax"
    floor = None
    if probabilities and n_classes:
        # min over the simplex of -p_y + log sum_j exp(p_j), reached at p = e_y
        floor = math.log(1 + (n_classes - 1) / math.e)
    where = "cross_entropy (NllLoss over LogSoftmax)" if losses else "log_softmax"
    if probabilities:
        cause = (
            f"the output is already a softmax and {where} applies log_softmax again, so "
            "probabilities in [0, 1] are read as logits: the gradient to the logits is "
            "multiplied by the softmax Jacobian diag(p) - p p^T, which vanishes as p "
            "saturates"
            + (f", and the loss cannot fall below log(1 + (K-1)/e) = {floor:.3g}" if floor else "")
        )
    else:
        cause = (
            f"the output is already log_softmax and {where} applies it again; "
            "log_softmax is idempotent, so loss and gradient are right but the op is redundant"
        )
    return [
        Finding(
            "lint_double_softmax",
            layers,
            (),
            "warning" if probabilities else "info",
            evidence={
                "inner_op": inner.name(),
                "outer_op": outer.name(),
                "loss_op": losses[0] if losses else None,
                "n_classes": n_classes,
                "loss_floor": floor,
                "occurrences": len(pairs),
            },
            cause=cause,
            fix=f"drop the final {'softmax' if probabilities else 'log_softmax'} and feed the "
            "logits to nn.CrossEntropyLoss / F.cross_entropy (or use log_softmax with F.nll_loss)",
            summary=f"{outer.name()} over {inner.name()}",
        )
    ]


def lint_unstable_log_softmax(graph: Graph, *, loss_finite: bool = True) -> list[Finding]:
    """An explicit log(softmax(z)) or log(sigmoid(z)) in the graph."""
    hits = [
        (node, inner)
        for node in graph.with_op("Log", "Log2", "Log10")
        for inner in map(through_values, inputs_of(node))
        if op_name(inner) in SQUASHING
    ]
    if not hits:
        return []
    ops = sorted({op_name(inner) for _, inner in hits})
    fixes = {
        "Softmax": "F.log_softmax(z, dim) (or F.cross_entropy on the logits z)",
        "Sigmoid": "F.logsigmoid(z) (or F.binary_cross_entropy_with_logits on the logits z)",
    }
    return [
        Finding(
            "lint_unstable_log_softmax",
            (),
            (),
            "warning" if loss_finite else "error",
            evidence={"ops": [f"Log over {op}" for op in ops], "occurrences": len(hits)},
            cause=(
                f"log of a {' and a '.join(op.lower() for op in ops)} computed in two "
                "steps: a probability that underflows to 0 in float32 (a logit gap above "
                "~104) gives log(0) = -inf and NaN gradients; the fused op never forms the "
                "probability"
                + ("" if loss_finite else " (the loss of this batch is already non-finite)")
            ),
            fix="use " + " and ".join(fixes[op] for op in ops),
            summary=f"{len(hits)} x " + ", ".join(f"log({op.lower()}(z))" for op in ops),
        )
    ]
