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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._validation import (
    check_float,
    check_int,
    check_integer,
    check_ndim,
    check_nonempty,
    check_range,
    check_same_size,
    check_tensor,
)
from .gradient_reversal import GradientReversal, grad_reverse

__all__ = ["AdversaryOutput", "HeadTailAdversary", "head_tail_adversarial_loss"]

HEAD_TAIL_CLASSES = 2
"""Default number of classes: tail (0) and head (1), or any binary split of the users."""
MIN_COMPUTE_DTYPE = torch.float32
"""The cross-entropy runs in at least this precision (half logits are upcast)."""


class AdversaryOutput(NamedTuple):
    """What ``HeadTailAdversary`` returns.

    Attributes:
        loss: 0-d, the batch mean of $\\mathcal{L}_{Adv}$ (Eq. 17).
        logits: $(b, c)$, the classifier outputs $\\hat c = W z_u + w_0$.
    """

    loss: Tensor
    logits: Tensor



def head_tail_adversarial_loss(
    z: Tensor,
    labels: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
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

    Args:
        z: sequence representations.
        labels: class of each sequence (e.g. 1 head, 0 tail).
        weight: classifier weight $W$.
        bias: classifier bias $w_0$, or ``None``.
        scale: $\lambda$, a float or 0-d tensor.

    Shape:
        - z: $(b, d)$, floating.
        - labels: $(b,)$, integer in $[0, c)$.
        - weight: $(c, d)$; bias: $(c,)$.
        - output: loss $()$ in ``promote(z.dtype, float32)``, logits $(b, c)$.

    Returns:
        An ``AdversaryOutput``.

    Raises:
        TypeError: if ``z`` is not floating or ``labels`` is not an integer tensor.
        ValueError: for bad shapes, an empty batch or labels outside $[0, c)$.

    Examples:
        >>> import torch
        >>> from s4rec_components.adversary import head_tail_adversarial_loss
        >>> z = torch.zeros(3, 4, requires_grad=True)
        >>> out = head_tail_adversarial_loss(z, torch.tensor([0, 1, 1]), torch.ones(2, 4))
        >>> round(out.loss.item(), 4)  # equal logits: log 2
        0.6931
    """
    check_ndim(z, 2, "z", "(b, d)")
    check_float(z, "z")
    check_nonempty(z, "z")
    check_ndim(weight, 2, "weight", "(c, d)")
    check_same_size(z, weight, (1, 1), ("z", "weight"))
    check_ndim(labels, 1, "labels", "(b,)")
    check_integer(labels, "labels")
    check_same_size(z, labels, (0, 0), ("z", "labels"))
    check_range(labels, 0, weight.shape[0] - 1, "labels")
    logits = F.linear(grad_reverse(z, scale), weight, bias)
    compute_dtype = torch.promote_types(logits.dtype, MIN_COMPUTE_DTYPE)
    loss = F.cross_entropy(logits.to(compute_dtype), labels)
    return AdversaryOutput(loss, logits)


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
    initialisation; see ``head_tail_adversarial_loss`` for the math.

    Args:
        hidden_size: dimension ``d`` of the representations. Must be >= 1.
        num_classes: number of classes ``c`` (2: head and tail). Must be >= 2.
        scale: the initial reversal weight $\lambda$, a finite float.

    Shape:
        - z: $(b, d)$, floating.
        - labels: $(b,)$, integer in $[0, c)$.
        - output: ``AdversaryOutput`` with loss $()$ and logits $(b, c)$.

    Raises:
        TypeError: if ``hidden_size`` / ``num_classes`` is not an int, ``scale`` is not a
            number, ``z`` is not floating or ``labels`` is not an integer tensor.
        ValueError: for out-of-range hyper-parameters, bad shapes, an empty batch or labels
            outside $[0, c)$.

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
        self, hidden_size: int, num_classes: int = HEAD_TAIL_CLASSES, scale: float = 1.0
    ) -> None:
        super().__init__()
        check_int(hidden_size, "hidden_size", 1)
        check_int(num_classes, "num_classes", 2)
        self.reversal = GradientReversal(scale)
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
        check_tensor(labels, "labels")
        return head_tail_adversarial_loss(
            z, labels, self.classifier.weight, self.classifier.bias, self.reversal.scale
        )
