r"""Head-tail adversarial classifier behind a gradient reversal layer (S4Rec Sec. 4.3, Eq. 17).

A linear classifier predicts from the sequence representation $z_u$ whether the sequence
is a head (long) or tail (short) one. The classifier descends the cross-entropy
$\mathcal{L}_{Adv}$; a gradient reversal layer (DANN) between encoder and classifier makes
the encoder ascend it, so the representations, and the clusters built on them, lose the
head-tail information.

Letter legend: ``b`` batch, ``d`` hidden size; ``c`` the number of classes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor, nn

from ._validation import (
    check_row_ids,
    check_float,
    check_int,
    check_ndim,
    check_nonempty,
    check_same_device,
    check_same_size,
    check_tensor,
)
from .constants import loss_dtype
from .gradient_reversal import GradientReversal, _check_scale, _grad_reverse_impl

__all__ = ["AdversaryOutput", "HeadTailAdversary", "head_tail_adversarial_loss"]

HEAD_TAIL_CLASSES = 2
"""Default number of classes: tail (0) and head (1), or any binary split of the users."""


class AdversaryOutput(NamedTuple):
    """What ``HeadTailAdversary`` returns.

    Attributes:
        loss: 0-d, the batch mean of $\\mathcal{L}_{Adv}$ (Eq. 17).
        logits: $(b, c)$, the classifier outputs $\\hat c = W z_u + w_0$.

    Examples:
        >>> import torch
        >>> out = HeadTailAdversary(4)(torch.randn(3, 4), torch.tensor([0, 1, 1]))
        >>> out.loss.shape, out.logits.shape  # a named tuple: loss, logits = out works too
        (torch.Size([]), torch.Size([3, 2]))
    """

    loss: Tensor
    logits: Tensor


def _check_inputs(z: Tensor, labels: Tensor, weight: Tensor, bias: Tensor | None) -> None:
    """Shape / dtype checks (free) and the label range (a value check, only with validation)."""
    check_tensor(z, "z")
    check_ndim(z, 2, "z", "(b, d)")
    check_float(z, "z")
    check_nonempty(z, "z")
    check_tensor(weight, "weight")
    check_ndim(weight, 2, "weight", "(c, d)")
    check_float(weight, "weight")
    check_same_size(z, weight, (1, 1), ("z", "weight"))
    if weight.shape[0] < 2:  # one class: the softmax is 1, the loss 0 and the gradient 0, always
        raise ValueError(
            f"weight must have at least 2 class rows (head and tail), got shape {tuple(weight.shape)}"
        )
    if bias is not None:
        check_tensor(bias, "bias")
        check_ndim(bias, 1, "bias", "(c,)")
        check_float(bias, "bias")
        check_same_size(weight, bias, (0, 0), ("weight", "bias"))
    check_same_device((z, "z"), (weight, "weight"), (bias, "bias"))
    check_row_ids(labels, "labels", z, "z", weight.shape[0])


def _adversarial_loss_impl(
    z: Tensor, labels: Tensor, weight: Tensor, bias: Tensor | None, scale: float | Tensor
) -> AdversaryOutput:
    """The kernel: trusts its inputs, reads nothing to the host."""
    dtypes = (z.dtype, weight.dtype) if bias is None else (z.dtype, weight.dtype, bias.dtype)
    dtype = loss_dtype(*dtypes)
    reversed_z = _grad_reverse_impl(z, scale).to(dtype)
    logits = F.linear(reversed_z, weight.to(dtype), None if bias is None else bias.to(dtype))
    loss = F.cross_entropy(logits, labels.long())  # (int32 / int16 labels: cross_entropy takes long)
    return AdversaryOutput(loss, logits)


def head_tail_adversarial_loss(
    z: Tensor,
    labels: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    scale: float | Tensor = 1.0,
) -> AdversaryOutput:
    r"""Cross-entropy of a linear head-tail classifier behind gradient reversal (S4Rec Eq. 17).

    $$
    \hat c = W\, R_\lambda(z_u) + w_0, \qquad
    \mathcal{L}_{Adv} = \frac{1}{b} \sum_u \Big(-\hat c_u[c_u]
        + \log \sum_i \exp \hat c_u[i]\Big)
    $$

    where $R_\lambda$ is the identity forward and multiplies the gradient by
    $-\lambda$ backward (``s4rec_components.grad_reverse``). So $W, w_0$
    receive the ordinary gradient of $\mathcal{L}_{Adv}$ and $z$ receives
    $-\lambda$ times it.

    Dtypes: ``z``, ``weight`` and ``bias`` are cast to
    ``constants.loss_dtype(z.dtype, weight.dtype, bias.dtype)`` (their promotion, at least
    ``float32``), so mixed dtypes such as a ``float16`` ``z`` and a ``float32`` classifier work,
    and half-precision inputs are classified and soft-maxed in ``float32``. The gradient
    reaching ``z`` comes back in ``z``'s own dtype.

    Args:
        z: sequence representations.
        labels: class of each sequence (e.g. 1 head, 0 tail).
        weight: classifier weight $W$.
        bias: classifier bias $w_0$, or ``None``.
        scale: $\lambda$, a float or 0-d tensor.

    Shape:
        - z: $(b, d)$, floating.
        - labels: $(b,)$, integer in $[0, c)$.
        - weight: $(c, d)$; bias: $(c,)$; floating.
        - output: loss $()$ and logits $(b, c)$, both in the promoted dtype.

    Returns:
        An ``AdversaryOutput``.

    Raises:
        TypeError: if ``z``, ``weight`` or ``bias`` is not a floating tensor, ``labels`` is not
            an integer tensor, or ``scale`` is not a real number or 0-d floating tensor.
        ValueError: for bad shapes, tensors on different devices, fewer than 2 classes, an
            empty batch, a non-finite ``scale``, or (a value check, only while value checks are
            on) labels outside $[0, c)$.

    Examples:
        >>> import torch
        >>> from s4rec_components.adversary import head_tail_adversarial_loss
        >>> z = torch.zeros(3, 4, requires_grad=True)
        >>> out = head_tail_adversarial_loss(z, torch.tensor([0, 1, 1]), torch.ones(2, 4))
        >>> round(out.loss.item(), 4)  # equal logits: log 2
        0.6931
    """
    _check_inputs(z, labels, weight, bias)
    return _adversarial_loss_impl(z, labels, weight, bias, _check_scale(scale))


class HeadTailAdversary(nn.Module):
    r"""Head-tail classifier trained adversarially through gradient reversal (S4Rec Eq. 17).

    $$
    \hat c = W\, R_\lambda(z_u) + w_0, \qquad
    \mathcal{L}_{Adv} = -\hat c[c] + \log \sum_i \exp(\hat c[i])
    $$

    averaged over the batch. $R_\lambda$ (``s4rec_components.GradientReversal``)
    is the identity in the forward pass and multiplies the gradient by $-\lambda$ in the
    backward pass: minimising the total loss, the classifier descends $\mathcal{L}_{Adv}$
    while the encoder producing $z$ ascends $\lambda \mathcal{L}_{Adv}$, i.e.
    minimises $\mathcal{L}_{SR} - \lambda \mathcal{L}_{Adv}$ as in the paper. Change
    $\lambda$ during training with ``set_scale`` (e.g. with
    ``s4rec_components.dann_schedule``). The classifier is ``nn.Linear``'s default
    initialisation; see ``head_tail_adversarial_loss`` for the math and the dtype rule
    (``z`` in any floating dtype; computed in the promotion of ``z`` and the classifier, at
    least ``float32``). ``forward`` validates its inputs once and reads nothing back to the
    host while value checks are off (``s4rec_components.set_validate_args``).

    Args:
        hidden_size: dimension ``d`` of the representations. Must be >= 1.
        num_classes: number of classes ``c`` (2: head and tail). Must be >= 2.
        scale: the initial reversal weight $\lambda$, a finite float.

    Shape:
        - z: $(b, d)$, floating.
        - labels: $(b,)$, integer in $[0, c)$.
        - output: ``AdversaryOutput`` with loss $()$ and logits $(b, c)$, in the promoted
          dtype.

    Raises:
        TypeError: if ``hidden_size`` / ``num_classes`` is not an int, ``scale`` is not a
            number, ``z`` is not floating or ``labels`` is not an integer tensor.
        ValueError: for out-of-range hyper-parameters, bad shapes, inputs off the module's
            device, an empty batch or labels outside $[0, c)$.

    Examples:
        >>> import torch
        >>> from s4rec_components import HeadTailAdversary
        >>> _ = torch.manual_seed(0)
        >>> adversary = HeadTailAdversary(hidden_size=8, scale=0.5)
        >>> z = torch.randn(4, 8, requires_grad=True)
        >>> out = adversary(z, torch.tensor([0, 1, 1, 0]))
        >>> out.logits.shape, out.loss.shape
        (torch.Size([4, 2]), torch.Size([]))
        >>> out.loss.backward()  # the classifier descends, z gets -0.5 times the gradient
        >>> adversary.set_scale(1.0)
        >>> adversary.scale
        1.0
    """

    def __init__(
        self, hidden_size: int, num_classes: int = HEAD_TAIL_CLASSES, *, scale: float = 1.0
    ) -> None:
        super().__init__()
        hidden_size = check_int(hidden_size, "hidden_size", 1)
        num_classes = check_int(num_classes, "num_classes", 2)
        self.reversal = GradientReversal(scale=scale)
        self.classifier = nn.Linear(hidden_size, num_classes)

    @property
    def hidden_size(self) -> int:
        """Input dimension ``d``."""
        return self.classifier.in_features

    @property
    def num_classes(self) -> int:
        """Number of classes ``c``."""
        return self.classifier.out_features

    @property
    def scale(self) -> float:
        """The current reversal weight $\\lambda$."""
        return float(self.reversal.scale)

    def set_scale(self, value: float | Tensor) -> None:
        """Set the reversal weight $\\lambda$ (see ``GradientReversal.set_scale``).

        Args:
            value: the new $\\lambda$, a finite float or 0-d floating tensor.

        Raises:
            TypeError: if ``value`` is not a real number or a floating 0-d tensor.
            ValueError: if ``value`` is not finite or is a tensor that is not 0-d.

        Examples:
            >>> import torch
            >>> adversary = HeadTailAdversary(hidden_size=4)
            >>> adversary.set_scale(torch.tensor(0.25))
            >>> adversary.scale, adversary.reversal.scale
            (0.25, tensor(0.2500))
        """
        self.reversal.set_scale(value)

    def forward(self, z: Tensor, labels: Tensor) -> AdversaryOutput:
        """Classify ``z`` behind the reversal and return the loss and logits."""
        check_tensor(z, "z")
        check_ndim(z, 2, "z", "(b, d)")
        if z.shape[1] != self.hidden_size:
            raise ValueError(
                f"z must have shape (b, d) with d = hidden_size = {self.hidden_size}, got shape "
                f"{tuple(z.shape)}"
            )
        weight, bias = self.classifier.weight, self.classifier.bias
        _check_inputs(z, labels, weight, bias)
        # The reversal weight was validated by set_scale; it is not read here.
        return _adversarial_loss_impl(z, labels, weight, bias, self.reversal.scale)
