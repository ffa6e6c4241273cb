r"""Next-item prediction losses over a tied item table, fused and free of host reads.

Two losses a sequential recommender trains its encoder with, given the encoder's outputs
$h_i$ at $m$ positions and the item table $E$ (``SASRecEncoder.embed_items`` /
``item_embeddings.weight``):

- :func:`linear_cross_entropy`: full-softmax cross-entropy over all $n$ table rows
  (SASRec / S4Rec's "ce" objective), fused with the matmul and chunked over rows, so the
  $(m, n)$ logits never exist whole;
- :func:`sampled_bce`: binary cross-entropy with one sampled negative per position
  (SASRec's original objective, as in the public ICLRec code).

Both take per-row ``weights`` instead of boolean indexing (``hidden[targets > 0]``), so
a training step reads nothing from the device: padding positions get weight 0.

Letter legend: ``m`` rows (positions, e.g. ``b * l`` flattened), ``d`` hidden size, ``n``
rows of the item table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ._validation import (
    as_index,
    check_float,
    check_int,
    check_integer,
    check_ndim,
    check_range,
    check_same_device,
    check_tensor,
    reads_values,
)
from .constants import PADDING_ID, loss_dtype

__all__ = ["linear_cross_entropy", "sampled_bce"]

CPU_LOGITS_BLOCK = 2**21
"""Logits per chunk of :func:`linear_cross_entropy` on the CPU with ``chunk_size=None``
(8 MiB of float32: the chunk stays in cache; for n = 12,102 and d = 64 at 1 thread, 64-173
rows measured equal within noise, 256 rows 5-15 % slower and 1024 rows about 1.5x slower)."""
DEVICE_LOGITS_BLOCK = 2**26
"""Logits per chunk on other devices with ``chunk_size=None`` (256 MiB of float32; a GPU
wants few, large matmuls)."""


def _auto_chunk_size(device: torch.device, num_columns: int) -> int:
    """Rows per chunk so that one ``(rows, n)`` logits block holds about a device's budget."""
    block = CPU_LOGITS_BLOCK if device.type == "cpu" else DEVICE_LOGITS_BLOCK
    return max(1, block // max(num_columns, 1))


# --------------------------------------------------------------------------------------------
# validation shared by both losses
# --------------------------------------------------------------------------------------------


def _check_rows(
    hidden: Tensor, table: Tensor, ids: Sequence[tuple[Tensor, str]], weights: Tensor | None
) -> None:
    """Shape/dtype checks of ``hidden`` (m, d), ``table`` (n, d), id and weight vectors (m,)."""
    check_ndim(hidden, 2, "hidden", "(m, d)")
    check_ndim(table, 2, "table", "(n, d)")
    check_float(hidden, "hidden")
    check_float(table, "table")
    if hidden.shape[1] != table.shape[1]:
        raise ValueError(
            f"hidden and table must have the same size d in their last dimension, got "
            f"hidden of shape {tuple(hidden.shape)} and table of shape {tuple(table.shape)}"
        )
    if table.shape[0] == 0:
        raise ValueError(f"table must have at least one row, got shape {tuple(table.shape)}")
    check_same_device((hidden, "hidden"), (table, "table"))
    m = hidden.shape[0]
    for tensor, name in ids:
        check_ndim(tensor, 1, name, "(m,)")
        check_integer(tensor, name)
        if tensor.shape[0] != m:
            raise ValueError(
                f"{name} must have one entry per row of hidden ({m}), "
                f"got shape {tuple(tensor.shape)}"
            )
        check_same_device((hidden, "hidden"), (tensor, name))
        check_range(tensor, 0, table.shape[0] - 1, name)  # value check (off when disabled)
    if weights is not None:
        check_ndim(weights, 1, "weights", "(m,)")
        check_float(weights, "weights")
        if weights.shape[0] != m:
            raise ValueError(
                f"weights must have one entry per row of hidden ({m}), "
                f"got shape {tuple(weights.shape)}"
            )
        check_same_device((hidden, "hidden"), (weights, "weights"))
        if reads_values(weights) and weights.numel() > 0:
            bad = ~torch.isfinite(weights) | (weights < 0)
            if bool(bad.any()):
                first = int(bad.nonzero()[0, 0])
                raise ValueError(
                    f"weights must be finite and >= 0, got {weights[first].item()!r} "
                    f"at row {first}"
                )


def _safe_denominator(total_weight: Tensor) -> Tensor:
    """``total_weight``, or 1 where it is 0 (then the weighted sum is 0 too: the loss is 0)."""
    return torch.where(total_weight > 0, total_weight, torch.ones_like(total_weight))


# --------------------------------------------------------------------------------------------
# linear_cross_entropy
# --------------------------------------------------------------------------------------------


def _chunked_cross_entropy(
    hidden: Tensor,
    table: Tensor,
    targets: Tensor,
    row_scale: Tensor,
    chunk_size: int,
    ignore_columns: tuple[int, ...],
    need_hidden_grad: bool,
    need_table_grad: bool,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Per-row cross-entropy of ``hidden @ table.T``, chunk by chunk; trusts its inputs.

    Returns ``(ce (m,), grad_hidden (m, d) | None, grad_table (n, d) | None)``, the
    gradients being those of ``sum_i row_scale[i] * ce[i]``. All in one dtype.
    """
    m, n = hidden.shape[0], table.shape[0]
    ce = hidden.new_empty(m)
    # contiguous whatever the inputs' strides (row slices are written with ``out=``)
    grad_hidden = hidden.new_empty(hidden.shape) if need_hidden_grad else None
    grad_table = table.new_zeros(table.shape) if need_table_grad else None
    need_grad = need_hidden_grad or need_table_grad
    buffer = hidden.new_empty((min(chunk_size, m), n))  # the only large block, reused
    for start in range(0, m, chunk_size):
        stop = min(start + chunk_size, m)
        h_chunk = hidden[start:stop]  # (c, d)
        t_chunk = targets[start:stop, None]  # (c, 1)
        logits = torch.mm(h_chunk, table.T, out=buffer[: stop - start])  # (c, n)
        for column in ignore_columns:
            logits[:, column] = float("-inf")
        # one exp per chunk, all in place: z - max (finite: a column is left), exp, its sum
        top = logits.amax(1, keepdim=True)  # (c, 1)
        shifted = logits.sub_(top)
        shifted_target = shifted.gather(1, t_chunk)  # (c, 1), z_t - max <= 0
        exps = shifted.exp_()
        total = exps.sum(1, keepdim=True)  # (c, 1), >= 1
        # ce = logsumexp(z) - z_t = log(total) - (z_t - max): no cancellation of large terms
        ce[start:stop] = (total.log() - shifted_target).squeeze(1)
        if not need_grad:
            continue
        # d ce / d logits = softmax - onehot(target), scaled per row, built in place
        scale = row_scale[start:stop, None]  # (c, 1)
        grad = exps.mul_(scale / total)
        grad.scatter_add_(1, t_chunk, -scale)
        if grad_hidden is not None:
            torch.mm(grad, table, out=grad_hidden[start:stop])
        if grad_table is not None:
            grad_table.addmm_(grad.T, h_chunk)
    return ce, grad_hidden, grad_table


def _row_scale(weights: Tensor | None, like: Tensor) -> Tensor:
    """``w / sum(w)`` per row (0 if all w are 0); ``1 / m`` without weights. Shape (m,)."""
    m = like.shape[0]
    if weights is None:
        return like.new_full((m,), 1.0 / max(m, 1))
    return weights / _safe_denominator(weights.sum())


def _weighted_mean(ce: Tensor, row_scale: Tensor, weights: Tensor | None) -> Tensor:
    """``sum(w * ce) / sum(w)`` (0 if all w are 0, or without rows) from ``row_scale``.

    Rows of weight 0 contribute exactly 0, even where their ``ce`` is infinite (a padding
    row whose target is an ignored column).
    """
    if weights is None:
        return (row_scale * ce).sum()
    return torch.where(weights != 0, row_scale * ce, torch.zeros_like(ce)).sum()


class _LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``hidden @ table.T``; the gradient is computed in ``forward``.

    ``backward`` only scales the saved ``grad_hidden`` / ``grad_table`` by the incoming
    gradient, so it is not differentiable again: a backward that records a graph
    (``create_graph=True``) raises. (``once_differentiable`` would not do: with a constant
    incoming gradient, the usual ``autograd.grad(loss, h, create_graph=True)``, it lets the
    double backward through and this loss's second derivative counts as 0.)
    """

    @staticmethod
    def forward(
        ctx: Any,
        hidden: Tensor,
        table: Tensor,
        targets: Tensor,
        weights: Tensor | None,
        chunk_size: int,
        ignore_columns: tuple[int, ...],
    ) -> Tensor:
        needs = ctx.needs_input_grad
        row_scale = _row_scale(weights, hidden)
        ce, grad_hidden, grad_table = _chunked_cross_entropy(
            hidden, table, targets, row_scale, chunk_size, ignore_columns, needs[0], needs[1]
        )
        loss = _weighted_mean(ce, row_scale, weights)
        ctx.save_for_backward(grad_hidden, grad_table)  # None entries are allowed
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled() and not torch.compiler.is_compiling():  # create_graph=True
            raise RuntimeError(
                "linear_cross_entropy is differentiable once: its gradient is computed in the forward "
                "pass, so a backward with create_graph=True (double backward, gradient penalties) cannot "
                "give its second derivative; use F.cross_entropy on explicit logits there"
            )
        grad_hidden, grad_table = ctx.saved_tensors
        return (
            None if grad_hidden is None else grad_hidden * grad_loss,
            None if grad_table is None else grad_table * grad_loss,
            None,
            None,
            None,
            None,
        )


def linear_cross_entropy(
    hidden: Tensor,
    table: Tensor,
    targets: Tensor,
    *,
    weights: Tensor | None = None,
    chunk_size: int | None = None,
    ignore_columns: Sequence[int] = (PADDING_ID,),
) -> Tensor:
    r"""Full-softmax next-item cross-entropy of ``hidden @ table.T``, fused and chunked.

    With logits $z_i = E\,h_i \in \mathbb{R}^n$, where the ``ignore_columns`` of $z_i$ are
    $-\infty$ (padding row 0 of the item table, and a mask-token row if any), and row
    weights $w_i \ge 0$ (all 1 without ``weights``):

    $$
    \mathcal{L} = \frac{\sum_i w_i\,\big(\log\textstyle\sum_j e^{z_{ij}} - z_{i,t_i}\big)}
                       {\sum_i w_i},
    $$

    and $\mathcal{L} = 0$ when every weight is 0. Equal to
    ``F.cross_entropy(hidden @ table.T, targets)`` (with the ignored columns set to $-\infty$
    and the weighted mean), but computed ``chunk_size`` rows at a time: each chunk's logits
    give its log-sum-exp, its loss and, in place, its gradient
    $\partial\mathcal{L}/\partial z = w_i(\operatorname{softmax}(z_i) - \mathbb{1}_{t_i})/\sum w$,
    which is multiplied into $\partial/\partial h$ and accumulated into $\partial/\partial E$
    right away. So the $(m, n)$ logits, their softmax and their gradient never exist whole,
    and the backward pass only scales two saved tensors. When autograd is off (or neither
    ``hidden`` nor ``table`` requires grad) the gradient work is skipped.

    Nothing is read from the device (no boolean indexing; the weighted mean and its
    0-for-no-weight case are computed on the device) while ``set_validate_args(False)``.

    **Not twice differentiable**: the gradient is computed inside the forward pass, so
    ``create_graph=True`` / double backward raises in eager mode. Under ``torch.compile`` the
    backward is traced once without a graph and the check is gone: a compiled function must
    not ask this loss for second derivatives (they would count as 0). ``weights`` are constants: no gradient
    flows into them.

    Args:
        hidden: encoder outputs $h_i$ at the $m$ positions to score.
        table: the output item table $E$ (row $j$ = item $j$), e.g.
            ``encoder.item_embeddings.weight`` or ``encoder.embed_items(ids)``.
        targets: the index of the true next item of each row, in ``[0, n)``.
        weights: optional non-negative weight of each row, e.g. ``(targets > 0).float()``
            to skip padding positions; ``None`` weighs every row 1.
        chunk_size: rows per chunk (peak extra memory about ``chunk_size * n`` values).
            Does not change the result beyond float rounding. ``None`` picks it from ``n``
            and the device: about ``2**21 / n`` rows on the CPU (173 for n = 12,102; small
            chunks stay in cache: measured 1.4-1.6x faster than 1024 rows), ``2**26 / n`` on
            other devices.
        ignore_columns: columns excluded from the softmax (set to $-\infty$). A row of
            non-zero weight must not target one of them (its loss would be infinite).

    Shape:
        - hidden: $(m, d)$, floating point.
        - table: $(n, d)$, floating point.
        - targets: $(m,)$, integer.
        - weights: $(m,)$, floating point.
        - output: $()$, dtype ``loss_dtype(hidden.dtype, table.dtype)`` (float32 for
          float16 / bfloat16 / float32 inputs, float64 for float64); both inputs are cast
          to it for the computation, so their gradients keep their own dtypes.

    Returns:
        The weighted mean cross-entropy, a scalar.

    Raises:
        TypeError: if ``hidden``, ``table`` or ``weights`` is not a floating-point tensor,
            ``targets`` not an integer tensor, or ``chunk_size`` (unless ``None``) / an
            ignored column not an int.
        ValueError: if a shape is wrong (``hidden`` not 2-D, ``d`` differs from the table's,
            ``targets`` / ``weights`` not of length ``m``), a tensor is not on ``hidden``'s
            device, the table is empty, ``chunk_size < 1``, an ignored column is outside
            ``[0, n)`` or every column is ignored; with validation on, if a target is outside
            ``[0, n)``, a weight is negative or not finite, or a row of non-zero weight targets
            an ignored column.

    Examples:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> from s4rec_components.next_item import linear_cross_entropy
        >>> g = torch.Generator().manual_seed(0)
        >>> hidden = torch.randn(6, 4, generator=g, requires_grad=True)
        >>> table = torch.randn(10, 4, generator=g)
        >>> targets = torch.tensor([0, 3, 5, 0, 9, 1])  # 0 = padding position
        >>> loss = linear_cross_entropy(hidden, table, targets,
        ...                             weights=(targets > 0).float(), chunk_size=4)
        >>> logits = (hidden @ table.T).index_fill(1, torch.tensor([0]), float("-inf"))
        >>> real = targets > 0
        >>> reference = F.cross_entropy(logits[real], targets[real])
        >>> bool(torch.allclose(loss, reference))
        True
        >>> loss.backward()
        >>> hidden.grad[0].abs().sum().item()  # padding rows get no gradient
        0.0
    """
    hidden = check_tensor(hidden, "hidden")
    table = check_tensor(table, "table")
    targets = check_tensor(targets, "targets")
    if weights is not None:
        weights = check_tensor(weights, "weights")
    _check_rows(hidden, table, [(targets, "targets")], weights)
    n = table.shape[0]
    if chunk_size is None:
        chunk_size = _auto_chunk_size(hidden.device, n)
    chunk_size = check_int(chunk_size, "chunk_size", 1)
    if isinstance(ignore_columns, (str, bytes)) or not isinstance(ignore_columns, Sequence):
        raise TypeError(
            f"ignore_columns must be a sequence of ints, got {type(ignore_columns).__name__}"
        )
    ignored = tuple(
        sorted({check_int(c, "ignore_columns", 0, n - 1) for c in ignore_columns})
    )
    if len(ignored) == n:
        raise ValueError(f"ignore_columns must leave at least one of the {n} columns, got {ignored}")
    if reads_values(targets) and ignored and targets.numel() > 0:
        weighted = torch.ones_like(targets, dtype=torch.bool) if weights is None else weights != 0
        hits = weighted & torch.isin(targets, torch.tensor(ignored, device=targets.device))
        if bool(hits.any()):
            row = int(hits.nonzero()[0, 0])
            raise ValueError(
                f"targets must not be an ignored column ({ignored}) where the weight is "
                f"non-zero, got target {int(targets[row])} at row {row}; give such rows "
                f"weight 0 (e.g. weights=(targets > 0).float())"
            )
    return _linear_cross_entropy_impl(hidden, table, as_index(targets), weights, chunk_size, ignored)


def _linear_cross_entropy_impl(
    hidden: Tensor,
    table: Tensor,
    targets: Tensor,
    weights: Tensor | None,
    chunk_size: int,
    ignore_columns: tuple[int, ...],
) -> Tensor:
    """``linear_cross_entropy`` without checks (``ignore_columns`` in range, no duplicates)."""
    dtype = loss_dtype(hidden.dtype, table.dtype)
    hidden, table = hidden.to(dtype), table.to(dtype)
    if weights is not None:
        weights = weights.detach().to(dtype)
    if torch.is_grad_enabled() and (hidden.requires_grad or table.requires_grad):
        loss: Tensor = _LinearCrossEntropy.apply(  # type: ignore[no-untyped-call, unused-ignore]
            hidden, table, targets, weights, chunk_size, ignore_columns
        )
        return loss
    row_scale = _row_scale(weights, hidden)
    ce, _, _ = _chunked_cross_entropy(
        hidden, table, targets, row_scale, chunk_size, ignore_columns, False, False
    )
    return _weighted_mean(ce, row_scale, weights)


# --------------------------------------------------------------------------------------------
# sampled_bce
# --------------------------------------------------------------------------------------------


def sampled_bce(
    hidden: Tensor,
    table: Tensor,
    positives: Tensor,
    negatives: Tensor,
    *,
    weights: Tensor | None = None,
) -> Tensor:
    r"""Binary cross-entropy with one sampled negative per position (SASRec; ICLRec's BCE).

    With $s^+_i = h_i^\top E_{p_i}$ and $s^-_i = h_i^\top E_{q_i}$ for the true next item
    $p_i$ and a sampled negative $q_i$, and row weights $w_i \ge 0$ (all 1 without
    ``weights``):

    $$
    \mathcal{L} = \frac{\sum_i w_i\,\big(-\log\sigma(s^+_i) - \log\sigma(-s^-_i)\big)}
                       {\sum_i w_i},
    $$

    and $\mathcal{L} = 0$ when every weight is 0. The public ICLRec code writes
    $-\log(\sigma(s) + 10^{-24})$ and weights by ``pos_ids > 0``; this uses the exact
    ``logsigmoid`` (the same values up to rounding where $\sigma(s) \gg 10^{-24}$, finite
    for any score). Nothing is read from the device while ``set_validate_args(False)``.

    Args:
        hidden: encoder outputs $h_i$ at the $m$ positions.
        table: the output item table $E$ (row $j$ = item $j$).
        positives: the true next item $p_i$ of each row, in ``[0, n)``.
        negatives: one sampled negative item $q_i$ of each row, in ``[0, n)``.
        weights: optional non-negative weight of each row, e.g. ``(positives > 0).float()``
            to skip padding positions; ``None`` weighs every row 1. No gradient flows into
            them.

    Shape:
        - hidden: $(m, d)$, floating point.
        - table: $(n, d)$, floating point.
        - positives, negatives: $(m,)$, integer.
        - weights: $(m,)$, floating point.
        - output: $()$, dtype ``loss_dtype(hidden.dtype, table.dtype)``.

    Returns:
        The weighted mean BCE, a scalar.

    Raises:
        TypeError: if ``hidden``, ``table`` or ``weights`` is not a floating-point tensor,
            or ``positives`` / ``negatives`` not an integer tensor.
        ValueError: if a shape is wrong, a tensor is not on ``hidden``'s device or the table
            is empty; with validation on, if an id is outside ``[0, n)`` or a weight negative
            or not finite.

    Examples:
        >>> import math
        >>> import torch
        >>> from s4rec_components.next_item import sampled_bce
        >>> hidden = torch.zeros(3, 4)  # all scores 0: each term is log 2
        >>> table = torch.randn(10, 4)
        >>> pos, neg = torch.tensor([0, 2, 7]), torch.tensor([5, 1, 3])
        >>> loss = sampled_bce(hidden, table, pos, neg, weights=(pos > 0).float())
        >>> round(loss.item(), 4), round(2 * math.log(2), 4)
        (1.3863, 1.3863)
    """
    hidden = check_tensor(hidden, "hidden")
    table = check_tensor(table, "table")
    positives = check_tensor(positives, "positives")
    negatives = check_tensor(negatives, "negatives")
    if weights is not None:
        weights = check_tensor(weights, "weights")
    _check_rows(hidden, table, [(positives, "positives"), (negatives, "negatives")], weights)
    return _sampled_bce_impl(hidden, table, as_index(positives), as_index(negatives), weights)


def _sampled_bce_impl(
    hidden: Tensor, table: Tensor, positives: Tensor, negatives: Tensor, weights: Tensor | None
) -> Tensor:
    """``sampled_bce`` without checks."""
    dtype = loss_dtype(hidden.dtype, table.dtype)
    hidden, table = hidden.to(dtype), table.to(dtype)
    positive_scores = (hidden * F.embedding(positives, table)).sum(-1)  # (m,)
    negative_scores = (hidden * F.embedding(negatives, table)).sum(-1)
    per_row = -(F.logsigmoid(positive_scores) + F.logsigmoid(-negative_scores))
    if weights is not None:
        weights = weights.detach().to(dtype)
    return _weighted_mean(per_row, _row_scale(weights, per_row), weights)
