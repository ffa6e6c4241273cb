r"""Equipartitioned soft cluster targets by Sinkhorn-Knopp (S4Rec Sec. 4.1, Eq. 9-11; SwAV).

The auxiliary targets $Q$ of the online clustering solve an entropy-regularised
transport problem over the polytope whose rows (samples) carry mass $1/b$ and whose
columns (prototypes) carry mass $1/k$. The solution is a rescaled exponential of the
scores (Eq. 11); the rescaling vectors are found by a few rounds of alternating
normalisation, exactly as in SwAV's ``distributed_sinkhorn``, but carried out on
$\log Q$ with ``logsumexp`` so that small $\epsilon$, large scores and half
precision inputs cannot overflow.

Letter legend: ``b`` batch, ``k`` prototypes.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.distributed as dist
from einops import rearrange
from torch import Tensor, nn

from ._validation import (
    check_bool,
    check_divisor,
    check_float,
    check_int,
    check_ndim,
    check_nonempty,
    check_tensor,
    reads_values,
)
from .constants import COMPUTE_DTYPE

__all__ = ["SinkhornKnopp", "sinkhorn_knopp"]

# SwAV's defaults: three normalisation rounds, entropy weight 0.05.
DEFAULT_NUM_ITERS = 3
DEFAULT_EPSILON = 0.05


def _check_hyperparameters(num_iters: object, epsilon: object, distributed: object) -> tuple[int, float]:
    """Validate the rounds (an integer >= 1), the entropy weight (finite, > 0) and the flag;
    return ``(num_iters, epsilon)`` as ``int`` and ``float``."""
    rounds = check_int(num_iters, "num_iters", 1)
    check_bool(distributed, "distributed")
    return rounds, check_divisor(epsilon, "epsilon")


def _check_scores(scores: Tensor, epsilon: float) -> None:
    """Shape and dtype checks (free); while validation is on, one host read checks that the
    scores are finite and that ``scores / epsilon`` fits the float32 log-domain iterations."""
    check_tensor(scores, "scores")
    check_ndim(scores, 2, "scores", "(b, k)")
    check_float(scores, "scores")
    check_nonempty(scores, "scores")
    if not reads_values(scores):
        return
    largest = float(scores.detach().abs().max())
    if not math.isfinite(largest):
        raise ValueError("scores must be finite, got a tensor holding inf or nan")
    limit = torch.finfo(COMPUTE_DTYPE).max / 4  # room for the differences the iterations form
    if largest / epsilon > limit:
        raise ValueError(
            f"scores / epsilon must stay below {limit:.3g} in float32, got scores up to "
            f"{largest:.3g} with epsilon {epsilon!r}: scale the scores down or raise epsilon"
        )


def _use_distributed(distributed: bool) -> bool:
    """True where the caller asked for it and a process group is up."""
    return distributed and dist.is_available() and dist.is_initialized()


def _log_prototype_mass(log_q: Tensor, use_distributed: bool) -> Tensor:
    """``(k, 1)``: log of each prototype's mass, summed over the (global) batch.

    Across processes the stable log-sum-exp is assembled from an all-reduced maximum and an
    all-reduced sum of the shifted exponentials.
    """
    if not use_distributed:
        return torch.logsumexp(log_q, dim=1, keepdim=True)
    peak = log_q.amax(dim=1, keepdim=True)
    dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    mass = (log_q - peak).exp().sum(dim=1, keepdim=True)
    dist.all_reduce(mass, op=dist.ReduceOp.SUM)
    return peak + mass.log()


def _global_batch_size(local: int, device: torch.device, use_distributed: bool) -> int | Tensor:
    """The batch size summed over all processes (batches may differ between ranks).

    Locally a Python ``int``; across processes a 0-d ``float32`` tensor on ``device``, so that
    no value is read back to the host.
    """
    if not use_distributed:
        return local
    size = torch.tensor(float(local), dtype=COMPUTE_DTYPE, device=device)
    dist.all_reduce(size, op=dist.ReduceOp.SUM)
    return size


def _warn_if_underfull(batch: int | Tensor, num_prototypes: int) -> None:
    """Warn when the (global) batch is smaller than ``k``.

    A global size is a device tensor: it is read (a host sync) only while validation is on.
    """
    if isinstance(batch, Tensor):
        if not reads_values(batch):
            return
        batch = int(batch.item())
    if batch < num_prototypes:
        warnings.warn(
            f"equipartition cannot hold: the batch has {batch} samples for {num_prototypes} "
            "prototypes (b < k), so some prototypes must stay nearly empty",
            UserWarning,
            stacklevel=4,
        )


def _sinkhorn_impl(
    scores: Tensor,
    num_iters: int,
    epsilon: float,
    use_distributed: bool,
    batch: int | Tensor | None = None,
) -> Tensor:
    """The kernel of :func:`sinkhorn_knopp`; trusts its inputs and reads nothing to the host.

    ``batch`` is the global batch size when the caller already has it (as returned by
    ``_global_batch_size``); otherwise it is computed here.
    """
    local_batch, num_prototypes = scores.shape
    if batch is None:
        batch = _global_batch_size(local_batch, scores.device, use_distributed)
    _warn_if_underfull(batch, num_prototypes)
    log_k = math.log(num_prototypes)
    log_b = batch.log() if isinstance(batch, Tensor) else math.log(batch)
    with torch.no_grad():
        # (k, b) as in SwAV: a column per sample.
        log_q = rearrange(scores.detach().to(COMPUTE_DTYPE) / epsilon, "b k -> k b")
        for _ in range(num_iters - 1):
            log_q = log_q - _log_prototype_mass(log_q, use_distributed) - log_k
            log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - log_b
        log_q = log_q - _log_prototype_mass(log_q, use_distributed) - log_k
        # The last sample step times b is a softmax over the prototypes. With the max subtracted
        # before the exp, rows sum to 1 up to float32 rounding even where |scores / epsilon| is
        # ~3e4 (a float32 ulp of 2e-3 there; ``exp(log_q - logsumexp)`` kept that error).
        out: Tensor = rearrange(torch.softmax(log_q, dim=0), "k b -> b k")
        return out


def sinkhorn_knopp(
    scores: Tensor,
    *,
    num_iters: int = DEFAULT_NUM_ITERS,
    epsilon: float = DEFAULT_EPSILON,
    distributed: bool = False,
) -> Tensor:
    r"""Equipartitioned soft assignments of a batch to prototypes (S4Rec Eq. 9-11; SwAV).

    Approximately solves

    $$
    \max_{Q \in \mathcal{Q}} \operatorname{Tr}(Q^\top S) + \epsilon H(Q), \qquad
    \mathcal{Q} = \{Q \in \mathbb{R}_+^{b \times k} :
    Q \mathbf{1}_k = \tfrac{1}{b} \mathbf{1}_b,\
    Q^\top \mathbf{1}_b = \tfrac{1}{k} \mathbf{1}_k\}
    $$

    whose solution is
    $Q^* = \operatorname{diag}(m) \exp(S / \epsilon) \operatorname{diag}(v)$.
    Starting from $\exp(S / \epsilon)$, each of the ``num_iters`` rounds first rescales
    every prototype (column of $Q$) to total mass $1/k$, then every sample (row) to
    mass $1/b$; the result is returned as $b \cdot Q$, whose rows sum to 1. The
    numbers equal SwAV's ``distributed_sinkhorn`` for the same ``num_iters`` (SwAV's initial
    division by the total mass is cancelled by the first prototype step and is omitted), but
    every step is done on $\log Q$ with ``logsumexp``, so the result stays finite for
    small $\epsilon$, large scores and ``float16`` / ``bfloat16`` inputs, as long as
    $|S| / \epsilon$ fits float32 (below about $8.5 \cdot 10^{37}$; a value check).

    The computation runs in ``float32`` under ``torch.no_grad()`` whatever the input: the
    output is ``float32`` and never requires grad (targets are constants, as in SwAV). The
    kernel reads nothing back to the host; the finiteness check of ``scores`` does, and runs
    only while value checks are on (``s4rec_components.set_validate_args``).

    With ``distributed=True`` and an initialised ``torch.distributed`` process group, the
    prototype masses are all-reduced so that equipartition holds over the global batch, whose
    size is all-reduced too (ranks may hold batches of different sizes); the sample step stays
    local, each sample getting mass $1/b_{global}$ before the final rescaling, so every
    output row still sums to 1. With ``distributed=True`` but no process group, the call
    silently falls back to the local computation.

    Args:
        scores: similarities of ``b`` samples to ``k`` prototypes, e.g. $Z \mu^\top$;
            any floating dtype, finite.
        num_iters: normalisation rounds; 3 is SwAV's default. Must be an ``int`` >= 1.
        epsilon: entropy weight; smaller gives harder assignments. Must be > 0.
        distributed: all-reduce the prototype marginals over the default process group
            when one is initialised.

    Shape:
        - scores: $(b, k)$.
        - output: $(b, k)$, ``float32``, rows sum to 1, columns sum to about
          $b / k$ (exactly so in the limit of many rounds, when $b \ge k$).

    Returns:
        The soft targets $b \cdot Q$, detached, ``float32``, on the device of ``scores``.

    Raises:
        TypeError: if ``scores`` is not a floating tensor, ``num_iters`` is not an ``int``
            (a ``bool`` is refused), ``epsilon`` is not a real number or ``distributed`` is
            not a ``bool``.
        ValueError: if ``scores`` is not 2-D or is empty, if ``num_iters < 1`` or
            ``epsilon`` is not finite and >= ``MIN_DIVISOR`` (about 1.2e-38); and, while value
            checks are on (see ``s4rec_components.set_validate_args``), if ``scores`` holds inf
            or NaN or ``|scores| / epsilon`` exceeds float32's range (a quarter of it).

    Warns:
        UserWarning: when the (global) batch is smaller than ``k``: equipartition cannot hold.

    Examples:
        >>> import torch
        >>> from s4rec_components import sinkhorn_knopp
        >>> q = sinkhorn_knopp(torch.randn(8, 4), num_iters=3, epsilon=0.05)
        >>> q.shape, q.dtype, q.requires_grad
        (torch.Size([8, 4]), torch.float32, False)
        >>> bool(torch.allclose(q.sum(dim=1), torch.ones(8)))
        True
        >>> sinkhorn_knopp(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), epsilon=1e-4)
        tensor([[1., 0.],
                [0., 1.]])
    """
    num_iters, epsilon = _check_hyperparameters(num_iters, epsilon, distributed)
    _check_scores(scores, epsilon)
    return _sinkhorn_impl(scores, num_iters, epsilon, _use_distributed(distributed))


class SinkhornKnopp(nn.Module):
    r"""Equipartitioned soft assignments of a batch to prototypes (S4Rec Eq. 9-11; SwAV).

    Solves $\max_{Q} \operatorname{Tr}(Q^\top S) + \epsilon H(Q)$ over the transport
    polytope with row marginals $1/b$ and column marginals $1/k$ by ``num_iters``
    rounds of alternating normalisation in the log domain, and returns $b \cdot Q$, whose
    rows sum to 1. A thin wrapper that stores the hyper-parameters and calls
    ``sinkhorn_knopp``; see there for the details (float32 output, no gradient, the
    distributed mode and its silent local fallback).

    Args:
        num_iters: normalisation rounds; 3 is SwAV's default. Must be an ``int`` >= 1.
        epsilon: entropy weight; smaller gives harder assignments. Must be > 0.
        distributed: all-reduce the prototype marginals over the default process group when
            one is initialised.

    Shape:
        - scores: $(b, k)$, similarities of b sequences to k prototypes, any float dtype.
        - output: $(b, k)$, float32, rows sum to 1, columns sum to about $b / k$.

    Raises:
        TypeError: if ``num_iters`` is not an ``int``, ``epsilon`` is not a real number or
            ``distributed`` is not a ``bool`` (and in ``forward`` if ``scores`` is not a
            floating tensor).
        ValueError: if ``num_iters < 1`` or ``epsilon`` is not finite and >= ``MIN_DIVISOR``
            (about 1.2e-38) (and in ``forward`` if ``scores`` is not 2-D, is empty or, with
            value checks on, is not finite or too large for ``epsilon``).

    Examples:
        >>> import torch
        >>> from s4rec_components import SinkhornKnopp
        >>> q = SinkhornKnopp(num_iters=3)(torch.randn(8, 4))
        >>> q.shape, bool(torch.allclose(q.sum(1), torch.ones(8)))
        (torch.Size([8, 4]), True)
    """

    def __init__(
        self,
        *,
        num_iters: int = DEFAULT_NUM_ITERS,
        epsilon: float = DEFAULT_EPSILON,
        distributed: bool = False,
    ) -> None:
        super().__init__()
        self.num_iters, self.epsilon = _check_hyperparameters(num_iters, epsilon, distributed)
        self.distributed = distributed

    def forward(self, scores: Tensor) -> Tensor:
        """Soft targets ``(b, k)`` for the scores ``(b, k)``; see ``sinkhorn_knopp``."""
        _check_scores(scores, self.epsilon)
        return _sinkhorn_impl(
            scores, self.num_iters, self.epsilon, _use_distributed(self.distributed)
        )

    def extra_repr(self) -> str:
        return f"num_iters={self.num_iters}, epsilon={self.epsilon}, distributed={self.distributed}"
