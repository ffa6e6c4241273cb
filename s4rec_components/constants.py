"""Constants and option types shared by every module, defined once.

Examples:
    >>> from s4rec_components.constants import PADDING_ID, REDUCTIONS
    >>> PADDING_ID, REDUCTIONS
    (0, ('mean', 'sum', 'none'))
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

__all__ = ["COMPUTE_DTYPE", "PADDING_ID", "REDUCTIONS", "Reduction", "loss_dtype"]

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
