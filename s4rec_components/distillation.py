r"""Cluster-aware self-distillation from intent prototypes (S4Rec Sec. 4.2.2, Eq. 15-16).

Each sequence embedding (the student) is pulled towards its assigned intent prototype (the
teacher): both are turned into distributions over the ``d`` features by a softmax at
temperature $\tau_3$, and the loss is the KL divergence from the teacher's
distribution to the student's.

Letter legend: ``b`` batch, ``d`` hidden size, ``k`` prototypes / intents.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ._validation import (
    check_bool,
    check_choice,
    check_divisor,
    check_float,
    check_ndim,
    check_nonempty,
    check_row_ids,
    check_same_device,
    check_same_size,
    check_tensor,
)
from .constants import REDUCTIONS, Reduction, loss_dtype, scaled_sum

__all__ = ["PrototypeDistillation", "prototype_distillation"]


def _check_hyperparameters(temperature: object, detach_teacher: object, reduction: object) -> float:
    """The one check of the hyper-parameters; returns the temperature as a float."""
    check_bool(detach_teacher, "detach_teacher")
    check_choice(reduction, REDUCTIONS, "reduction")
    return check_divisor(temperature, "temperature")


def _check_inputs(student: Tensor, prototypes: Tensor, assignments: Tensor) -> None:
    """Shape / dtype checks (free) and the assignment range (a value check, only with validation)."""
    check_tensor(student, "student")
    check_ndim(student, 2, "student", "(b, d)")
    check_float(student, "student")
    check_nonempty(student, "student")
    check_tensor(prototypes, "prototypes")
    check_ndim(prototypes, 2, "prototypes", "(k, d)")
    check_float(prototypes, "prototypes")
    check_nonempty(prototypes, "prototypes")
    check_same_size(student, prototypes, (1, 1), ("student", "prototypes"))
    check_same_device((student, "student"), (prototypes, "prototypes"))
    # the assignments only index the prototypes: CPU ids are fine (and their range check is free)
    check_row_ids(assignments, "assignments", student, "student", prototypes.shape[0], cpu_ok=True)


def _distillation_impl(
    student: Tensor,
    prototypes: Tensor,
    assignments: Tensor,
    temperature: float,
    detach_teacher: bool,
    reduction: Reduction,
) -> Tensor:
    """The kernel: trusts its inputs, reads nothing to the host."""
    dtype = loss_dtype(student.dtype, prototypes.dtype)
    if detach_teacher:
        prototypes = prototypes.detach()
    teacher = prototypes[assignments.long()].to(dtype)
    log_teacher = F.log_softmax(teacher / temperature, dim=-1)
    log_student = F.log_softmax(student.to(dtype) / temperature, dim=-1)
    losses = F.kl_div(log_student, log_teacher, reduction="none", log_target=True).sum(dim=-1)
    if reduction == "mean":
        return scaled_sum(losses, 1 / losses.shape[0])
    if reduction == "sum":
        return losses.sum()
    return losses


def prototype_distillation(
    student: Tensor,
    prototypes: Tensor,
    assignments: Tensor,
    *,
    temperature: float = 1.0,
    detach_teacher: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""KL divergence from each sample's assigned prototype to its embedding (S4Rec Eq. 15-16).

    $$
    e^{i}_{u,t} = \frac{\exp(\mu^{i}_{h(u)} / \tau_3)}
    {\sum_{i'} \exp(\mu^{i'}_{h(u)} / \tau_3)},
    \qquad
    e^{i}_{u,s} = \frac{\exp(z^{i}_{u} / \tau_3)}{\sum_{i'} \exp(z^{i'}_{u} / \tau_3)},
    $$

    $$
    \mathcal{L}_{CKD} = \frac{1}{b} \sum_u \sum_{i=1}^{d}
    e^{i}_{u,t} \log \frac{e^{i}_{u,t}}{e^{i}_{u,s}}
    $$

    The softmax runs over the $d$ features; the teacher is the prototype
    $\mu_{h(u)}$ the sample is assigned to. The teacher is detached by default, so the
    loss only moves the student; ``detach_teacher=False`` lets the gradient reach the
    prototypes too. No $\tau_3^2$ factor is applied (the paper has none). The paper's
    two-view loss $\mathcal{L}_{CKD}(\mu_{h(u)}, z^1_u) + \mathcal{L}_{CKD}(\mu_{h(u)},
    z^2_u)$ is two calls.

    Dtypes: the loss is computed in and returned as
    ``constants.loss_dtype(student.dtype, prototypes.dtype)``, the promotion of the two with
    ``float32``: ``float16`` / ``bfloat16`` inputs are soft-maxed in ``float32`` (finite at
    small temperatures), ``float64`` stays ``float64``, and mixed dtypes are promoted.

    Args:
        student: the sequence embeddings $z_u$.
        prototypes: the intent prototypes $\mu$.
        assignments: $h(u)$, each sample's intent, in $[0, k)$.
        temperature: $\tau_3$, the distillation temperature. Must be >= ``MIN_DIVISOR`` (about
            1.2e-38; scores are divided by it in float32).
        detach_teacher: stop the gradient into ``prototypes``.
        reduction: ``"mean"`` over the batch, ``"sum"``, or ``"none"``.

    Shape:
        - student: $(b, d)$.
        - prototypes: $(k, d)$.
        - assignments: $(b,)$, integer.
        - output: $()$, or $(b,)$ with ``reduction="none"``.

    Returns:
        The non-negative loss, in ``loss_dtype(student.dtype, prototypes.dtype)``.

    Raises:
        TypeError: on a non-tensor, non-floating ``student`` / ``prototypes``, non-integer
            ``assignments``, a ``temperature`` that is not a real number (``bool`` and ``str``
            are refused) or a non-bool ``detach_teacher``.
        ValueError: on wrong ranks or sizes, ``student`` and ``prototypes`` on different
            devices (``assignments`` may be on theirs or on the CPU), empty inputs, a
            ``temperature`` that is not finite and > 0, an unknown ``reduction``, or (a value
            check, only while value checks are on) ``assignments`` outside $[0, k)$.

    Examples:
        >>> import torch
        >>> from s4rec_components import prototype_distillation
        >>> mu = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
        >>> z = torch.tensor([[4.0, 3.0, 3.0], [0.0, 1.0, 0.0]])
        >>> prototype_distillation(z, mu, torch.tensor([0, 1]), reduction="none")
        tensor([0.0000, 0.7794])
    """
    temperature = _check_hyperparameters(temperature, detach_teacher, reduction)
    _check_inputs(student, prototypes, assignments)
    return _distillation_impl(
        student, prototypes, assignments, temperature, detach_teacher, reduction
    )


class PrototypeDistillation(nn.Module):
    r"""Cluster-aware self-distillation: KL from the assigned prototype (S4Rec Eq. 15-16).

    $$
    \mathcal{L}_{CKD} = \frac{1}{b} \sum_u
    \operatorname{KL}\left(\operatorname{softmax}(\mu_{h(u)} / \tau_3) \,\middle\|\,
    \operatorname{softmax}(z_u / \tau_3)\right)
    $$

    with the softmax over the $d$ features. A thin module storing the
    hyper-parameters; see ``prototype_distillation``.

    Args:
        temperature: $\tau_3$. Must be >= ``MIN_DIVISOR`` (about 1.2e-38).
        detach_teacher: stop the gradient into the prototypes (default ``True``).
        reduction: ``"mean"`` over the batch, ``"sum"``, or ``"none"``.

    Shape:
        - student: $(b, d)$.
        - prototypes: $(k, d)$.
        - assignments: $(b,)$, integer in $[0, k)$.
        - output: $()$, or $(b,)$ with ``reduction="none"``.

    Raises:
        TypeError: if ``temperature`` is not a number or ``detach_teacher`` not a bool (and
            in ``forward`` on bad dtypes).
        ValueError: if ``temperature <= 0`` or ``reduction`` is unknown (and in ``forward``
            on bad shapes, devices or ranges).

    Examples:
        >>> import torch
        >>> from s4rec_components import PrototypeDistillation
        >>> loss_fn = PrototypeDistillation(temperature=0.5)
        >>> mu = torch.randn(4, 8, requires_grad=True)
        >>> z = torch.randn(6, 8, requires_grad=True)
        >>> loss = loss_fn(z, mu, torch.tensor([0, 1, 2, 3, 0, 1]))
        >>> loss.backward()
        >>> bool(loss >= 0), z.grad is not None, mu.grad is None
        (True, True, True)
    """

    def __init__(
        self,
        *,
        temperature: float = 1.0,
        detach_teacher: bool = True,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        self.temperature = _check_hyperparameters(temperature, detach_teacher, reduction)
        self.detach_teacher = detach_teacher
        self.reduction: Reduction = reduction

    def forward(self, student: Tensor, prototypes: Tensor, assignments: Tensor) -> Tensor:
        """The loss of ``student`` ``(b, d)`` against ``prototypes[assignments]``."""
        _check_inputs(student, prototypes, assignments)
        return _distillation_impl(
            student, prototypes, assignments, self.temperature, self.detach_teacher, self.reduction
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, detach_teacher={self.detach_teacher}, "
            f"reduction={self.reduction!r}"
        )
