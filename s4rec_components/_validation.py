"""Input checks shared by the public modules (private), and the global validation switch.

Every check raises ``ValueError`` or ``TypeError`` with a message that names the
argument, what was expected and what arrived.

Two kinds of check live here:

* **structural checks** (type, number of dimensions, dtype, sizes, hyper-parameters): they
  read only Python-side metadata, never the tensor's values, so they cost no device
  synchronisation and always run;
* **value checks** (ranges of ids, finiteness, padding side): they read the tensor and so
  stall a GPU. They run only while :func:`validate_args_enabled` is true, which is the
  default; ``set_validate_args(False)`` turns them off in a training loop, as
  ``torch.distributions.Distribution.set_default_validate_args`` does, and
  ``with set_validate_args(False):`` does so for one block.

Each public call validates once, then hands its inputs to private ``_impl`` functions
that trust them.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import torch
from torch import Tensor

_VALIDATE_ARGS = True


class set_validate_args:  # noqa: N801 - lower case, as torch.set_grad_enabled: used as a call
    """Turn the library's value checks on (the default) or off, globally, or for a ``with`` block.

    Value checks (item ids within range, finite scores, left padding, ...) read tensor values,
    which on a GPU forces a host-device synchronisation at every call. Shape, dtype and
    hyper-parameter checks read no values and always run. Turn value checks off once a
    pipeline is known to be right, for a training loop without host reads.

    Like ``torch.set_grad_enabled``, it works both ways: called as a function it sets the
    switch at once, and used as a context manager it also puts the previous setting back when
    the block ends, on an exception too.

    The switch is one flag of the Python process, as ``torch.distributions``' is: every thread
    sees it (a ``with`` block in one thread changes it for all of them), and each process (a
    ``torchrun`` rank, a ``DataLoader`` worker started with ``spawn``) sets its own.

    Args:
        enabled: ``True`` to check values (default), ``False`` to trust them.

    Raises:
        TypeError: if ``enabled`` is not a ``bool``.

    Examples:
        >>> import s4rec_components as s4
        >>> with s4.set_validate_args(False):
        ...     s4.validate_args_enabled()
        False
        >>> s4.validate_args_enabled()
        True
        >>> _ = s4.set_validate_args(False)  # for the rest of the process
        >>> s4.validate_args_enabled()
        False
        >>> _ = s4.set_validate_args(True)
    """

    def __init__(self, enabled: bool) -> None:
        global _VALIDATE_ARGS
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled must be a bool, got {type(enabled).__name__}")
        self.enabled = enabled
        self.previous = _VALIDATE_ARGS
        _VALIDATE_ARGS = enabled

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        global _VALIDATE_ARGS
        _VALIDATE_ARGS = self.previous

    def __repr__(self) -> str:
        return f"set_validate_args(enabled={self.enabled})"


def validate_args_enabled() -> bool:
    """Whether value checks run (see :func:`set_validate_args`).

    Examples:
        >>> import s4rec_components as s4
        >>> s4.validate_args_enabled()
        True
    """
    return _VALIDATE_ARGS


def reads_values(*tensors: Tensor) -> bool:
    """Whether a value check may read ``tensors``: validation is on and none of them is on the
    ``meta`` device (shape-only tensors, e.g. for counting a model's sizes, hold no values)."""
    return _VALIDATE_ARGS and all(t.device.type != "meta" for t in tensors)


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


_SHELL_UNSIGNED = (torch.uint16, torch.uint32, torch.uint64)
"""Unsigned dtypes that torch stores but barely computes with (no ``min``, ``gather``, ...)."""


def check_integer(x: Tensor, name: str) -> None:
    """Raise ``TypeError`` unless ``x`` has an integer dtype (item ids, labels, assignments)
    that torch computes with: ``int8`` to ``int64`` or ``uint8``. (``uint16`` / ``uint32`` /
    ``uint64`` tensors, e.g. from ``torch.from_numpy``, are refused with a hint, not left to
    fail deep inside an operator that has no kernel for them.)"""
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor (torch.long), got dtype {x.dtype}")
    if x.dtype in _SHELL_UNSIGNED:
        raise TypeError(
            f"{name} must be an integer tensor of a dtype torch computes with (torch.long, or int8 to "
            f"int32 / uint8), got dtype {x.dtype}, which torch supports for storage only; convert it "
            f"with .long()"
        )


def index_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype :func:`as_index` gives an integer tensor of ``dtype``: ``int32`` or ``int64``."""
    return dtype if dtype in (torch.int32, torch.int64) else torch.int64


def as_index(x: Tensor) -> Tensor:
    """A checked integer tensor in a dtype that torch indexes, embeds and gathers with.

    ``int32`` and ``int64`` are kept; ``int8``, ``int16`` and ``uint8`` become ``int64``
    (:func:`check_integer` refuses the wider unsigned dtypes first). (``uint8``
    would otherwise index as a boolean mask, silently, and ``int8`` / ``int16`` fail deep inside
    ``embedding`` or ``gather``.)
    """
    return x.to(index_dtype(x.dtype))


def check_nonempty(x: Tensor, name: str) -> None:
    """Raise ``ValueError`` if any dimension of ``x`` is empty."""
    if x.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")


def check_range(x: Tensor, low: int, high: int, name: str) -> None:
    """Raise ``ValueError`` unless every entry of ``x`` lies in ``[low, high]``.

    A value check: skipped while validation is off (it reads the device).
    """
    if not reads_values(x) or x.numel() == 0:
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


def check_same_device(*named: tuple[Tensor | None, str]) -> None:
    """Raise ``ValueError`` naming the first two of ``named`` (``(tensor, name)`` pairs,
    ``None`` skipped) that live on different devices. Reads only metadata: no host sync."""
    present = [(t, name) for t, name in named if t is not None]
    if not present:
        return
    first, first_name = present[0]
    for t, name in present[1:]:
        if t.device != first.device:
            raise ValueError(
                f"{first_name} and {name} must be on the same device, got {first_name} on "
                f"{first.device} and {name} on {t.device}"
            )


def as_int(value: object, name: str) -> int:
    """A Python ``int`` from an int-like: an ``int``, a numpy integer scalar
    (``df["item"].max()``) or a one-element integer tensor. Bools, floats (even ``3.0``),
    strings and everything else raise ``TypeError`` naming ``name``."""
    if isinstance(value, bool) or (isinstance(value, Tensor) and value.dtype == torch.bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r:.60}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r:.60}") from None


def check_int(value: object, name: str, minimum: int, maximum: int | None = None) -> int:
    """The one checker for counts: an int-like (see :func:`as_int`; never a ``bool``) in
    ``[minimum, maximum]``, returned as a Python ``int``. Int-likes are accepted as
    :func:`check_real` accepts numpy and tensor scalars."""
    number = as_int(value, name)
    if number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {number!r}")
    if maximum is not None and number > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {number!r}")
    return number


def check_bool(value: object, name: str) -> bool:
    """Raise ``TypeError`` unless ``value`` is a ``bool``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return value


def check_generator(
    generator: object, name: str = "generator", *, draws_on: tuple[Tensor, str] | None = None
) -> None:
    """Raise ``TypeError`` unless ``generator`` is ``None`` or a ``torch.Generator``; with
    ``draws_on=(tensor, tensor_name)``, ``ValueError`` unless the generator's device type is the
    tensor's (the draws are made on the tensor's device; a ``meta`` tensor takes any)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{name} must be a torch.Generator or None, got {type(generator).__name__} {generator!r}"
        )
    if generator is None or draws_on is None:
        return
    tensor, tensor_name = draws_on
    if tensor.device.type not in ("meta", generator.device.type):
        raise ValueError(
            f"{name} must be on the device type of {tensor_name}, got a {generator.device.type} "
            f"generator for {tensor_name} on {tensor.device} (make one with "
            f"torch.Generator(device={tensor_name}.device))"
        )


def check_same_dtype(a: Tensor, b: Tensor, names: tuple[str, str]) -> None:
    """Raise ``TypeError`` naming both arguments and dtypes unless ``a`` and ``b`` share a dtype."""
    if a.dtype != b.dtype:
        raise TypeError(
            f"{names[0]} and {names[1]} must have the same dtype, got {a.dtype} and {b.dtype}"
        )


def check_real(
    value: object,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """The one hyper-parameter checker for real numbers; return ``float(value)``.

    Refuses ``bool``, ``str`` and every non-number with ``TypeError``, and NaN, infinities and
    values outside ``[low, high]`` (open ends with ``low_open`` / ``high_open``) with
    ``ValueError``. Python ints and floats, numpy scalars and 0-d CPU tensors are accepted.
    """
    if isinstance(value, bool) or isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be a real number, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}") from None
    except OverflowError:  # an int beyond float's range
        raise ValueError(
            f"{name} must be finite, got an int too large for a float ({value!r:.40}...)"
        ) from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number!r}")
    lo_bad = low is not None and (number <= low if low_open else number < low)
    hi_bad = high is not None and (number >= high if high_open else number > high)
    if lo_bad or hi_bad:
        left = "(" if low_open or low is None else "["  # infinities are refused: an open end
        right = ")" if high_open or high is None else "]"
        lo_text = "-inf" if low is None else f"{low:g}"
        hi_text = "inf" if high is None else f"{high:g}"
        raise ValueError(f"{name} must lie in {left}{lo_text}, {hi_text}{right}, got {number!r}")
    return number


def check_positive(value: object, name: str) -> float:
    """Raise unless ``value`` is a finite real number ``> 0`` (temperatures, epsilons)."""
    return check_real(value, name, low=0.0, low_open=True)


MIN_DIVISOR = 4.0 / torch.finfo(torch.float32).max
"""Smallest temperature or entropy weight accepted (about 1.2e-38): the losses divide scores
by it in float32, and ``1 / value`` must stay finite with room for the log-sum-exp's shifts."""


def check_divisor(value: object, name: str) -> float:
    """A temperature or entropy weight: a finite real number >= :data:`MIN_DIVISOR`.

    Below it even a score of 1 divided by ``value`` overflows float32, and the loss is NaN.
    """
    number = check_positive(value, name)
    if number < MIN_DIVISOR:
        raise ValueError(
            f"{name} must be >= {MIN_DIVISOR:.3g} (scores are divided by it in float32, and "
            f"1 / {name} would overflow), got {number!r}"
        )
    return number


def check_probability(value: object, name: str) -> float:
    """Raise unless ``value`` is a real number in ``[0, 1]`` (ratios, probabilities)."""
    return check_real(value, name, low=0.0, high=1.0)


def check_choice(value: object, allowed: Sequence[str], name: str) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``allowed``."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")


def check_row_ids(
    ids: object, name: str, rows: Tensor, rows_name: str, num_classes: int, *, cpu_ok: bool = False
) -> Tensor:
    """One integer id per row of ``rows``, each in ``[0, num_classes - 1]`` (prototype
    assignments, class labels): a ``(b,)`` integer tensor whose ``b`` matches ``rows.shape[0]``,
    on ``rows``' device (or on the CPU with ``cpu_ok``, where the ids only index a tensor, which
    torch allows from the CPU). The range is a value check, skipped while validation is off."""
    x = check_tensor(ids, name)
    check_ndim(x, 1, name, "(b,)")
    check_integer(x, name)
    check_same_size(rows, x, (0, 0), (rows_name, name))
    if not (cpu_ok and x.device.type == "cpu"):
        check_same_device((rows, rows_name), (x, name))
    check_range(x, 0, num_classes - 1, name)
    return x
