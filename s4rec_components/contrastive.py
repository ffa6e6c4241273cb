r"""Sequence-level contrastive loss with intent negatives (S4Rec Sec. 4.2.1, Eq. 13-14).

NT-Xent (SimCLR; the ``NCELoss`` of CL4SRec / ICLRec) over the $2b$ anchors of two augmented
views: each anchor's positive is the other view of its own sequence, its negatives are every
other row of both views and, when prototypes are given, every intent prototype except the one
it is assigned to. With ``gather_distributed=True`` the rows of every process are candidates.

Letter legend: ``b`` batch, ``d`` hidden size, ``k`` prototypes / intents.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._validation import (
    check_bool,
    check_choice,
    check_divisor,
    check_float,
    check_integer,
    check_ndim,
    check_row_ids,
    check_same_device,
    check_same_size,
    check_tensor,
)
from .constants import REDUCTIONS, Reduction, loss_dtype, normalize_rows, scaled_sum
from .distributed import (
    all_gather_no_grad,
    all_gather_sizes,
    all_gather_with_grad,
    is_distributed,
    rank,
    world_size,
)

__all__ = ["IntentInfoNCE", "SIMILARITIES", "Similarity", "intent_info_nce"]

Similarity = Literal["dot", "cosine"]
"""How two vectors are scored: their dot product or their cosine."""

SIMILARITIES: tuple[str, ...] = get_args(Similarity)
"""The allowed values of ``similarity``: ``("dot", "cosine")``."""



def _check_hyperparameters(
    temperature: object,
    similarity: object,
    reduction: object,
    gather_distributed: object,
    positive_in_denominator: object,
) -> float:
    """Check the hyper-parameters (no tensor is read); return the temperature as a float."""
    tau = check_divisor(temperature, "temperature")
    check_choice(similarity, SIMILARITIES, "similarity")
    check_choice(reduction, REDUCTIONS, "reduction")
    check_bool(gather_distributed, "gather_distributed")
    check_bool(positive_in_denominator, "positive_in_denominator")
    return tau


def _check_inputs(
    z1: Tensor,
    z2: Tensor,
    prototypes: Tensor | None,
    assignments: Tensor | None,
    groups: Tensor | None,
    allow_empty_batch: bool,
) -> None:
    """Validate the tensors of ``intent_info_nce``: shapes and dtypes always, ranges if enabled."""
    for x, name in ((z1, "z1"), (z2, "z2")):
        check_tensor(x, name)
        check_ndim(x, 2, name, "(b, d)")
        check_float(x, name)
    check_same_size(z1, z2, (0, 0), ("z1", "z2"))
    check_same_size(z1, z2, (1, 1), ("z1", "z2"))
    check_same_device((z1, "z1"), (z2, "z2"))
    if z1.shape[1] == 0 or (z1.shape[0] == 0 and not allow_empty_batch):
        raise ValueError(f"z1 must not be empty, got shape {tuple(z1.shape)}")
    if (prototypes is None) != (assignments is None):
        given = "prototypes" if assignments is None else "assignments"
        raise ValueError(f"prototypes and assignments must be given together, got only {given}")
    if prototypes is not None and assignments is not None:
        check_tensor(prototypes, "prototypes")
        check_ndim(prototypes, 2, "prototypes", "(k, d)")
        check_float(prototypes, "prototypes")
        if prototypes.shape[0] == 0:
            raise ValueError(f"prototypes must not be empty, got shape {tuple(prototypes.shape)}")
        check_same_size(z1, prototypes, (1, 1), ("z1", "prototypes"))
        check_same_device((z1, "z1"), (prototypes, "prototypes"))
        check_row_ids(assignments, "assignments", z1, "z1", prototypes.shape[0])
    if groups is not None:
        check_tensor(groups, "groups")
        check_ndim(groups, 1, "groups", "(b,)")
        check_integer(groups, "groups")
        check_same_size(z1, groups, (0, 0), ("z1", "groups"))
        check_same_device((z1, "z1"), (groups, "groups"))


def _intent_info_nce_impl(
    z1: Tensor,
    z2: Tensor,
    prototypes: Tensor | None,
    assignments: Tensor | None,
    groups: Tensor | None,
    temperature: float,
    similarity: str,
    reduction: str,
    gather_distributed: bool,
    positive_in_denominator: bool,
) -> Tensor:
    """The loss of validated inputs. Reads nothing from the device (bar the collectives).

    Anchors are the local rows ``cat([z1, z2])`` ``(2b, d)``; the candidates are the rows of
    every rank ``cat([Z1, Z2])`` ``(2B, d)`` (``Z = z`` and ``B = b`` in one process), then
    the ``k`` prototypes. Anchor ``i < b`` is candidate ``s + i`` (masked) and its positive
    is candidate ``B + s + i``, with ``s`` the number of rows of the lower ranks.
    """
    dtypes = [z1.dtype, z2.dtype] + ([] if prototypes is None else [prototypes.dtype])
    dtype = loss_dtype(*dtypes)
    z1, z2 = z1.to(dtype), z2.to(dtype)
    if similarity == "cosine":
        z1, z2 = normalize_rows(z1), normalize_rows(z2)  # a zero row: 0, with a zero gradient
    batch, hidden = z1.shape
    device = z1.device
    processes = world_size() if gather_distributed else 1
    if processes > 1:
        sizes = all_gather_sizes(batch, device)
        start, total = sum(sizes[: rank()]), sum(sizes)
        gathered = all_gather_with_grad(torch.cat([z1, z2], dim=1))  # (B, 2d), one gather
        all_z1, all_z2 = gathered[:, :hidden], gathered[:, hidden:]
        all_groups = None if groups is None else all_gather_no_grad(groups)
    else:
        start, total, all_z1, all_z2, all_groups = 0, batch, z1, z2, groups

    anchors = torch.cat([z1, z2])  # (2b, d)
    candidates = torch.cat([all_z1, all_z2])  # (2B, d)
    logits = anchors @ candidates.T  # (2b, 2B)
    local = torch.arange(batch, device=device) + start
    self_column = torch.cat([local, local + total])
    positive = torch.cat([local + total, local])
    columns = torch.arange(2 * total, device=device)
    excluded = columns == self_column.unsqueeze(1)
    if groups is not None and all_groups is not None:
        anchor_groups = torch.cat([groups, groups]).unsqueeze(1)
        same_group = anchor_groups == torch.cat([all_groups, all_groups]).unsqueeze(0)
        excluded = excluded | (same_group & (columns != positive.unsqueeze(1)))
    logits = logits.masked_fill(excluded, float("-inf"))
    if prototypes is not None and assignments is not None:
        mu = prototypes.to(dtype)
        if similarity == "cosine":
            mu = normalize_rows(mu)
        assigned = torch.cat([assignments, assignments]).unsqueeze(1) == torch.arange(
            mu.shape[0], device=device
        )
        logits = torch.cat([logits, (anchors @ mu.T).masked_fill(assigned, float("-inf"))], dim=1)
    if positive_in_denominator:
        losses = F.cross_entropy(logits / temperature, positive, reduction="none")  # (2b,)
    else:
        losses = _negatives_only_losses(logits / temperature, positive)
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    # The mean over the 2B anchors of all ranks, split so that the ranks' losses average to it.
    return scaled_sum(losses, processes / (2 * max(total, 1)))


def _negatives_only_losses(logits: Tensor, positive: Tensor) -> Tensor:
    """``(2b,)`` losses ``logsumexp(negatives) - positive`` of ``(2b, 2B + k)`` scaled logits whose
    excluded candidates are ``-inf``; 0 for a row with no negative left (the positive alone),
    with a zero gradient, as the usual form gives it. Reads nothing from the device."""
    negatives = logits.scatter(1, positive.unsqueeze(1), float("-inf"))
    has_negative = (negatives != float("-inf")).any(dim=1)
    # rows without a negative take a finite stand-in, so that no NaN reaches the gradient
    safe = torch.where(has_negative.unsqueeze(1), negatives, torch.zeros_like(negatives))
    positive_logit = logits.gather(1, positive.unsqueeze(1)).squeeze(1)
    losses = torch.logsumexp(safe, dim=1) - positive_logit
    return torch.where(has_negative, losses, torch.zeros_like(losses))


def intent_info_nce(
    z1: Tensor,
    z2: Tensor,
    prototypes: Tensor | None = None,
    assignments: Tensor | None = None,
    groups: Tensor | None = None,
    *,
    temperature: float = 1.0,
    similarity: Similarity = "dot",
    reduction: Reduction = "mean",
    gather_distributed: bool = False,
    positive_in_denominator: bool = True,
) -> Tensor:
    r"""NT-Xent over two views with in-batch and intent negatives (S4Rec Eq. 13-14).

    The $2b$ anchors are $a \in \{z^1_u, z^2_u\}$; the positive $a^+$ of $z^1_u$ is
    $z^2_u$ and that of $z^2_u$ is $z^1_u$. Each anchor is scored against every row of
    both views except itself and, with prototypes, every intent except its own $h(u)$:

    $$
    \ell(a) = -\log \frac{e^{s(a, a^+)/\tau}}
    {e^{s(a, a^+)/\tau} + \sum_{v \ne u,\, g_v \ne g_u}
    \left(e^{s(a, z^1_v)/\tau} + e^{s(a, z^2_v)/\tau}\right)
    + \sum_{k' \ne h(u)} e^{s(a, \mu_{k'})/\tau}}
    $$

    with $s$ the dot product or the cosine. Without ``groups`` the condition $g_v \ne
    g_u$ is dropped, without prototypes the last sum. ``reduction="mean"`` gives
    $\frac{1}{2b} \sum_a \ell(a)$, SimCLR's NT-Xent and ICLRec's ``NCELoss`` (the paper's
    $\mathcal{L}_{SCL}$ of Eq. 13 sums the two directions, which is twice this mean).
    By default, unlike the printed Eq. 13-14, the positive is counted in the denominator (the
    usual InfoNCE: a cross-entropy, so non-negative); the negatives are both views of the
    other samples. With $b = 1$ and no prototypes the positive is the only candidate and
    the loss is 0.

    **The printed form.** ``positive_in_denominator=False`` drops the first term of the
    denominator, as Eq. 13-14 print it (and as the "decoupled" contrastive loss of Yeh et al.,
    2022): $\ell'(a) = -s(a, a^+)/\tau + \log \sum_{\text{negatives}} e^{s/\tau}$. It can
    be negative, and where an anchor has at least one negative the two forms are tied by
    $\ell = \log(1 + e^{\ell'})$ (softplus), so the same gradient directions are weighted by
    $\sigma(\ell')$ in the usual form and by 1 here: pairs already well separated keep pulling.
    An anchor with no negative left gives 0 with a zero gradient, as in the usual form.

    **Groups.** Rows with equal ``groups`` id are never each other's negatives (both of their
    views leave the denominator); the positive always stays. This is exactly the masking of
    ICLRec's ``NCELoss`` with ``intent_ids``, so ICLRec's intent loss (``PCLoss`` with
    de-noising) of a view is ``intent_info_nce(view, centroids[ids], groups=ids)``, averaged
    over the two views.

    **Dtypes.** The loss is computed in and returned as
    :func:`~s4rec_components.constants.loss_dtype` of ``z1``, ``z2`` and ``prototypes``:
    float16 / bfloat16 / float32 give float32 (finite even at extreme temperatures), any
    float64 input gives float64. Mixed floating dtypes are promoted this way.

    **Several processes.** With ``gather_distributed=True`` and an initialised process
    group of $W$ ranks holding $b_r$ rows each ($B = \sum_r b_r$, unequal sizes allowed),
    each rank's $2 b_r$ anchors are scored against the rows of *all* ranks, gathered with a
    backward (:func:`~s4rec_components.distributed.all_gather_with_grad`) so gradient
    reaches the rank that owns each row; ``groups`` are gathered with the rows. Prototypes are
    replicated and ``assignments`` only concern the local anchors, so neither is gathered.
    ``"mean"`` returns $\frac{W}{2B} \sum_{a \in \text{rank}} \ell(a)$ (the local mean
    when all $b_r$ are equal), so the mean of the ranks' losses is the single-process loss
    of the concatenated batch and each rank's gradient with respect to its own ``z1`` / ``z2``,
    divided by $W$ (DDP's averaging), is the single-process gradient at those rows, for equal
    and unequal $b_r$ alike. ``"sum"`` returns the local sum (the ranks' sums add up to the
    single-process sum; gradients need no division), ``"none"`` the local $(2 b_r,)$. A rank
    may then hold $b_r = 0$ rows (it still takes part in the collectives). Every rank must
    pass ``groups`` or none must. The gathers exchange the $W$ batch sizes first (small
    collectives read back to the host, as any gather of unequal sizes must). Without a
    process group the flag changes nothing.

    Value checks (``assignments`` in range) run only while
    :func:`~s4rec_components.set_validate_args` is on; with it off the call reads nothing from
    the device.

    Args:
        z1: first view's embeddings $z^1$.
        z2: second view's embeddings $z^2$, row $u$ the positive of ``z1[u]``.
        prototypes: intent prototypes $\mu$, or ``None`` for plain NT-Xent.
        assignments: $h(u)$, each sample's intent in $[0, k)$ (the prototype that is not
            its negative); required with ``prototypes``.
        groups: optional integer ids; rows with equal ids are never each other's negatives.
        temperature: $\tau_2$. Must be finite and >= ``MIN_DIVISOR`` (about 1.2e-38; similarities
            are divided by it in float32).
        similarity: ``"dot"`` (as in the paper and ICLRec) or ``"cosine"`` (all vectors
            L2-normalised; an all-zero row, such as an all-padding view pooled by its mean,
            scores 0 against everything and gets a zero gradient instead of a 1e12-times one).
        reduction: ``"mean"`` over the $2b$ anchors, ``"sum"`` or ``"none"``.
        gather_distributed: use the rows of every process as candidates.
        positive_in_denominator: count the positive among the denominator's candidates (the
            usual InfoNCE, default) or leave it out (Eq. 13-14 as printed).

    Shape:
        - z1, z2: $(b, d)$.
        - prototypes: $(k, d)$.
        - assignments, groups: $(b,)$, integer.
        - output: $()$ for ``"mean"`` / ``"sum"``; $(2b,)$ for ``"none"``, the $b$
          anchors of ``z1`` first, then those of ``z2``.

    Returns:
        The loss, in ``loss_dtype`` of the inputs.

    Raises:
        TypeError: on a non-tensor, non-floating embeddings, non-integer ``assignments`` or
            ``groups``, a non-numeric ``temperature`` or a non-bool ``gather_distributed`` /
            ``positive_in_denominator``.
        ValueError: on wrong ranks or sizes, tensors on different devices, empty inputs (a
            batch of 0 rows is allowed only with ``gather_distributed=True`` inside a process
            group, where other ranks hold rows), ``assignments`` outside $[0, k)$,
            ``prototypes`` without ``assignments`` (or the reverse), a ``temperature`` that is
            not finite or below ``MIN_DIVISOR`` (about 1.2e-38), or an unknown ``similarity`` /
            ``reduction``.

    Examples:
        >>> import math, torch
        >>> from s4rec_components import intent_info_nce
        >>> z = torch.zeros(4, 8)
        >>> loss = intent_info_nce(z, z, torch.zeros(3, 8), torch.tensor([0, 1, 2, 0]))
        >>> round(loss.item(), 4), round(math.log(2 * 4 - 1 + 3 - 1), 4)
        (2.1972, 2.1972)
        >>> intent_info_nce(torch.randn(1, 8), torch.randn(1, 8))
        tensor(0.)
        >>> intent_info_nce(torch.randn(5, 8), torch.randn(5, 8), reduction="none").shape
        torch.Size([10])
        >>> intent_info_nce(torch.randn(4, 8).half(), torch.randn(4, 8).half()).dtype
        torch.float32
        >>> printed = intent_info_nce(z, z, positive_in_denominator=False)  # log(2 * 4 - 2)
        >>> round(printed.item(), 4), round(math.log(6), 4)
        (1.7918, 1.7918)
    """
    tau = _check_hyperparameters(
        temperature, similarity, reduction, gather_distributed, positive_in_denominator
    )
    _check_inputs(
        z1, z2, prototypes, assignments, groups, allow_empty_batch=gather_distributed and is_distributed()
    )
    return _intent_info_nce_impl(
        z1,
        z2,
        prototypes,
        assignments,
        groups,
        tau,
        similarity,
        reduction,
        gather_distributed,
        positive_in_denominator,
    )


class IntentInfoNCE(nn.Module):
    r"""NT-Xent over two views with in-batch and intent negatives (S4Rec Eq. 13-14).

    $$
    \ell(a) = -\log \frac{e^{s(a, a^+)/\tau}}
    {e^{s(a, a^+)/\tau} + \sum_{v \ne u,\, g_v \ne g_u}
    \left(e^{s(a, z^1_v)/\tau} + e^{s(a, z^2_v)/\tau}\right)
    + \sum_{k' \ne h(u)} e^{s(a, \mu_{k'})/\tau}},
    \qquad
    \mathcal{L} = \frac{1}{2b} \sum_{a} \ell(a)
    $$

    over the $2b$ anchors $a \in \{z^1_u, z^2_u\}$. A thin module storing the
    hyper-parameters (checked here, once); the math and the details (``groups``, dtypes,
    several processes) are in :func:`intent_info_nce`.

    On the CPU with ``"dot"`` similarity on wide views (ICLRec's flattened ``(l * d)``
    outputs), most softmax probabilities underflow to denormal floats and the backward's
    matrix products run tens of times slower; call ``torch.set_flush_denormal(True)`` once in
    the training script (a process-wide setting, so the library does not make it for you).

    Args:
        temperature: $\tau_2$. Must be finite and >= ``MIN_DIVISOR`` (about 1.2e-38; similarities
            are divided by it in float32).
        similarity: ``"dot"`` (as in the paper) or ``"cosine"``.
        reduction: ``"mean"`` over the $2b$ anchors, ``"sum"`` or ``"none"``.
        gather_distributed: use the rows of every process as candidates.
        positive_in_denominator: count the positive in the denominator (default) or leave it
            out, as Eq. 13-14 print it; see :func:`intent_info_nce`.

    Shape:
        - z1, z2: $(b, d)$, the two views; row $u$ of each is a positive pair.
        - prototypes: $(k, d)$, optional, with assignments $(b,)$ in $[0, k)$.
        - groups: $(b,)$, optional.
        - output: $()$, or $(2b,)$ with ``reduction="none"``.

    Raises:
        TypeError: if ``temperature`` is not a real number or ``gather_distributed`` /
            ``positive_in_denominator`` not a bool (and in ``forward`` on bad dtypes).
        ValueError: if ``temperature`` is not finite and >= ``MIN_DIVISOR`` or ``similarity`` /
            ``reduction`` is unknown (and in ``forward`` on bad shapes or ranges).

    Examples:
        >>> import torch
        >>> from s4rec_components import IntentInfoNCE
        >>> loss_fn = IntentInfoNCE(temperature=0.5, similarity="cosine")
        >>> z1, z2, mu = torch.randn(6, 16), torch.randn(6, 16), torch.randn(4, 16)
        >>> loss = loss_fn(z1, z2, mu, torch.tensor([0, 1, 2, 3, 0, 1]))
        >>> loss.shape, bool(loss > 0)
        (torch.Size([]), True)
    """

    def __init__(
        self,
        *,
        temperature: float = 1.0,
        similarity: Similarity = "dot",
        reduction: Reduction = "mean",
        gather_distributed: bool = False,
        positive_in_denominator: bool = True,
    ) -> None:
        super().__init__()
        self.temperature = _check_hyperparameters(
            temperature, similarity, reduction, gather_distributed, positive_in_denominator
        )
        self.similarity: Similarity = similarity
        self.reduction: Reduction = reduction
        self.gather_distributed = gather_distributed
        self.positive_in_denominator = positive_in_denominator

    def forward(
        self,
        z1: Tensor,
        z2: Tensor,
        prototypes: Tensor | None = None,
        assignments: Tensor | None = None,
        groups: Tensor | None = None,
    ) -> Tensor:
        """The loss of the views ``(b, d)``; see :func:`intent_info_nce`."""
        _check_inputs(
            z1, z2, prototypes, assignments, groups, allow_empty_batch=self.gather_distributed and is_distributed()
        )
        return _intent_info_nce_impl(
            z1,
            z2,
            prototypes,
            assignments,
            groups,
            self.temperature,
            self.similarity,
            self.reduction,
            self.gather_distributed,
            self.positive_in_denominator,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, similarity={self.similarity!r}, "
            f"reduction={self.reduction!r}, gather_distributed={self.gather_distributed}, "
            f"positive_in_denominator={self.positive_in_denominator}"
        )
