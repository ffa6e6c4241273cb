r"""Sequence-level contrastive loss with intent negatives (S4Rec Sec. 4.2.1, Eq. 13-14).

InfoNCE over two augmented views, computed in both directions, where each anchor is pushed
away from the other samples of the batch (both views, as in SimCLR's NT-Xent) and, when
prototypes are given, from every intent prototype except the one it is assigned to.

Letter legend: ``b`` batch, ``d`` hidden size, ``k`` prototypes / intents.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._validation import (
    check_choice,
    check_float,
    check_integer,
    check_ndim,
    check_nonempty,
    check_positive,
    check_range,
    check_same_size,
    check_tensor,
)

__all__ = ["IntentInfoNCE", "Reduction", "Similarity", "intent_info_nce"]

Similarity = Literal["dot", "cosine"]
Reduction = Literal["mean", "sum", "none"]
SIMILARITIES: tuple[str, ...] = get_args(Similarity)
REDUCTIONS: tuple[str, ...] = get_args(Reduction)

# Logits of fp16 / bf16 inputs are formed and soft-maxed in this dtype, then cast back.
COMPUTE_DTYPE = torch.float32
# Guard of F.normalize against division by zero for all-zero vectors (cosine similarity).
NORMALIZE_EPS = 1e-12


def _check_temperature(temperature: float) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a float, got {type(temperature).__name__}")
    check_positive(temperature, "temperature")
    if not math.isfinite(temperature):
        raise ValueError(f"temperature must be finite, got {temperature!r}")
    return float(temperature)


def _check_inputs(
    z1: Tensor,
    z2: Tensor,
    prototypes: Tensor | None,
    assignments: Tensor | None,
    labels: Tensor | None,
) -> None:
    """Validate the tensors of ``intent_info_nce`` (shapes, dtypes, index ranges)."""
    for x, name in ((z1, "z1"), (z2, "z2")):
        check_tensor(x, name)
        check_ndim(x, 2, name, "(b, d)")
        check_float(x, name)
        check_nonempty(x, name)
    check_same_size(z1, z2, (0, 0), ("z1", "z2"))
    check_same_size(z1, z2, (1, 1), ("z1", "z2"))
    if z1.dtype != z2.dtype:
        raise TypeError(f"z1 and z2 must share a dtype, got {z1.dtype} and {z2.dtype}")
    if (prototypes is None) != (assignments is None):
        given = "prototypes" if assignments is None else "assignments"
        raise ValueError(
            f"prototypes and assignments must be given together, got only {given}"
        )
    if prototypes is not None and assignments is not None:
        check_tensor(prototypes, "prototypes")
        check_ndim(prototypes, 2, "prototypes", "(k, d)")
        check_float(prototypes, "prototypes")
        check_nonempty(prototypes, "prototypes")
        check_same_size(z1, prototypes, (1, 1), ("z1", "prototypes"))
        if prototypes.dtype != z1.dtype:
            raise TypeError(
                f"prototypes must share the dtype of z1, got {prototypes.dtype} and {z1.dtype}"
            )
        check_tensor(assignments, "assignments")
        check_ndim(assignments, 1, "assignments", "(b,)")
        check_integer(assignments, "assignments")
        check_same_size(z1, assignments, (0, 0), ("z1", "assignments"))
        check_range(assignments, 0, prototypes.shape[0] - 1, "assignments")
    if labels is not None:
        check_tensor(labels, "labels")
        check_ndim(labels, 1, "labels", "(b,)")
        check_integer(labels, "labels")
        check_same_size(z1, labels, (0, 0), ("z1", "labels"))


def _one_direction(
    anchors: Tensor,
    others: Tensor,
    prototypes: Tensor | None,
    intent_mask: Tensor | None,
    same_label: Tensor | None,
    temperature: float,
) -> Tensor:
    """``(b,)`` loss of each anchor; its positive is the same row of ``others``.

    Candidates, as columns of a ``(b, 2b + k)`` logit matrix: ``others`` (positive on the
    diagonal), ``anchors`` (diagonal removed) and the prototypes (``intent_mask`` removed).
    """
    batch = anchors.shape[0]
    eye = torch.eye(batch, dtype=torch.bool, device=anchors.device)
    cross_mask = torch.zeros_like(eye) if same_label is None else same_label & ~eye
    self_mask = eye if same_label is None else same_label | eye
    logits = [anchors @ others.T, anchors @ anchors.T]
    masks = [cross_mask, self_mask]
    if prototypes is not None and intent_mask is not None:
        logits.append(anchors @ prototypes.T)
        masks.append(intent_mask)
    scaled = torch.cat(logits, dim=1) / temperature
    scaled = scaled.masked_fill(torch.cat(masks, dim=1), float("-inf"))
    target = torch.arange(batch, device=anchors.device)
    return F.cross_entropy(scaled, target, reduction="none")


def intent_info_nce(
    z1: Tensor,
    z2: Tensor,
    prototypes: Tensor | None = None,
    assignments: Tensor | None = None,
    temperature: float = 1.0,
    similarity: Similarity = "dot",
    labels: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Two-way InfoNCE with in-batch and intent negatives (S4Rec Eq. 13-14).

    For the anchor $a_u = z^1_u$ the candidates are its positive $z^2_u$, the
    in-batch negatives $z^2_n$ and $z^1_n$ for every $n \ne u$, and the
    intent negatives $\mu_{k'}$ for every $k' \ne h(u)$:

    $$
    \ell^{1}_u = -\log \frac{e^{s(z^1_u, z^2_u)/\tau}}
    {e^{s(z^1_u, z^2_u)/\tau} + \sum_{n \ne u} \left(e^{s(z^1_u, z^2_n)/\tau}
    + e^{s(z^1_u, z^1_n)/\tau}\right) + \sum_{k' \ne h(u)} e^{s(z^1_u, \mu_{k'})/\tau}}
    $$

    with $s$ the dot product or the cosine similarity; $\ell^2_u$ swaps the views.
    The loss is $\mathcal{L}_{SCL} = \frac{1}{b}\sum_u \ell^1_u + \frac{1}{b}\sum_u
    \ell^2_u$ (``reduction="mean"``). Unlike the printed Eq. 13-14, the positive is counted in
    the denominator (the usual InfoNCE, which makes the loss a cross-entropy and
    non-negative), and the negatives are both views of the other samples. Without prototypes
    this is SimCLR's NT-Xent summed over the two directions, i.e. twice NT-Xent as SimCLR
    averages it over the $2b$ anchors.

    With ``labels``, two samples sharing a label are never each other's negatives (both of
    their views leave the denominator); the positive always stays. With $b = 1$ and no
    prototypes the positive is the only candidate and the loss is 0.

    ``float16`` / ``bfloat16`` inputs are scored in ``float32`` and the loss cast back.

    Args:
        z1: first view's embeddings $z^1$.
        z2: second view's embeddings $z^2$, row $u$ the positive of ``z1[u]``.
        prototypes: intent prototypes $\mu$, or ``None`` for plain NT-Xent.
        assignments: $h(u)$, each sample's intent in $[0, k)$ (the prototype
            that is not its negative); required with ``prototypes``.
        temperature: $\tau_2$. Must be > 0.
        similarity: ``"dot"`` (as in the paper) or ``"cosine"`` (all vectors L2-normalised).
        labels: optional ids; rows with equal ids are not each other's negatives.
        reduction: ``"mean"`` (sum of the two batch means), ``"sum"`` (over all anchors of
            both directions) or ``"none"``.

    Shape:
        - z1, z2: $(b, d)$.
        - prototypes: $(k, d)$.
        - assignments, labels: $(b,)$, integer.
        - output: $()$ for ``"mean"`` / ``"sum"``; $(2, b)$ for ``"none"``, row 0
          with ``z1`` as anchors, row 1 with ``z2``.

    Returns:
        The loss, in the dtype of ``z1``.

    Raises:
        TypeError: on a non-tensor, non-floating embeddings, non-integer ``assignments`` or
            ``labels``, mismatched dtypes, or a non-numeric ``temperature``.
        ValueError: on wrong ranks or sizes, empty inputs, ``assignments`` outside
            $[0, k)$, ``prototypes`` without ``assignments`` (or the reverse),
            ``temperature <= 0``, or an unknown ``similarity`` / ``reduction``.

    Examples:
        >>> import torch
        >>> from s4rec_components import intent_info_nce
        >>> z1 = torch.zeros(4, 8)
        >>> mu = torch.zeros(3, 8)
        >>> loss = intent_info_nce(z1, z1, mu, torch.tensor([0, 1, 2, 0]))
        >>> bool(torch.isclose(loss, 2 * torch.log(torch.tensor(2 * 4 - 1 + 3 - 1.0))))
        True
        >>> intent_info_nce(torch.randn(1, 8), torch.randn(1, 8))
        tensor(0.)
        >>> intent_info_nce(torch.randn(5, 8), torch.randn(5, 8), reduction="none").shape
        torch.Size([2, 5])
    """
    _check_inputs(z1, z2, prototypes, assignments, labels)
    temperature = _check_temperature(temperature)
    check_choice(similarity, SIMILARITIES, "similarity")
    check_choice(reduction, REDUCTIONS, "reduction")

    out_dtype = z1.dtype
    work_dtype = torch.promote_types(z1.dtype, COMPUTE_DTYPE)
    z1, z2 = z1.to(work_dtype), z2.to(work_dtype)
    intent_mask = None
    if prototypes is not None and assignments is not None:
        prototypes = prototypes.to(work_dtype)
        intent_mask = F.one_hot(assignments.long(), prototypes.shape[0]).bool()
    if similarity == "cosine":
        z1 = F.normalize(z1, dim=-1, eps=NORMALIZE_EPS)
        z2 = F.normalize(z2, dim=-1, eps=NORMALIZE_EPS)
        if prototypes is not None:
            prototypes = F.normalize(prototypes, dim=-1, eps=NORMALIZE_EPS)
    same_label = None if labels is None else labels.unsqueeze(1) == labels.unsqueeze(0)

    losses = torch.stack(
        [
            _one_direction(z1, z2, prototypes, intent_mask, same_label, temperature),
            _one_direction(z2, z1, prototypes, intent_mask, same_label, temperature),
        ]
    )
    if reduction == "mean":
        losses = losses.mean(dim=1).sum()
    elif reduction == "sum":
        losses = losses.sum()
    return losses.to(out_dtype)


class IntentInfoNCE(nn.Module):
    r"""Two-way InfoNCE with in-batch and intent negatives (S4Rec Eq. 13-14).

    $$
    \ell^{1}_u = -\log \frac{e^{s(z^1_u, z^2_u)/\tau}}
    {e^{s(z^1_u, z^2_u)/\tau} + \sum_{n \ne u} \left(e^{s(z^1_u, z^2_n)/\tau}
    + e^{s(z^1_u, z^1_n)/\tau}\right) + \sum_{k' \ne h(u)} e^{s(z^1_u, \mu_{k'})/\tau}},
    \qquad
    \mathcal{L}_{SCL} = \frac{1}{b}\sum_u \left(\ell^1_u + \ell^2_u\right)
    $$

    A thin module storing the hyper-parameters; the math and the details (positive in the
    denominator, ``labels`` masking, half precision) are in ``intent_info_nce``.

    Args:
        temperature: $\tau_2$. Must be > 0.
        similarity: ``"dot"`` (as in the paper) or ``"cosine"``.
        reduction: ``"mean"`` (sum of the two directions' batch means), ``"sum"`` or
            ``"none"``.

    Shape:
        - z1, z2: $(b, d)$, the two views; row $u$ of each is a positive pair.
        - prototypes: $(k, d)$, optional, with assignments $(b,)$ in $[0, k)$.
        - labels: $(b,)$, optional.
        - output: $()$, or $(2, b)$ with ``reduction="none"``.

    Raises:
        TypeError: if ``temperature`` is not a number (and in ``forward`` on bad dtypes).
        ValueError: if ``temperature <= 0`` or ``similarity`` / ``reduction`` is unknown (and
            in ``forward`` on bad shapes or ranges).

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
        temperature: float = 1.0,
        similarity: Similarity = "dot",
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        self.temperature = _check_temperature(temperature)
        check_choice(similarity, SIMILARITIES, "similarity")
        check_choice(reduction, REDUCTIONS, "reduction")
        self.similarity: Similarity = similarity
        self.reduction: Reduction = reduction

    def forward(
        self,
        z1: Tensor,
        z2: Tensor,
        prototypes: Tensor | None = None,
        assignments: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> Tensor:
        """The loss of the views ``(b, d)``; see ``intent_info_nce``."""
        return intent_info_nce(
            z1,
            z2,
            prototypes,
            assignments,
            temperature=self.temperature,
            similarity=self.similarity,
            labels=labels,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, similarity={self.similarity!r}, "
            f"reduction={self.reduction!r}"
        )
