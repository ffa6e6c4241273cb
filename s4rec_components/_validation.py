"""Input checks shared by the public modules (private).

Every check raises ``ValueError`` or ``TypeError`` with a message that names the
argument, what was expected and what arrived.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def check_tensor(x: object, name: str) -> Tensor:
    """Raise ``TypeError`` unless ``x`` is a ``torch.Tensor``; return it."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_ndim(x: Tensor, ndim: int, name: str, layout: str) -> None:
    """Raise ``ValueError`` unless ``x`` has ``ndim`` dimensions (``layout`` like ``"(b, d)"``)."""
    check_tensor(x, name)
    if x.ndim != ndim:
        raise ValueError(f"{name} must have shape {layout} ({ndim}-D), got shape {tuple(x.shape)}")


def check_float(x: Tensor, name: str) -> None:
    """Raise ``TypeError`` unless ``x`` has a floating dtype."""
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def check_integer(x: Tensor, name: str) -> None:
    """Raise ``TypeError`` unless ``x`` has an integer dtype (item ids, labels, assignments)."""
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor (torch.long), got dtype {x.dtype}")


def check_nonempty(x: Tensor, name: str) -> None:
    """Raise ``ValueError`` if any dimension of ``x`` is empty."""
    if x.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")


def check_range(x: Tensor, low: int, high: int, name: str) -> None:
    """Raise ``ValueError`` unless every entry of ``x`` lies in ``[low, high]``."""
    if x.numel() == 0:
        return
    lo, hi = int(x.min()), int(x.max())
    if lo < low or hi > high:
        raise ValueError(f"{name} must lie in [{low}, {high}], got values in [{lo}, {hi}]")


def check_same_size(a: Tensor, b: Tensor, dims: Sequence[int], names: tuple[str, str]) -> None:
    """Raise ``ValueError`` unless ``a.shape[i] == b.shape[j]`` for the paired ``dims``."""
    i, j = dims
    if a.shape[i] != b.shape[j]:
        raise ValueError(
            f"{names[0]} and {names[1]} disagree: {names[0]} has shape {tuple(a.shape)}, "
            f"{names[1]} has shape {tuple(b.shape)}"
        )


def check_int(value: object, name: str, minimum: int) -> None:
    """Raise ``TypeError`` unless ``value`` is an ``int`` (not a bool), ``ValueError`` if below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


def check_positive(value: float, name: str) -> None:
    """Raise ``ValueError`` unless ``value > 0``."""
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def check_probability(value: float, name: str) -> None:
    """Raise ``ValueError`` unless ``0 <= value <= 1``."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")


def check_choice(value: str, allowed: Sequence[str], name: str) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")
