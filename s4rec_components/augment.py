r"""Random sequence-level augmentations for contrastive views (S4Rec Sec. 3.2, Eq. 2-5).

Mask, crop and reorder follow CL4SRec; insert follows CoSeRec (with random instead of
correlated items, as in S4Rec Eq. 5). All four work on a whole left-padded batch at once, on
the batch's device, without reading anything back to the host: positions are chosen by
sorting per-row random keys, windows and insertions are built by computing, for every slot,
where its item comes from or goes to. ``SequenceAugmenter`` draws one operation per row; the
``*_items`` functions apply one operation to every row.

Letter legend: ``b`` batch, ``l`` sequence length, ``n`` items. Padding id is
:data:`~s4rec_components.constants.PADDING_ID` (``0``); a row of real length $n_u$ holds
its items in the last $n_u$ slots.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from ._validation import (
    check_generator,
    check_int,
    check_integer,
    check_ndim,
    check_probability,
    check_real,
    check_tensor,
    index_dtype,
    reads_values,
)
from .constants import PADDING_ID

__all__ = [
    "OPERATIONS",
    "Operation",
    "SequenceAugmenter",
    "crop_items",
    "insert_items",
    "mask_items",
    "reorder_items",
]

Operation = Literal["mask", "crop", "reorder", "insert"]
"""The name of one augmentation."""

OPERATIONS: tuple[str, ...] = get_args(Operation)
"""The operation names in their canonical order: ``("mask", "crop", "reorder", "insert")``."""

# Offsets are drawn as a big random integer modulo the number of choices; with choices
# bounded by the sequence length the modulo bias is below l / 2**62.
_RANDOM_INT_HIGH = 2**62
# Tolerance on sum(operation_probs) == 1.
_PROBS_SUM_TOLERANCE = 1e-6
# Devices whose kernels compute in float64 (the count table follows Python's float64 rounding).
_FLOAT64_DEVICES = ("cpu", "cuda")


# ----------------------------------------------------------------------------- checks


def _check_item_ids(
    item_ids: object, max_id: int | None, written: int, name: str = "item_ids"
) -> tuple[Tensor, torch.dtype]:
    """Validate a ``(b, l)`` left-padded integer batch with ids in ``[0, max_id]``.

    Shape and dtype always; the id range and the padding side (value checks, which read
    the device) only while validation is enabled. ``max_id=None`` checks only ``>= 0``.
    ``written`` is the largest id the call may write into its result (0 when it writes no
    new id).

    Returns the ids as int64, the dtype the operations compute in, and the dtype of the
    result: ``int32`` stays ``int32`` (refused when ``written`` does not fit in it), every
    other integer dtype gives ``int64``, as :func:`~s4rec_components._validation.as_index`
    treats ids elsewhere in the library.
    """
    ids = check_tensor(item_ids, name)
    check_ndim(ids, 2, name, "(b, l)")
    check_integer(ids, name)
    if ids.shape[1] == 0:
        raise ValueError(f"{name} must have length l >= 1, got shape {tuple(ids.shape)}")
    result = index_dtype(ids.dtype)
    if result == torch.int32 and written > _INT32_MAX:
        raise ValueError(
            f"{name} is int32 but this call may write id {written} (num_items or mask_id), "
            f"more than int32 holds ({_INT32_MAX}); pass int64 ids"
        )
    ids = ids.long()
    if not reads_values(ids) or ids.numel() == 0:
        return ids, result
    lo, hi = (int(v) for v in torch.aminmax(ids))
    if lo < PADDING_ID or (max_id is not None and hi > max_id):
        upper = "inf)" if max_id is None else f"{max_id}]"
        raise ValueError(f"{name} must lie in [0, {upper}, got values in [{lo}, {hi}]")
    real = ids != PADDING_ID
    misplaced = real != _real_mask(ids, real.sum(dim=1))  # a zero after a real item
    if bool(misplaced.any()):
        row = int(misplaced.any(dim=1).nonzero()[0, 0])
        raise ValueError(
            f"{name} must be left-padded (zeros only before the first real item); row {row} "
            f"is not: {ids[row].tolist()}"
        )
    return ids, result


_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_MAX_NUM_ITEMS = _INT64_MAX - 1
"""Largest ``num_items``: the default mask id ``num_items + 1`` must fit in int64."""


def _check_num_items(num_items: object) -> int:
    value = check_int(num_items, "num_items", 1)
    if value > _MAX_NUM_ITEMS:
        raise ValueError(
            f"num_items must be <= 2**63 - 2 so that the mask id num_items + 1 fits in int64, "
            f"got {value}"
        )
    return value


def _check_mask_id(mask_id: object, num_items: int) -> int:
    value = check_int(mask_id, "mask_id", PADDING_ID, maximum=_INT64_MAX)
    if not (value == PADDING_ID or value > num_items):
        raise ValueError(
            f"mask_id must be 0 or > num_items={num_items} (not a real item id), got {value}"
        )
    return value


def _check_pool(pool: object, num_items: int) -> Tensor:
    tensor = check_tensor(pool, "insert_pool")
    check_ndim(tensor, 1, "insert_pool", "(p,)")
    check_integer(tensor, "insert_pool")
    if tensor.numel() == 0:
        raise ValueError("insert_pool must not be empty, got shape (0,)")
    if reads_values(tensor):
        lo, hi = (int(v) for v in torch.aminmax(tensor))
        if lo < 1 or hi > num_items:
            raise ValueError(
                f"insert_pool must lie in [1, {num_items}], got values in [{lo}, {hi}]"
            )
    return tensor.long()


# ----------------------------------------------------------------------------- helpers


def _positions(item_ids: Tensor) -> Tensor:
    """``(1, l)`` long slot indices ``0..l-1``."""
    return torch.arange(item_ids.shape[1], device=item_ids.device).unsqueeze(0)


def _real_mask(item_ids: Tensor, lengths: Tensor) -> Tensor:
    """``(b, l)`` bool: the last ``lengths[i]`` slots of row ``i``."""
    return _positions(item_ids) >= (item_ids.shape[1] - lengths).unsqueeze(1)


def _count_table(ratio: float, length: int, device: torch.device) -> Tensor:
    """``(l + 1,)`` long: ``int(ratio * n)`` for ``n = 0..l``, as Python computes it.

    The product is rounded in float64 like Python's; on a device without float64 the table is
    built on the CPU and copied once.
    """
    if device.type in _FLOAT64_DEVICES:
        n = torch.arange(length + 1, dtype=torch.float64, device=device)
        return torch.floor(ratio * n).long()
    n = torch.arange(length + 1, dtype=torch.float64)
    return torch.floor(ratio * n).long().to(device)


@dataclass
class _Draws:
    """The random numbers of one call, shared by the operations (each row uses one of them).

    ``keys``: ``(b, l)`` distinct random sort keys per row, padding slots set to ``bound``;
    ``ranked`` / ``order``: ``keys`` sorted per row and the slots in that order (one sort
    serves mask, insert and reorder); ``start``: ``(b,)`` raw window offsets; ``new``:
    ``(b, l)`` candidate items to insert.
    """

    real: Tensor
    lengths: Tensor
    keys: Tensor | None = None
    ranked: Tensor | None = None
    order: Tensor | None = None
    bound: int = 0
    start: Tensor | None = None
    new: Tensor | None = None


def _draw(
    item_ids: Tensor,
    kinds: Sequence[str],
    num_items: int,
    pool: Tensor | None,
    generator: torch.Generator | None,
) -> _Draws:
    """Draw what the operations ``kinds`` need, in a fixed order, on ``item_ids.device``."""
    batch, length = item_ids.shape
    device = item_ids.device
    real = item_ids != PADDING_ID
    draws = _Draws(real=real, lengths=real.sum(dim=1))
    if any(kind in kinds for kind in ("mask", "reorder", "insert")):
        # key = r * l + slot with r uniform in [0, high): ordering by key is a uniformly random
        # order up to ties of r (probability below l**2 / high), broken by slot.
        high = max(_RANDOM_INT_HIGH // (length + 1) ** 2, 1)
        draw = torch.randint(0, high, item_ids.shape, generator=generator, device=device)
        draws.bound = high * length
        draws.keys = (draw * length + _positions(item_ids)).masked_fill(~real, draws.bound)
        draws.ranked, draws.order = draws.keys.sort(dim=1)
    if "crop" in kinds or "reorder" in kinds:
        draws.start = torch.randint(
            0, _RANDOM_INT_HIGH, (batch,), generator=generator, device=device
        )
    if "insert" in kinds:
        if pool is None:
            draws.new = torch.randint(
                1, num_items + 1, item_ids.shape, generator=generator, device=device
            )
        else:
            pool = pool.to(device)
            pick = torch.randint(
                0, pool.numel(), item_ids.shape, generator=generator, device=device
            )
            draws.new = pool[pick]
    return draws


def _drawn(x: Tensor | None) -> Tensor:
    """``x``, which ``_draw`` made for the operation asking (a programming error otherwise)."""
    if x is None:
        raise RuntimeError("internal error: a random draw the operation needs was not made")
    return x


def _choose(draws: _Draws, count: Tensor) -> Tensor:
    """``(b, l)`` bool: ``count[i]`` distinct uniformly chosen real slots of row ``i``."""
    threshold = _drawn(draws.ranked).gather(1, (count - 1).clamp(min=0).unsqueeze(1))
    return (_drawn(draws.keys) <= threshold) & (count > 0).unsqueeze(1)


def _below(raw: Tensor, count: Tensor) -> Tensor:
    """``(b,)`` long, entry ``i`` uniform in ``[0, count[i])`` (0 where ``count[i] <= 0``)."""
    return raw % count.clamp(min=1)


# ----------------------------------------------------------------------------- kernels
# The kernels trust validated input and read nothing from the device.


def _mask(item_ids: Tensor, draws: _Draws, ratio: float, mask_id: int) -> Tensor:
    count = _count_table(ratio, item_ids.shape[1], item_ids.device)[draws.lengths]
    return item_ids.masked_fill(_choose(draws, count), mask_id)


def _crop(item_ids: Tensor, draws: _Draws, ratio: float) -> Tensor:
    lengths, length = draws.lengths, item_ids.shape[1]
    width = _count_table(ratio, length, item_ids.device)[lengths].clamp(min=1)
    width = torch.minimum(width, lengths)
    start = _below(_drawn(draws.start), lengths - width + 1)
    slot = _positions(item_ids)
    # Output slot p holds window item p - (l - w), i.e. input slot (l - n) + s + p - (l - w).
    source = slot + (width + start - lengths).unsqueeze(1)
    keep = slot >= (length - width).unsqueeze(1)
    picked = item_ids.gather(1, source.clamp(0, length - 1))
    return picked.masked_fill(~keep, PADDING_ID)


def _reorder(item_ids: Tensor, draws: _Draws, ratio: float) -> Tensor:
    lengths, length = draws.lengths, item_ids.shape[1]
    width = _count_table(ratio, length, item_ids.device)[lengths]
    start = _below(_drawn(draws.start), lengths - width + 1)
    first = (length - lengths + start).unsqueeze(1)  # first window slot
    slot = _positions(item_ids)
    inside = (slot >= first) & (slot < first + width.unsqueeze(1))
    # Walk the slots in the order of their random keys: the j-th window slot met goes to
    # window position j, so the window comes out in a uniformly random order; every other
    # slot stays where it is.
    order = _drawn(draws.order)
    met = inside.gather(1, order)
    target = torch.where(met, first + met.long().cumsum(dim=1) - 1, order)
    return torch.empty_like(item_ids).scatter_(1, target, item_ids.gather(1, order))


def _insert(item_ids: Tensor, draws: _Draws, ratio: float) -> Tensor:
    lengths = draws.lengths
    batch, length = item_ids.shape
    count = _count_table(ratio, length, item_ids.device)[lengths].clamp(min=1)
    count = torch.minimum(count, lengths)
    before = _choose(draws, count)
    # The untruncated result has n + k items: original item j lands at j + c_j, with c_j the
    # number of insertions before items 0..j, and an insertion before j at j + c_j - 1. Both
    # are right-aligned into a buffer of 2l + 1 slots whose slot 0 collects the padding.
    slot = _positions(item_ids)
    pad = (length - lengths).unsqueeze(1)
    real = slot >= pad
    landing = 1 + 2 * length - (lengths + count).unsqueeze(1) + (slot - pad)
    landing = landing + before.long().cumsum(dim=1)
    buffer = torch.zeros(batch, 2 * length + 1, dtype=item_ids.dtype, device=item_ids.device)
    buffer.scatter_(1, landing.masked_fill(~real, 0), item_ids)
    buffer.scatter_(1, (landing - 1).masked_fill(~before, 0), _drawn(draws.new))
    return buffer[:, length + 1 :].clone()


# ----------------------------------------------------------------------------- functions


def mask_items(
    item_ids: Tensor,
    *,
    num_items: int,
    ratio: float = 0.7,
    mask_id: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Write ``mask_id`` at $\lfloor \gamma n_u \rfloor$ distinct random real slots (Eq. 2).

    Args:
        item_ids: ``(b, l)`` integer ids, left-padded with 0, in ``[0, max(num_items + 1,
            mask_id)]`` (an input may already hold the mask id).
        num_items: largest real item id $n$ (required: the mask id must not be a real item
            of the catalogue, whatever the batch holds). >= 1.
        ratio: $\gamma \in [0, 1]$.
        mask_id: id written at the chosen slots, ``0`` (ICLRec masks to padding) or
            $> n$; ``None`` means $n + 1$.
        generator: source of randomness, of ``item_ids``' device type.

    Returns:
        ``(b, l)``, a new tensor: int32 for int32 ids, else long.

    Raises:
        ValueError, TypeError: as :class:`SequenceAugmenter`.

    Examples:
        >>> import torch
        >>> from s4rec_components.augment import mask_items
        >>> g = torch.Generator().manual_seed(0)
        >>> mask_items(torch.tensor([[0, 1, 2, 3, 4]]), num_items=9, ratio=0.5, generator=g)
        tensor([[ 0,  1,  2, 10, 10]])
    """
    n = _check_num_items(num_items)
    gamma = check_probability(ratio, "ratio")
    masked = n + 1 if mask_id is None else _check_mask_id(mask_id, n)
    ids, dtype = _check_item_ids(item_ids, max(n + 1, masked), masked)
    check_generator(generator, draws_on=(ids, "item_ids"))
    return _mask(ids, _draw(ids, ("mask",), n, None, generator), gamma, masked).to(dtype)


def crop_items(
    item_ids: Tensor, *, ratio: float = 0.2, generator: torch.Generator | None = None
) -> Tensor:
    r"""Keep a random contiguous window of $\max(\lfloor \eta n_u \rfloor, 1)$ items (Eq. 3).

    Args:
        item_ids: ``(b, l)`` integer ids >= 0, left-padded with 0.
        ratio: $\eta \in [0, 1]$.
        generator: source of randomness, of ``item_ids``' device type.

    Returns:
        ``(b, l)``, the window right-aligned and left-padded; int32 for int32 ids, else
        long.

    Raises:
        ValueError, TypeError: as :class:`SequenceAugmenter`.

    Examples:
        >>> import torch
        >>> from s4rec_components.augment import crop_items
        >>> g = torch.Generator().manual_seed(0)
        >>> crop_items(torch.tensor([[0, 1, 2, 3, 4]]), ratio=0.5, generator=g)
        tensor([[0, 0, 0, 1, 2]])
    """
    eta = check_probability(ratio, "ratio")
    ids, dtype = _check_item_ids(item_ids, None, PADDING_ID)
    check_generator(generator, draws_on=(ids, "item_ids"))
    return _crop(ids, _draw(ids, ("crop",), 1, None, generator), eta).to(dtype)


def reorder_items(
    item_ids: Tensor, *, ratio: float = 0.2, generator: torch.Generator | None = None
) -> Tensor:
    r"""Shuffle one random contiguous window of $\lfloor \beta n_u \rfloor$ items (Eq. 4).

    Args:
        item_ids: ``(b, l)`` integer ids >= 0, left-padded with 0.
        ratio: $\beta \in [0, 1]$.
        generator: source of randomness, of ``item_ids``' device type.

    Returns:
        ``(b, l)``, the same multiset per row; slots outside the window unchanged; int32
        for int32 ids, else long.

    Raises:
        ValueError, TypeError: as :class:`SequenceAugmenter`.

    Examples:
        >>> import torch
        >>> from s4rec_components.augment import reorder_items
        >>> g = torch.Generator().manual_seed(0)
        >>> reorder_items(torch.tensor([[0, 1, 2, 3, 4]]), ratio=1.0, generator=g)
        tensor([[0, 4, 3, 2, 1]])
    """
    beta = check_probability(ratio, "ratio")
    ids, dtype = _check_item_ids(item_ids, None, PADDING_ID)
    check_generator(generator, draws_on=(ids, "item_ids"))
    return _reorder(ids, _draw(ids, ("reorder",), 1, None, generator), beta).to(dtype)


def insert_items(
    item_ids: Tensor,
    *,
    num_items: int,
    ratio: float = 0.4,
    insert_pool: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Insert $\max(\lfloor \alpha n_u \rfloor, 1)$ random items, keep the last l (Eq. 5).

    Args:
        item_ids: ``(b, l)`` integer ids in ``[0, num_items + 1]``, left-padded with 0.
        num_items: largest real item id $n$ (required); inserted ids are uniform on
            ``1..n`` unless ``insert_pool`` is given. >= 1.
        ratio: $\alpha \in [0, 1]$.
        insert_pool: ``(p,)`` integer candidate ids in ``[1, n]``, drawn uniformly.
        generator: source of randomness, of ``item_ids``' device type.

    Returns:
        ``(b, l)``, $\min(n_u + k_u, l)$ items per row, left-padded; int32 for int32 ids,
        else long.

    Raises:
        ValueError, TypeError: as :class:`SequenceAugmenter`.

    Examples:
        >>> import torch
        >>> from s4rec_components.augment import insert_items
        >>> g = torch.Generator().manual_seed(0)
        >>> ids = torch.tensor([[0, 0, 0, 1, 2]])
        >>> insert_items(ids, num_items=9, ratio=1.0, insert_pool=torch.tensor([7, 8]), generator=g)
        tensor([[0, 8, 1, 7, 2]])
    """
    n = _check_num_items(num_items)
    alpha = check_probability(ratio, "ratio")
    pool = None if insert_pool is None else _check_pool(insert_pool, n)
    ids, dtype = _check_item_ids(item_ids, n + 1, n)
    check_generator(generator, draws_on=(ids, "item_ids"))
    return _insert(ids, _draw(ids, ("insert",), n, pool, generator), alpha).to(dtype)


# ----------------------------------------------------------------------------- module


class SequenceAugmenter(nn.Module):
    r"""One random augmentation per sequence: mask, crop, reorder or insert (S4Rec Eq. 2-5, 12).

    For each row $u$ of real length $n_u$ one operation $g_u$ is drawn from
    ``operations`` (uniformly, or with ``operation_probs``) and applied, as in the
    CL4SRec / CoSeRec / ICLRec reference ``data_augmentation.py``:

    - **mask** (Eq. 2): $m_u = \lfloor \gamma n_u \rfloor$ distinct real slots, chosen
      uniformly, get ``mask_id``; nothing else changes.
    - **crop** (Eq. 3): a window of $w_u = \max(\lfloor \eta n_u \rfloor, 1)$ consecutive
      items starting at $s_u \sim \mathcal{U}\{0, \dots, n_u - w_u\}$ is kept,
      right-aligned and left-padded. (The reference draws $s_u \le n_u - w_u - 1$, so
      a window of $w_u \ge 1$ never holds the last item, and it fails when
      $w_u = n_u$; here every window is possible, and $n_u = 1$ keeps the item.)
    - **reorder** (Eq. 4): a window of $w_u = \lfloor \beta n_u \rfloor$ items starting
      at $s_u \sim \mathcal{U}\{0, \dots, n_u - w_u\}$ is permuted uniformly; the
      multiset and every item outside the window are kept.
    - **insert** (Eq. 5): $k_u = \max(\lfloor \alpha n_u \rfloor, 1)$ ids drawn uniformly
      from ``insert_pool`` (default $\{1, \dots, n\}$), each placed right before a
      distinct uniformly chosen original item; the $n_u + k_u$ items keep the original
      order as a subsequence and the last $l$ of them are kept, left-padded.

    Counts use Python's ``int(ratio * n)`` rounding (float64 product, floored). A row of padding
    only comes back unchanged; a row of one item stays non-empty, except that ``mask`` with
    ``mask_id=0`` (the public ICLRec code) writes zeros among real items in place: such rows
    are then no longer left-padded and may even look empty (they are not re-aligned).
    ICLRec's views are ``SequenceAugmenter(n, operations=("crop", "mask", "reorder"),
    mask_id=0)`` with the default ratios.

    All random numbers are drawn on ``item_ids.device`` from ``generator`` (or the default
    generator); same generator state (or same ``torch.manual_seed``) gives the same output.
    Every operation in ``operations`` runs on the whole batch from one shared set of random
    draws and each row keeps the result of its own operation, so no per-sample Python loop
    runs and, with :func:`~s4rec_components.set_validate_args` off, nothing is read back from
    the device (move the module to the batch's device with ``.to``, as any module). With
    validation on, the id range and the left padding of ``item_ids`` are checked (host reads).

    Args:
        num_items: largest real item id $n$; ids are ``1..n``, ``0`` is padding. In
            $[1, 2^{63} - 2]$ (the mask id $n + 1$ fits in int64).
        operations: non-empty names from ``("mask", "crop", "reorder", "insert")``.
        mask_ratio: $\gamma \in [0, 1]$ (CL4SRec default 0.7).
        crop_ratio: $\eta \in [0, 1]$ (CL4SRec default 0.2).
        reorder_ratio: $\beta \in [0, 1]$ (CL4SRec default 0.2).
        insert_ratio: $\alpha \in [0, 1]$ (CoSeRec default 0.4).
        mask_id: id written by ``mask``; ``None`` means $n + 1$. Must be ``0`` or $> n$.
        insert_pool: ``(p,)`` integer candidate ids in ``[1, n]`` for ``insert`` (repeat an
            id to weight it), kept as a non-persistent buffer.
        operation_probs: one finite non-negative probability per entry of ``operations``,
            summing to 1; default uniform.

    Shape:
        - item_ids: $(b, l)$, an integer dtype (``int8`` to ``int64``, ``uint8``), left-padded
          with 0, ids in $[0, \max(n + 1, \text{mask\_id})]$.
        - output: $(b, l)$, same device, a new tensor (the input is not modified); ``int32``
          for ``int32`` ids, ``long`` for every other integer dtype (as the encoder takes ids).
        - operations (from :meth:`with_operations`): $(b,)$, long index into ``operations``.

    Raises:
        TypeError: if ``item_ids`` is not an integer tensor, ``insert_pool`` not an integer
            tensor, ``num_items`` or ``mask_id`` not an int (bools refused), a ratio or
            probability not a real number, or ``operations`` a single string or not a sequence
            (``None``, a number).
        ValueError: if ``item_ids`` is not 2-D or has ``l = 0``, or is ``int32`` while an id
            this module may write (``mask_id`` with ``mask``, ``num_items`` with ``insert``)
            does not fit in int32; with validation on, if it
            holds ids outside the range above or has a row that is not left-padded (a zero
            after its first real item; the message names the first such row, so a batch
            masked with ``mask_id=0`` cannot be fed back); if a ratio is outside [0, 1] or
            not finite, ``num_items < 1`` or ``num_items > 2**63 - 2`` (the mask id
            ``num_items + 1`` must fit in int64), ``mask_id > 2**63 - 1``, ``operations``
            is empty or names an unknown operation, ``insert_pool`` is not a non-empty 1-D
            tensor of ids in ``[1, n]``, ``operation_probs`` has the wrong length, a
            negative entry or does not sum to 1, or (in ``forward``) ``generator`` is of
            another device type than ``item_ids`` (a CPU generator for CUDA ids).

    Examples:
        >>> import torch
        >>> from s4rec_components import SequenceAugmenter
        >>> aug = SequenceAugmenter(9, reorder_ratio=0.5)
        >>> ids = torch.tensor([[0, 0, 1, 2, 3, 4], [5, 6, 7, 8, 2, 1], [0, 0, 0, 0, 0, 0]])
        >>> g = torch.Generator().manual_seed(0)
        >>> views, ops = aug.with_operations(ids, generator=g)
        >>> views
        tensor([[0, 0, 0, 0, 0, 3],
                [6, 7, 8, 6, 2, 1],
                [0, 0, 0, 0, 0, 0]])
        >>> [aug.operations[i] for i in ops.tolist()]
        ['crop', 'insert', 'mask']
        >>> aug(ids).shape
        torch.Size([3, 6])
    """

    operation_weights: Tensor
    operation_cdf: Tensor
    operation_kinds: Tensor
    insert_pool: Tensor | None

    def __init__(
        self,
        num_items: int,
        *,
        operations: Sequence[Operation] = ("mask", "crop", "reorder", "insert"),
        mask_ratio: float = 0.7,
        crop_ratio: float = 0.2,
        reorder_ratio: float = 0.2,
        insert_ratio: float = 0.4,
        mask_id: int | None = None,
        insert_pool: Tensor | None = None,
        operation_probs: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.num_items = _check_num_items(num_items)
        if isinstance(operations, (str, bytes)):
            raise TypeError(
                f"operations must be a sequence of names, got the string {operations!r}"
            )
        if not isinstance(operations, Iterable):
            raise TypeError(
                f"operations must be a sequence of names from {OPERATIONS}, "
                f"got {type(operations).__name__}"
            )
        ops = tuple(operations)
        if not ops:
            raise ValueError(f"operations must not be empty, choose from {OPERATIONS}")
        for op in ops:
            if op not in OPERATIONS:
                raise ValueError(f"operations must be among {OPERATIONS}, got {op!r}")
        self.operations: tuple[str, ...] = ops
        self.mask_ratio = check_probability(mask_ratio, "mask_ratio")
        self.crop_ratio = check_probability(crop_ratio, "crop_ratio")
        self.reorder_ratio = check_probability(reorder_ratio, "reorder_ratio")
        self.insert_ratio = check_probability(insert_ratio, "insert_ratio")
        self.mask_id = (
            self.num_items + 1 if mask_id is None else _check_mask_id(mask_id, self.num_items)
        )
        probs = self._check_probs(operation_probs, len(ops))
        # The distinct operations in a fixed order, and the index of each entry's operation.
        self._kinds: tuple[str, ...] = tuple(k for k in OPERATIONS if k in ops)
        kind_of = [self._kinds.index(op) for op in ops]
        # Cumulative probabilities, exactly 1.0 from the last positive entry on, so a uniform
        # draw in [0, 1) never lands on an operation of probability 0.
        cdf = [math.fsum(probs[: i + 1]) for i in range(len(probs))]
        last = max(i for i, p in enumerate(probs) if p > 0)
        cdf = [1.0 if i >= last else min(c, 1.0) for i, c in enumerate(cdf)]
        self.register_buffer(
            "operation_weights", torch.tensor(probs, dtype=torch.float32), persistent=False
        )
        self.register_buffer(
            "operation_cdf", torch.tensor(cdf, dtype=torch.float32), persistent=False
        )
        self.register_buffer(
            "operation_kinds", torch.tensor(kind_of, dtype=torch.long), persistent=False
        )
        pool = None if insert_pool is None else _check_pool(insert_pool, self.num_items)
        self.register_buffer("insert_pool", pool, persistent=False)

    @staticmethod
    def _check_probs(operation_probs: Sequence[float] | None, count: int) -> list[float]:
        if operation_probs is None:
            return [1.0 / count] * count
        if isinstance(operation_probs, (str, bytes)) or not isinstance(operation_probs, Sequence):
            raise TypeError(
                f"operation_probs must be a sequence of numbers, got "
                f"{type(operation_probs).__name__}"
            )
        probs = [
            check_real(p, f"operation_probs[{i}]", low=0.0) for i, p in enumerate(operation_probs)
        ]
        if len(probs) != count:
            raise ValueError(
                f"operation_probs must have one entry per operation ({count}), got {len(probs)}"
            )
        if abs(math.fsum(probs) - 1.0) > _PROBS_SUM_TOLERANCE:
            raise ValueError(f"operation_probs must sum to 1, got sum {math.fsum(probs)!r}")
        return probs

    def extra_repr(self) -> str:
        return (
            f"num_items={self.num_items}, operations={self.operations}, "
            f"mask_ratio={self.mask_ratio}, crop_ratio={self.crop_ratio}, "
            f"reorder_ratio={self.reorder_ratio}, insert_ratio={self.insert_ratio}, "
            f"mask_id={self.mask_id}"
        )

    def forward(self, item_ids: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment every row with one operation drawn for it; see the class docstring.

        Args:
            item_ids: ``(b, l)`` integer ids, left-padded with 0.
            generator: source of all random draws; must be of ``item_ids``' device type
                (a CUDA generator for CUDA ids). ``None`` uses the default generator of that device.

        Returns:
            The ``(b, l)`` augmented batch (int32 for int32 ids, else long).
        """
        return self.with_operations(item_ids, generator)[0]

    def with_operations(
        self, item_ids: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Like ``forward``, and also the operation each row got.

        Args:
            item_ids: ``(b, l)`` integer ids, left-padded with 0.
            generator: source of all random draws, of ``item_ids``' device type.

        Returns:
            ``(views, operations)``: the ``(b, l)`` augmented batch (int32 for int32 ids,
            else long) and the ``(b,)``
            long index into ``self.operations`` of the operation of each row.

        Examples:
            >>> import torch
            >>> aug = SequenceAugmenter(5, operations=("mask", "crop"), mask_ratio=1.0, crop_ratio=1.0)
            >>> ids = torch.tensor([[0, 1, 2, 3], [4, 5, 3, 2], [0, 0, 2, 1]])
            >>> views, ops = aug.with_operations(ids, torch.Generator().manual_seed(0))
            >>> [aug.operations[i] for i in ops.tolist()], views.tolist()  # crop keeps the whole row
            (['mask', 'crop', 'mask'], [[0, 6, 6, 6], [4, 5, 3, 2], [0, 0, 6, 6]])
        """
        written = max(
            self.mask_id if "mask" in self._kinds else PADDING_ID,
            self.num_items if "insert" in self._kinds else PADDING_ID,
        )
        ids, dtype = _check_item_ids(item_ids, max(self.num_items + 1, self.mask_id), written)
        check_generator(generator, draws_on=(ids, "item_ids"))
        views, operations = self._augment(ids, generator)
        return views.to(dtype), operations

    def _augment(
        self, item_ids: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        batch, device = item_ids.shape[0], item_ids.device
        if len(self.operations) == 1:
            chosen = torch.zeros(batch, dtype=torch.long, device=device)
        else:
            uniform = torch.rand(batch, generator=generator, device=device)
            cdf = self.operation_cdf.to(device)
            chosen = torch.searchsorted(cdf, uniform, right=True).clamp_(max=cdf.numel() - 1)
        pool = self.insert_pool
        draws = _draw(item_ids, self._kinds, self.num_items, pool, generator)
        if len(self._kinds) == 1:
            return self._run(self._kinds[0], item_ids, draws), chosen
        row_kind = self.operation_kinds.to(device)[chosen].unsqueeze(1)
        out = item_ids
        for index, kind in enumerate(self._kinds):
            out = torch.where(row_kind == index, self._run(kind, item_ids, draws), out)
        return out, chosen

    def _run(self, kind: str, item_ids: Tensor, draws: _Draws) -> Tensor:
        if kind == "mask":
            return _mask(item_ids, draws, self.mask_ratio, self.mask_id)
        if kind == "crop":
            return _crop(item_ids, draws, self.crop_ratio)
        if kind == "reorder":
            return _reorder(item_ids, draws, self.reorder_ratio)
        return _insert(item_ids, draws, self.insert_ratio)
