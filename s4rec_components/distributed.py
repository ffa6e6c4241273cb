r"""Autograd-aware collectives over ``torch.distributed``, shared by the losses.

In-batch negatives and Sinkhorn targets over several processes need the rows of every rank.
``torch.distributed.all_gather`` has no backward, so gradients that reach the gathered copy
of another rank's rows would be lost. :func:`all_gather_with_grad` gathers along the first
dimension (ranks may hold different numbers of rows) and, in the backward pass, sums the
gradients of every rank's copy of the gathered tensor (``all_reduce`` with ``SUM``) and hands
each rank the slice that belongs to its own rows, the convention of lightly's ``GatherLayer``
and of DDP's gradient averaging: with ``W`` processes, each rank's gradient divided by ``W``
equals the single-process gradient of the mean of the ranks' losses.

Without an initialised process group every function here is the identity / single-process
answer, so library code can call them unconditionally.

Letter legend: ``b`` batch (local rows of a rank), ``d`` the remaining dimensions.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "all_gather_no_grad",
    "all_gather_sizes",
    "all_gather_with_grad",
    "is_distributed",
    "rank",
    "world_size",
]


def is_distributed() -> bool:
    """True when ``torch.distributed`` is available and a default process group is initialised.

    Examples:
        >>> from s4rec_components.distributed import is_distributed
        >>> is_distributed()
        False
    """
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """The number of processes in the default group, or 1 without one.

    Examples:
        >>> from s4rec_components.distributed import world_size
        >>> world_size()
        1
    """
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank in the default group, or 0 without one.

    Examples:
        >>> from s4rec_components.distributed import rank
        >>> rank()
        0
    """
    return dist.get_rank() if is_distributed() else 0


def all_gather_sizes(local: int, device: torch.device) -> list[int]:
    """Every rank's value of the int ``local`` (e.g. its batch size), in rank order.

    One small ``all_gather`` plus a host read of ``world_size`` integers. Without a process
    group it returns ``[local]``.

    Examples:
        >>> import torch
        >>> from s4rec_components.distributed import all_gather_sizes
        >>> all_gather_sizes(5, torch.device("cpu"))
        [5]
    """
    if not is_distributed():
        return [local]
    mine = torch.tensor([local], dtype=torch.long, device=device)
    parts = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, mine)
    return [int(v) for v in torch.cat(parts).tolist()]


def _gather_padded(x: Tensor, sizes: list[int]) -> Tensor:
    """Concatenate every rank's ``x`` (first-dim sizes ``sizes``) along dim 0: pad, gather, trim."""
    longest = max(sizes)
    if x.shape[0] < longest:
        pad = x.new_zeros((longest - x.shape[0], *x.shape[1:]))
        padded = torch.cat([x, pad])
    else:
        padded = x.contiguous()
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)])


class _AllGatherWithGrad(torch.autograd.Function):
    """Gather along dim 0 forward; all-reduce (sum) the gradient and take this rank's slice."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        sizes = all_gather_sizes(x.shape[0], x.device)
        me = dist.get_rank()
        ctx.start = sum(sizes[:me])
        ctx.stop = ctx.start + sizes[me]
        return _gather_padded(x.detach(), sizes)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.stop]


def all_gather_with_grad(x: Tensor) -> Tensor:
    r"""Concatenate ``x`` of every rank along dim 0, with a backward that reaches every rank.

    Ranks may hold different numbers of rows (``b_r``): the sizes are gathered first, every
    rank's rows are padded to the longest, gathered, and trimmed. The result is
    ``cat([x_0, x_1, ..., x_{W-1}])`` on every rank. In the backward pass the incoming
    gradients of all ranks are summed (``all_reduce`` ``SUM``) and each rank receives the slice
    of the sum that belongs to its own rows, so a loss computed on the gathered rows sends
    gradient to the rank that owns each row.

    Without an initialised process group (or with one process) it returns ``x`` itself.

    Both passes are collectives: every rank must call it in the same order, and every rank
    must backpropagate through its result (a rank whose loss ignores the gathered rows would
    leave the others waiting in the backward all-reduce). The sizes are exchanged with one
    small ``all_gather`` and read on the host (``world_size`` integers) to pad and trim.

    Args:
        x: this rank's rows; any dtype and trailing shape, the same trailing shape and dtype
            on every rank.

    Shape:
        - x: :math:`(b_r, *)`.
        - output: :math:`(\sum_r b_r, *)`.

    Returns:
        The rows of all ranks in rank order; differentiable with respect to ``x``.

    Examples:
        >>> import torch
        >>> from s4rec_components.distributed import all_gather_with_grad
        >>> x = torch.ones(3, 2, requires_grad=True)
        >>> all_gather_with_grad(x) is x
        True
    """
    if not is_distributed() or dist.get_world_size() == 1:
        return x
    out: Tensor = _AllGatherWithGrad.apply(x)  # type: ignore[no-untyped-call, unused-ignore]
    return out


def all_gather_no_grad(x: Tensor) -> Tensor:
    """Like :func:`all_gather_with_grad` for tensors that carry no gradient (ids, labels).

    Examples:
        >>> import torch
        >>> from s4rec_components.distributed import all_gather_no_grad
        >>> all_gather_no_grad(torch.arange(3)).tolist()
        [0, 1, 2]
    """
    if not is_distributed() or dist.get_world_size() == 1:
        return x
    return _gather_padded(x.detach(), all_gather_sizes(x.shape[0], x.device))

