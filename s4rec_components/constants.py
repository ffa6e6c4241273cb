"""Constants and option types shared by every module, defined once.

Examples:
    >>> from s4rec_components.constants import PADDING_ID, REDUCTIONS
    >>> PADDING_ID, REDUCTIONS
    (0, ('mean', 'sum', 'none'))
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

__all__ = ["COMPUTE_DTYPE", "NORM_EPS", "PADDING_ID", "REDUCTIONS", "Reduction", "loss_dtype", "normalize_rows"]

PADDING_ID: int = 0
"""Item id of padding. Sequences are left-padded with it; it is never a real item."""

Reduction = Literal["mean", "sum", "none"]
"""How a loss reduces its per-row values, as in ``torch.nn`` losses."""

REDUCTIONS: tuple[str, ...] = get_args(Reduction)

COMPUTE_DTYPE: torch.dtype = torch.float32
"""The least precise dtype in which numerically delicate parts (softmax, log-sum-exp,
Sinkhorn) are computed; float16 / bfloat16 inputs are promoted to it."""


def loss_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """The dtype every loss of this library is computed in and returned in.

    The rule: the promotion of the inputs' dtypes with float32. So float16, bfloat16 and
    float32 inputs give a float32 loss, and float64 inputs a float64 loss.

    Examples:
        >>> loss_dtype(torch.float16), loss_dtype(torch.bfloat16, torch.float32), loss_dtype(torch.float64)
        (torch.float32, torch.float32, torch.float64)
    """
    out = COMPUTE_DTYPE
    for dtype in dtypes:
        out = torch.promote_types(out, dtype)
    return out


def scaled_sum(losses: Tensor, scale: float | Tensor) -> Tensor:
    """``(losses * scale).sum()``: a mean (``scale = 1 / count``) that is finite wherever each
    term is. ``losses.mean()`` sums first, which overflows float32 when the terms are near its
    largest value (a loss at a temperature near ``MIN_DIVISOR``).

    Examples:
        >>> big = torch.full((4,), 3e38)
        >>> big.mean().item(), scaled_sum(big, 1 / 4).item() == big[0].item()
        (inf, True)
    """
    return (losses * scale).sum()


NORM_EPS = 1e-12
"""Rows whose L2 norm is at most this are treated as zero rows by :func:`normalize_rows`."""


def normalize_rows(x: Tensor) -> Tensor:
    """L2-normalise the rows of ``x`` (last dimension); a row of norm <= ``NORM_EPS`` becomes 0.

    ``F.normalize`` divides such a row by its epsilon instead, so the row's gradient is the
    upstream gradient times up to 1e12 (inf once cast back to float16). A zero row (an
    all-padding view pooled by its mean, say), or one as good as zero (norm <= 1e-12), has no
    usable direction: here it scores 0 against everything and, like the norm at 0, gets a zero
    (sub)gradient. Other rows equal ``F.normalize``'s to rounding.

    Examples:
        >>> normalize_rows(torch.tensor([[3.0, 4.0], [0.0, 0.0]])).tolist()
        [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    inverse = norm.clamp_min(NORM_EPS).reciprocal()
    return x * torch.where(norm > NORM_EPS, inverse, torch.zeros_like(inverse))
