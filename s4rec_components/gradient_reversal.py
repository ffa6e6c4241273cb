r"""Gradient reversal layer for the head-tail adversary (S4Rec Sec. 4.3; DANN).

Placed between the encoder and the head-tail classifier of Eq. 17, the layer lets the
classifier minimise $\mathcal{L}_{Adv}$ while the encoder receives the gradient of
$-\lambda \mathcal{L}_{Adv}$: the forward pass is the identity, the backward pass
multiplies the incoming gradient by $-\lambda$. ``dann_schedule`` is DANN's usual
warm-up of $\lambda$ from 0 to 1 over training.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ._validation import (
    check_float,
    check_ndim,
    check_positive,
    check_probability,
    check_real,
    check_tensor,
    reads_values,
)

__all__ = ["GradientReversal", "dann_schedule", "grad_reverse"]

# DANN (Ganin et al., 2016) ramps the reversal weight with gamma = 10.
DEFAULT_GAMMA = 10.0
DEFAULT_SCALE = 1.0


def _check_scale(scale: object) -> float | Tensor:
    """Validate a finite real number or a 0-d floating tensor; return a float or the tensor.

    A tensor's finiteness is a value check (a host read): it runs only while validation is on.
    """
    if isinstance(scale, Tensor):
        check_ndim(scale, 0, "scale", "()")
        check_float(scale, "scale")
        if reads_values(scale) and not bool(torch.isfinite(scale)):
            raise ValueError(f"scale must be finite, got {scale.item()!r}")
        return scale
    return check_real(scale, "scale")


def _check_fits(value: float | Tensor, dtype: torch.dtype) -> None:
    """The module keeps ``scale`` in a ``dtype`` buffer: refuse a value that would become inf there.

    A tensor whose dtype the buffer's range covers (float32 or narrower into float32) always
    fits and is not read; only a wider one is read (a value check, while validation is on), so
    ``set_scale`` with a float32 tensor costs no second host read beyond the finiteness check.
    """
    limit = torch.finfo(dtype).max
    if isinstance(value, Tensor):
        if torch.finfo(value.dtype).max <= limit or not reads_values(value):
            return
        value = float(value)
    if abs(value) > limit:
        raise ValueError(f"scale must fit the module's {dtype} buffer (|scale| <= {limit:.3g}), got {value!r}")


class _GradReverse(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``-scale``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float | Tensor) -> Tensor:
        ctx.scale = scale.detach() if isinstance(scale, Tensor) else scale
        # A view, so that autograd records a node of its own without copying the data.
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        scale = ctx.scale
        if isinstance(scale, Tensor):
            scale = scale.to(device=grad_output.device, dtype=grad_output.dtype)
        return grad_output * -scale, None


def _grad_reverse_impl(x: Tensor, scale: float | Tensor) -> Tensor:
    """The kernel of :func:`grad_reverse`; trusts ``x`` and ``scale`` (no checks, no reads)."""
    out: Tensor = _GradReverse.apply(x, scale)  # type: ignore[no-untyped-call, unused-ignore]
    return out


def grad_reverse(x: Tensor, *, scale: float | Tensor = DEFAULT_SCALE) -> Tensor:
    r"""Identity in the forward pass, gradient times $-\lambda$ in the backward pass.

    The gradient reversal layer of DANN, used by S4Rec (Sec. 4.3) between the encoder and the
    head-tail classifier of Eq. 17:

    $$
    R_\lambda(x) = x, \qquad
    \frac{\partial \mathcal{L}}{\partial x} = -\lambda \,
    \frac{\partial \mathcal{L}}{\partial R_\lambda(x)}
    $$

    No gradient flows to ``scale``.

    Args:
        x: any floating tensor.
        scale: $\lambda$, a finite float or a finite 0-d floating tensor (e.g. a buffer
            updated by ``dann_schedule``); 0 blocks the gradient, negative values keep
            its sign.

    Shape:
        - x: $(*)$, any shape.
        - output: $(*)$, same as ``x``.

    Returns:
        ``x`` unchanged (a view), recorded so that its gradient is reversed.

    Raises:
        TypeError: if ``x`` is not a floating tensor, or ``scale`` is not a real number
            (``bool`` and ``str`` are refused) or a floating 0-d tensor.
        ValueError: if ``scale`` is a tensor that is not 0-d, or is not finite (for a
            tensor a value check, which runs only while value checks are on; see
            ``s4rec_components.set_validate_args``).

    Examples:
        >>> import torch
        >>> from s4rec_components import grad_reverse
        >>> x = torch.tensor([1.0, -2.0], requires_grad=True)
        >>> y = grad_reverse(x, scale=0.5)
        >>> y
        tensor([ 1., -2.], grad_fn=<_GradReverseBackward>)
        >>> y.sum().backward()
        >>> x.grad
        tensor([-0.5000, -0.5000])
    """
    check_tensor(x, "x")
    check_float(x, "x")
    return _grad_reverse_impl(x, _check_scale(scale))


def dann_schedule(progress: float, *, gamma: float = DEFAULT_GAMMA) -> float:
    r"""DANN's warm-up of the reversal weight: 0 at the start of training, about 1 at the end.

    $$
    \lambda(p) = \frac{2}{1 + \exp(-\gamma p)} - 1, \qquad p \in [0, 1]
    $$

    Increasing in $p$, $\lambda(0) = 0$ and $\lambda(1) = \tanh(\gamma / 2)$
    (about 0.9999 for $\gamma = 10$).

    Args:
        progress: $p$, the fraction of training done, in $[0, 1]$.
        gamma: $\gamma$, the steepness; DANN uses 10. Must be > 0.

    Returns:
        $\lambda(p)$ as a Python float in $[0, 1]$ (below 1 in exact arithmetic; in float64
        it rounds to 1.0 once $\gamma p \gtrsim 38.5$).

    Raises:
        TypeError: if ``progress`` or ``gamma`` is not a real number (a ``bool`` or ``str``
            is refused).
        ValueError: if ``progress`` lies outside $[0, 1]$, ``gamma <= 0``, or either is
            NaN or infinite.

    Examples:
        >>> from s4rec_components import dann_schedule
        >>> dann_schedule(0.0), round(dann_schedule(0.5), 4), round(dann_schedule(1.0), 4)
        (0.0, 0.9866, 0.9999)
    """
    progress = check_probability(progress, "progress")
    gamma = check_positive(gamma, "gamma")
    # tanh(gamma p / 2) is the same expression without overflow for large gamma p.
    return math.tanh(gamma * progress / 2.0)


class GradientReversal(nn.Module):
    r"""Gradient reversal layer with a schedulable weight (S4Rec Sec. 4.3; DANN).

    $$
    R_\lambda(x) = x, \qquad
    \frac{\partial \mathcal{L}}{\partial x} = -\lambda \,
    \frac{\partial \mathcal{L}}{\partial R_\lambda(x)}
    $$

    $\lambda$ is kept as a float32 0-d buffer named ``scale`` (persistent, so it is saved
    in the ``state_dict`` and follows ``.to(device)``); change it between steps with
    ``set_scale``, e.g. ``grl.set_scale(dann_schedule(step / total))``. ``__init__`` and
    ``set_scale`` validate $\lambda$; ``forward`` runs ``grad_reverse``'s kernel without
    checking or reading the buffer, so a training step reads nothing back to the host.

    Args:
        scale: the initial $\lambda$, a finite real number or a finite 0-d floating tensor.

    Shape:
        - input: $(*)$, any floating tensor.
        - output: $(*)$, the input unchanged.

    Raises:
        TypeError: if ``scale`` is not a real number (or a floating 0-d tensor); in
            ``forward``, if the input is not a floating tensor.
        ValueError: if ``scale`` is not finite.

    Examples:
        >>> import torch
        >>> from s4rec_components import GradientReversal
        >>> grl = GradientReversal(scale=2.0)
        >>> x = torch.ones(3, requires_grad=True)
        >>> grl(x).sum().backward()
        >>> x.grad
        tensor([-2., -2., -2.])
        >>> grl.set_scale(0.25)
        >>> grl.state_dict()
        OrderedDict([('scale', tensor(0.2500))])
    """

    scale: Tensor

    def __init__(self, *, scale: float | Tensor = DEFAULT_SCALE) -> None:
        super().__init__()
        value = _check_scale(scale)
        _check_fits(value, torch.float32)
        if isinstance(value, Tensor):
            initial = value.detach().to(torch.float32).clone()
        else:
            initial = torch.tensor(value, dtype=torch.float32)
        self.register_buffer("scale", initial)

    def set_scale(self, value: float | Tensor) -> None:
        """Set $\\lambda$ in place (keeps the buffer's device and dtype).

        Args:
            value: the new $\\lambda$, a finite float or 0-d floating tensor.

        Raises:
            TypeError: if ``value`` is not a real number or a floating 0-d tensor.
            ValueError: if ``value`` is not finite, does not fit the buffer's dtype or is a
                tensor that is not 0-d.

        Examples:
            >>> import torch
            >>> grl = GradientReversal(scale=1.0)
            >>> grl.set_scale(0.5)  # e.g. dann_schedule(step / total) between steps
            >>> x = torch.ones(2, requires_grad=True)
            >>> grl(x).sum().backward()
            >>> grl.scale, x.grad
            (tensor(0.5000), tensor([-0.5000, -0.5000]))
        """
        checked = _check_scale(value)
        _check_fits(checked, self.scale.dtype)
        with torch.no_grad():
            self.scale.fill_(checked.detach() if isinstance(checked, Tensor) else checked)

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x``; its gradient is multiplied by ``-scale`` on the way back.

        ``scale`` was validated by ``__init__`` / ``set_scale``; nothing is checked or read here.
        """
        check_tensor(x, "x")
        check_float(x, "x")
        return _grad_reverse_impl(x, self.scale)

    def extra_repr(self) -> str:
        return f"scale={float(self.scale):g}"
