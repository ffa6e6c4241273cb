r"""Random sequence-level augmentations for contrastive views (S4Rec Sec. 3.2, Eq. 2-5).

Mask, crop and reorder follow CL4SRec; insert follows CoSeRec (with random instead of
correlated items, as in S4Rec Eq. 5). All four work on a whole left-padded batch at once, on
the batch's device: positions are chosen by sorting per-row random keys, windows and
insertions are built by computing, for every slot, where its item comes from or goes to.
``SequenceAugmenter`` draws one operation per row; the ``*_items`` functions apply one
operation to every row.

Letter legend: ``b`` batch, ``l`` sequence length, ``n`` items. Padding id is ``0``; a row of
real length $n_u$ holds its items in the last $n_u$ slots.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from ._validation import check_integer, check_ndim, check_probability, check_tensor

__all__ = [
    "Operation",
    "SequenceAugmenter",
    "crop_items",
    "insert_items",
    "mask_items",
    "reorder_items",
]

Operation = Literal["mask", "crop", "reorder", "insert"]
OPERATIONS: tuple[str, ...] = get_args(Operation)

PADDING_ID = 0
# Offsets are drawn as a big random integer modulo the number of choices; with choices
# bounded by the sequence length the modulo bias is below l / 2**62.
_RANDOM_INT_HIGH = 2**62
# Tolerance on sum(operation_probs) == 1.
_PROBS_SUM_TOLERANCE = 1e-6


# ----------------------------------------------------------------------------- helpers


def _real_mask(item_ids: Tensor, lengths: Tensor) -> Tensor:
    """``(b, l)`` bool: the last ``lengths[i]`` slots of row ``i``."""
    return _positions(item_ids) >= (item_ids.shape[1] - lengths).unsqueeze(1)


def _check_item_ids(
    item_ids: object, max_id: int, name: str = "item_ids"
) -> tuple[Tensor, Tensor]:
    """Validate a ``(b, l)`` left-padded long batch with ids in ``[0, max_id]``.

    Returns the batch and its ``(b,)`` real lengths (number of non-zero ids).
    """
    item_ids = check_tensor(item_ids, name)
    check_ndim(item_ids, 2, name, "(b, l)")
    check_integer(item_ids, name)
    if item_ids.dtype != torch.long:
        raise TypeError(f"{name} must have dtype torch.long, got dtype {item_ids.dtype}")
    if item_ids.shape[1] == 0:
        raise ValueError(f"{name} must have length l >= 1, got shape {tuple(item_ids.shape)}")
    nonzero = item_ids != PADDING_ID
    lengths = nonzero.sum(dim=1)
    if item_ids.numel() == 0:
        return item_ids, lengths
    lo, hi = (int(v) for v in torch.aminmax(item_ids))
    if lo < PADDING_ID or hi > max_id:
        raise ValueError(f"{name} must lie in [0, {max_id}], got values in [{lo}, {hi}]")
    misplaced = nonzero != _real_mask(item_ids, lengths)  # a zero after a real item
    if bool(misplaced.any()):
        row = int(misplaced.any(dim=1).nonzero()[0, 0])
        raise ValueError(
            f"{name} must be left-padded (zeros only before the first real item); row {row} "
            f"is not: {item_ids[row].tolist()}"
        )
    return item_ids, lengths


def _count_table(ratio: float, length: int, device: torch.device) -> Tensor:
    """``(l + 1,)`` long: ``floor(ratio * n)`` for ``n = 0..l``, in float64 like Python's ``int``.

    Built on the CPU (float64 is not available on every accelerator) and moved once.
    """
    n = torch.arange(length + 1, dtype=torch.float64)
    return torch.floor(ratio * n).long().to(device)


def _uniform_below(count: Tensor, generator: torch.Generator | None) -> Tensor:
    """``(b,)`` long, entry ``i`` uniform in ``[0, count[i])`` (0 where ``count[i] <= 0``)."""
    raw = torch.randint(
        0, _RANDOM_INT_HIGH, count.shape, generator=generator, device=count.device
    )
    return raw % count.clamp(min=1)


def _unique_keys(item_ids: Tensor, generator: torch.Generator | None) -> tuple[Tensor, int]:
    """Random int64 sort keys, distinct within each row, and a bound above all of them.

    ``key = r * l + slot`` with ``r`` uniform in ``[0, high)``: ordering by key is a uniformly
    random order up to ties of ``r`` (probability below ``l**2 / high``), broken by slot.
    """
    length = item_ids.shape[1]
    high = max(_RANDOM_INT_HIGH // (length + 1) ** 2, 1)
    draw = torch.randint(0, high, item_ids.shape, generator=generator, device=item_ids.device)
    return draw * length + _positions(item_ids), high * length


def _choose(
    item_ids: Tensor, lengths: Tensor, count: Tensor, generator: torch.Generator | None
) -> Tensor:
    """``(b, l)`` bool: exactly ``count[i]`` distinct uniformly chosen real slots of row ``i``."""
    keys, bound = _unique_keys(item_ids, generator)
    keys = keys.masked_fill(~_real_mask(item_ids, lengths), bound)
    smallest = keys.sort(dim=1).values
    threshold = smallest.gather(1, (count - 1).clamp(min=0).unsqueeze(1))
    return (keys <= threshold) & (count > 0).unsqueeze(1)


def _positions(item_ids: Tensor) -> Tensor:
    """``(1, l)`` long slot indices ``0..l-1``."""
    return torch.arange(item_ids.shape[1], device=item_ids.device).unsqueeze(0)


# ----------------------------------------------------------------------------- kernels
# The kernels assume validated input and its real lengths; each draws its own randomness.


def _mask(
    item_ids: Tensor, lengths: Tensor, ratio: float, mask_id: int, generator: torch.Generator | None
) -> Tensor:
    count = _count_table(ratio, item_ids.shape[1], item_ids.device)[lengths]
    return item_ids.masked_fill(_choose(item_ids, lengths, count, generator), mask_id)


def _crop(
    item_ids: Tensor, lengths: Tensor, ratio: float, generator: torch.Generator | None
) -> Tensor:
    length = item_ids.shape[1]
    width = _count_table(ratio, length, item_ids.device)[lengths].clamp(min=1)
    width = torch.minimum(width, lengths)
    start = _uniform_below(lengths - width + 1, generator)
    slot = _positions(item_ids)
    # Output slot p holds window item p - (l - w), i.e. input slot (l - n) + s + p - (l - w).
    source = slot + (width + start - lengths).unsqueeze(1)
    keep = slot >= (length - width).unsqueeze(1)
    picked = item_ids.gather(1, source.clamp(0, length - 1))
    return picked.masked_fill(~keep, PADDING_ID)


def _reorder(
    item_ids: Tensor, lengths: Tensor, ratio: float, generator: torch.Generator | None
) -> Tensor:
    length = item_ids.shape[1]
    width = _count_table(ratio, length, item_ids.device)[lengths]
    start = _uniform_below(lengths - width + 1, generator)
    first = (length - lengths + start).unsqueeze(1)  # first window slot
    slot = _positions(item_ids)
    inside = (slot >= first) & (slot < first + width.unsqueeze(1))
    # Sort key slot * bound outside the window, first * bound + (distinct random key < bound)
    # inside: the window stays in place and comes out in a uniformly random order.
    keys, bound = _unique_keys(item_ids, generator)
    order_keys = torch.where(inside, first * bound + keys, slot * bound)
    return item_ids.gather(1, order_keys.argsort(dim=1))


def _insert(
    item_ids: Tensor,
    lengths: Tensor,
    ratio: float,
    pool: Tensor | None,
    num_items: int,
    generator: torch.Generator | None,
) -> Tensor:
    batch, length = item_ids.shape
    device = item_ids.device
    count = _count_table(ratio, length, device)[lengths].clamp(min=1)
    count = torch.minimum(count, lengths)
    before = _choose(item_ids, lengths, count, generator)
    if pool is None:
        new = torch.randint(
            1, num_items + 1, item_ids.shape, generator=generator, device=device
        )
    else:
        pool = pool.to(device)
        pick = torch.randint(
            0, pool.numel(), item_ids.shape, generator=generator, device=device
        )
        new = pool[pick]
    # The untruncated result has n + k items: original item j lands at j + c_j, with c_j the
    # number of insertions before items 0..j, and an insertion before j at j + c_j - 1. Both
    # are right-aligned into a buffer of 2l + 1 slots whose slot 0 collects the padding.
    slot = _positions(item_ids)
    pad = (length - lengths).unsqueeze(1)
    real = slot >= pad
    landing = 1 + 2 * length - (lengths + count).unsqueeze(1) + (slot - pad)
    landing = landing + before.long().cumsum(dim=1)
    buffer = torch.zeros(batch, 2 * length + 1, dtype=item_ids.dtype, device=device)
    buffer.scatter_(1, landing.masked_fill(~real, 0), item_ids)
    buffer.scatter_(1, (landing - 1).masked_fill(~before, 0), new)
    return buffer[:, length + 1 :].clone()


# ----------------------------------------------------------------------------- functions


def mask_items(
    item_ids: Tensor,
    ratio: float = 0.7,
    mask_id: int | None = None,
    num_items: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Write ``mask_id`` at $\lfloor \gamma n_u \rfloor$ distinct random real slots (Eq. 2).

    Args:
        item_ids: ``(b, l)`` long ids, left-padded with 0.
        ratio: $\gamma \in [0, 1]$.
        mask_id: id written at the chosen slots, 0 or > ``num_items``; default ``num_items + 1``.
        num_items: largest real item id; default ``item_ids.max()``.
        generator: source of randomness, on ``item_ids.device``.

    Returns:
        ``(b, l)`` long, a new tensor.

    Raises:
        ValueError, TypeError: as ``SequenceAugmenter``.

    Examples:
        >>> import torch
        >>> from s4rec_components.augment import mask_items
        >>> g = torch.Generator().manual_seed(0)
        >>> mask_items(torch.tensor([[0, 1, 2, 3, 4]]), 0.5, mask_id=9, generator=g)
        tensor([[0, 1, 2, 9, 9]])
    """
    check_probability(ratio, "ratio")
    num_items, mask_id = _resolve_ids(item_ids, num_items, mask_id)
    item_ids, lengths = _check_item_ids(item_ids, max(num_items + 1, mask_id))
    return _mask(item_ids, lengths, ratio, mask_id, generator)


def crop_items(
    item_ids: Tensor, ratio: float = 0.2, generator: torch.Generator | None = None
) -> Tensor:
    r"""Keep a random contiguous window of $\max(\lfloor \eta n_u \rfloor, 1)$ items (Eq. 3).

    Args:
        item_ids: ``(b, l)`` long ids, left-padded with 0.
        ratio: $\eta \in [0, 1]$.
        generator: source of randomness, on ``item_ids.device``.

    Returns:
        ``(b, l)`` long, the window right-aligned and left-padded.

    Raises:
        ValueError, TypeError: as ``SequenceAugmenter``.

    Examples:
        >>> import torch
        >>> from s4rec_components.augment import crop_items
        >>> g = torch.Generator().manual_seed(0)
        >>> crop_items(torch.tensor([[0, 1, 2, 3, 4]]), 0.5, generator=g)
        tensor([[0, 0, 0, 1, 2]])
    """
    check_probability(ratio, "ratio")
    item_ids, lengths = _check_item_ids(item_ids, _max_id(item_ids))
    return _crop(item_ids, lengths, ratio, generator)


def reorder_items(
    item_ids: Tensor, ratio: float = 0.2, generator: torch.Generator | None = None
) -> Tensor:
    r"""Shuffle one random contiguous window of $\lfloor \beta n_u \rfloor$ items (Eq. 4).

    Args:
        item_ids: ``(b, l)`` long ids, left-padded with 0.
        ratio: $\beta \in [0, 1]$.
        generator: source of randomness, on ``item_ids.device``.

    Returns:
        ``(b, l)`` long, the same multiset per row; slots outside the window unchanged.

    Raises:
        ValueError, TypeError: as ``SequenceAugmenter``.

    Examples:
        >>> import torch
        >>> from s4rec_components.augment import reorder_items
        >>> g = torch.Generator().manual_seed(0)
        >>> reorder_items(torch.tensor([[0, 1, 2, 3, 4]]), 1.0, generator=g)
        tensor([[0, 3, 4, 2, 1]])
    """
    check_probability(ratio, "ratio")
    item_ids, lengths = _check_item_ids(item_ids, _max_id(item_ids))
    return _reorder(item_ids, lengths, ratio, generator)


def insert_items(
    item_ids: Tensor,
    ratio: float = 0.4,
    num_items: int | None = None,
    insert_pool: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Insert $\max(\lfloor \alpha n_u \rfloor, 1)$ random items, keep the last l (Eq. 5).

    Args:
        item_ids: ``(b, l)`` long ids, left-padded with 0.
        ratio: $\alpha \in [0, 1]$.
        num_items: largest item id; inserted ids are uniform on ``1..num_items`` unless
            ``insert_pool`` is given. Default ``item_ids.max()``.
        insert_pool: ``(p,)`` long candidate ids in ``[1, num_items]``, drawn uniformly.
        generator: source of randomness, on ``item_ids.device``.

    Returns:
        ``(b, l)`` long, $\min(n_u + k_u, l)$ items per row, left-padded.

    Raises:
        ValueError, TypeError: as ``SequenceAugmenter``.

    Examples:
        >>> import torch
        >>> from s4rec_components.augment import insert_items
        >>> g = torch.Generator().manual_seed(0)
        >>> pool = torch.tensor([7, 8])
        >>> insert_items(torch.tensor([[0, 0, 0, 1, 2]]), 1.0, 9, pool, generator=g)
        tensor([[0, 8, 1, 7, 2]])
    """
    check_probability(ratio, "ratio")
    num_items, _ = _resolve_ids(item_ids, num_items, None)
    if insert_pool is not None:
        insert_pool = _check_pool(insert_pool, num_items)
    item_ids, lengths = _check_item_ids(item_ids, num_items + 1)
    return _insert(item_ids, lengths, ratio, insert_pool, num_items, generator)


def _max_id(item_ids: object) -> int:
    """Largest id of a tensor, or an unchecked bound where the tensor is not usable yet."""
    if isinstance(item_ids, Tensor) and item_ids.numel() > 0 and not item_ids.is_floating_point():
        return max(int(item_ids.max()), 0)
    return 0


def _resolve_ids(item_ids: object, num_items: int | None, mask_id: int | None) -> tuple[int, int]:
    if num_items is None:
        num_items = max(_max_id(item_ids), 1)
    _check_num_items(num_items)
    if mask_id is None:
        mask_id = num_items + 1
    _check_mask_id(mask_id, num_items)
    return num_items, mask_id


def _check_num_items(num_items: int) -> None:
    if isinstance(num_items, bool) or not isinstance(num_items, int):
        raise TypeError(f"num_items must be an int, got {type(num_items).__name__}")
    if num_items < 1:
        raise ValueError(f"num_items must be >= 1, got {num_items}")


def _check_mask_id(mask_id: int, num_items: int) -> None:
    if isinstance(mask_id, bool) or not isinstance(mask_id, int):
        raise TypeError(f"mask_id must be an int, got {type(mask_id).__name__}")
    if not (mask_id == PADDING_ID or mask_id > num_items):
        raise ValueError(
            f"mask_id must be 0 or > num_items={num_items} (not a real item id), got {mask_id}"
        )


def _check_pool(pool: object, num_items: int) -> Tensor:
    pool = check_tensor(pool, "insert_pool")
    check_ndim(pool, 1, "insert_pool", "(p,)")
    check_integer(pool, "insert_pool")
    if pool.numel() == 0:
        raise ValueError("insert_pool must not be empty, got shape (0,)")
    lo, hi = int(pool.min()), int(pool.max())
    if lo < 1 or hi > num_items:
        raise ValueError(f"insert_pool must lie in [1, {num_items}], got values in [{lo}, {hi}]")
    return pool.long()


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

    All random numbers are drawn on ``item_ids.device`` from ``generator`` (or the default
    generator). Rows are grouped by the operation they drew and each operation runs once on
    its group, so no per-sample Python loop runs; besides the input checks the only host
    sync reads the group sizes. Same generator state (or same ``torch.manual_seed``) gives
    the same output.

    Args:
        num_items: largest real item id $n$; ids are ``1..n``, ``0`` is padding. >= 1.
        operations: non-empty names from ``("mask", "crop", "reorder", "insert")``.
        mask_ratio: $\gamma \in [0, 1]$ (CL4SRec default 0.7).
        crop_ratio: $\eta \in [0, 1]$ (CL4SRec default 0.2).
        reorder_ratio: $\beta \in [0, 1]$ (CL4SRec default 0.2).
        insert_ratio: $\alpha \in [0, 1]$ (CoSeRec default 0.4).
        mask_id: id written by ``mask``; default $n + 1$. Must be ``0`` or $> n$.
        insert_pool: ``(p,)`` long candidate ids in ``[1, n]`` for ``insert`` (repeat an id to
            weight it), kept as a non-persistent buffer.
        operation_probs: one non-negative probability per entry of ``operations``, summing
            to 1; default uniform.

    Shape:
        - item_ids: $(b, l)$, long, left-padded with 0, ids in $[0, \max(n + 1,
          \text{mask\_id})]$.
        - output: $(b, l)$, long, same device, a new tensor (the input is not modified).
        - operations (with ``return_operations=True``): $(b,)$, long index into
          ``operations``.

    Raises:
        TypeError: if ``item_ids`` is not a long tensor, ``insert_pool`` not an integer
            tensor, ``num_items`` or ``mask_id`` not an int, or ``operations`` a single string.
        ValueError: if ``item_ids`` is not 2-D, has ``l = 0``, holds ids outside the range
            above, or has a row that is not left-padded (a zero after its first real item;
            the message names the first such row, so a batch masked with ``mask_id=0`` cannot
            be fed back); if a ratio is
            outside [0, 1], ``num_items < 1``, ``operations`` is empty or names an unknown
            operation, ``insert_pool`` is not a non-empty 1-D tensor of ids in ``[1, n]``, or
            ``operation_probs`` has the wrong length, a negative entry or does not sum to 1.

    Examples:
        >>> import torch
        >>> from s4rec_components import SequenceAugmenter
        >>> aug = SequenceAugmenter(num_items=9, reorder_ratio=0.5)
        >>> ids = torch.tensor([[0, 0, 1, 2, 3, 4], [5, 6, 7, 8, 2, 1], [0, 0, 0, 0, 0, 0]])
        >>> g = torch.Generator().manual_seed(0)
        >>> out, ops = aug(ids, generator=g, return_operations=True)
        >>> out
        tensor([[0, 1, 2, 9, 3, 4],
                [5, 6, 7, 2, 1, 8],
                [0, 0, 0, 0, 0, 0]])
        >>> [aug.operations[i] for i in ops.tolist()]
        ['insert', 'reorder', 'crop']
    """

    operation_weights: Tensor
    insert_pool: Tensor | None

    def __init__(
        self,
        num_items: int,
        operations: Sequence[Operation] = OPERATIONS,  # type: ignore[assignment]
        mask_ratio: float = 0.7,
        crop_ratio: float = 0.2,
        reorder_ratio: float = 0.2,
        insert_ratio: float = 0.4,
        mask_id: int | None = None,
        insert_pool: Tensor | None = None,
        operation_probs: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        _check_num_items(num_items)
        if isinstance(operations, str):
            raise TypeError(
                f"operations must be a sequence of names, got the string {operations!r}"
            )
        operations = tuple(operations)
        if not operations:
            raise ValueError(f"operations must not be empty, choose from {OPERATIONS}")
        for op in operations:
            if op not in OPERATIONS:
                raise ValueError(f"operations must be among {OPERATIONS}, got {op!r}")
        for name, value in (
            ("mask_ratio", mask_ratio),
            ("crop_ratio", crop_ratio),
            ("reorder_ratio", reorder_ratio),
            ("insert_ratio", insert_ratio),
        ):
            check_probability(value, name)
        if mask_id is None:
            mask_id = num_items + 1
        _check_mask_id(mask_id, num_items)
        if operation_probs is None:
            probs = [1.0 / len(operations)] * len(operations)
        else:
            probs = [float(p) for p in operation_probs]
            if len(probs) != len(operations):
                raise ValueError(
                    f"operation_probs must have one entry per operation ({len(operations)}), "
                    f"got {len(probs)}"
                )
            if any(not p >= 0.0 for p in probs):
                raise ValueError(f"operation_probs must be >= 0, got {probs}")
            if abs(sum(probs) - 1.0) > _PROBS_SUM_TOLERANCE:
                raise ValueError(f"operation_probs must sum to 1, got sum {sum(probs)!r}")

        self.num_items = num_items
        self.operations: tuple[str, ...] = operations
        self.mask_ratio = mask_ratio
        self.crop_ratio = crop_ratio
        self.reorder_ratio = reorder_ratio
        self.insert_ratio = insert_ratio
        self.mask_id = mask_id
        self.register_buffer(
            "operation_weights", torch.tensor(probs, dtype=torch.float32), persistent=False
        )
        pool = None if insert_pool is None else _check_pool(insert_pool, num_items)
        self.register_buffer("insert_pool", pool, persistent=False)

    def extra_repr(self) -> str:
        return (
            f"num_items={self.num_items}, operations={self.operations}, "
            f"mask_ratio={self.mask_ratio}, crop_ratio={self.crop_ratio}, "
            f"reorder_ratio={self.reorder_ratio}, insert_ratio={self.insert_ratio}, "
            f"mask_id={self.mask_id}"
        )

    def forward(
        self,
        item_ids: Tensor,
        generator: torch.Generator | None = None,
        return_operations: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Augment every row with one operation drawn for it; see the class docstring.

        Args:
            item_ids: ``(b, l)`` long ids, left-padded with 0.
            generator: source of all random draws; must live on ``item_ids.device``.
                ``None`` uses the default generator of that device.
            return_operations: also return the ``(b,)`` index into ``operations`` of the
                operation each row got.

        Returns:
            The ``(b, l)`` long augmented batch, or ``(batch, operation_index)``.
        """
        item_ids, lengths = _check_item_ids(item_ids, max(self.num_items + 1, self.mask_id))
        batch = item_ids.shape[0]
        device = item_ids.device
        if len(self.operations) == 1 or batch == 0:
            chosen = torch.zeros(batch, dtype=torch.long, device=device)
            out = self._run(self.operations[0], item_ids, lengths, generator)
        else:
            weights = self.operation_weights.to(device)
            chosen = torch.multinomial(weights, batch, replacement=True, generator=generator)
            # Group the rows by operation (one host sync for the group sizes), run each
            # operation on its rows only, and put the rows back in place.
            order = chosen.argsort(stable=True)
            sizes = torch.bincount(chosen, minlength=len(self.operations)).tolist()
            grouped_ids = item_ids[order].split(sizes)
            grouped_lengths = lengths[order].split(sizes)
            parts = [
                self._run(op, ids, n, generator)
                for op, ids, n in zip(self.operations, grouped_ids, grouped_lengths)
            ]
            out = torch.empty_like(item_ids)
            out[order] = torch.cat(parts)
        if return_operations:
            return out, chosen
        return out

    def _run(
        self, op: str, item_ids: Tensor, lengths: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        if op == "mask":
            return _mask(item_ids, lengths, self.mask_ratio, self.mask_id, generator)
        if op == "crop":
            return _crop(item_ids, lengths, self.crop_ratio, generator)
        if op == "reorder":
            return _reorder(item_ids, lengths, self.reorder_ratio, generator)
        return _insert(
            item_ids, lengths, self.insert_ratio, self.insert_pool, self.num_items, generator
        )
