"""Ragged rows of item ids in CSR form: memory proportional to the number of interactions.

A user's history has its own length; padding every user to the longest history costs
``users x longest`` memory, which one very long user can blow up. :class:`Ragged` keeps all
rows in one flat ``values`` tensor and their boundaries in ``offsets`` (row ``r`` is
``values[offsets[r]:offsets[r + 1]]``), and pads only the rows a batch asks for.

Examples:
    >>> import torch
    >>> r = Ragged.from_lists([[3, 1], [], [7, 7, 2]])
    >>> r.num_rows, r.lengths.tolist()
    (3, [2, 0, 3])
    >>> r.pad_rows(torch.tensor([2, 0]))
    tensor([[7, 7, 2],
            [0, 3, 1]])
    >>> r.contains(torch.tensor([0, 0, 2]), torch.tensor([1, 7, 7])).tolist()
    [True, False, True]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ._validation import (
    as_index,
    as_int,
    check_int,
    check_integer,
    check_ndim,
    check_range,
    check_tensor,
    validate_args_enabled,
)
from .constants import PADDING_ID

__all__ = ["Ragged", "RowIndexError"]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class RowIndexError(IndexError, ValueError):
    """A row number outside ``[-r, r)`` (:meth:`Ragged.row`) or ``[0, r)`` (:meth:`Ragged.pad_rows`).

    Both an ``IndexError`` (as ``list`` indexing) and a ``ValueError`` (a bad argument), as
    ``numpy.exceptions.AxisError`` is.

    Examples:
        >>> try:
        ...     Ragged.from_lists([[1], [2, 3]]).row(2)
        ... except IndexError as err:  # RowIndexError is also a ValueError
        ...     print(type(err).__name__)
        RowIndexError
    """


def _checked_lists(rows: object, name: str) -> tuple[Tensor, Tensor]:
    """``rows`` (a sequence of sequences of ints) as CPU int64 CSR ``(values, offsets)``; every
    entry checked (``as_int``, int64 range), errors naming ``name[i]``."""
    if isinstance(rows, (str, bytes, Tensor)) or not isinstance(rows, Sequence):
        raise TypeError(f"{name} must be a sequence of sequences of ints, got {type(rows).__name__}")
    flat: list[int] = []
    lengths: list[int] = []
    for i, row in enumerate(rows):
        if isinstance(row, (str, bytes)) or not isinstance(row, (Sequence, Tensor)):
            raise TypeError(f"{name}[{i}] must be a sequence of ints, got {type(row).__name__} {row!r}")
        lengths.append(len(row))
        for v in row:
            number = as_int(v, f"{name}[{i}] entries")
            if not _INT64_MIN <= number <= _INT64_MAX:
                raise ValueError(f"{name}[{i}] entries must fit in int64, got {number}")
            flat.append(number)
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.long)
    offsets[1:] = torch.tensor(lengths, dtype=torch.long).cumsum(0)
    return torch.tensor(flat, dtype=torch.long), offsets


@dataclass(frozen=True)
class Ragged:
    r"""Rows of different lengths stored as flat ``values`` and row ``offsets`` (CSR).

    Args:
        values: ``(m,)`` long, every row's entries one after another.
        offsets: ``(r + 1,)`` long, non-decreasing, ``offsets[0] == 0`` and
            ``offsets[-1] == m``; row ``i`` is ``values[offsets[i]:offsets[i + 1]]``.

    Memory is :math:`O(m + r)`, never :math:`O(r \cdot \max_i |row_i|)`.

    Raises:
        TypeError: if either tensor is not an integer tensor.
        ValueError: if ``offsets`` is not 1-D, does not start at 0, does not end at ``m`` or
            decreases (the last two only while value checks are on).

    Examples:
        >>> import torch
        >>> r = Ragged(torch.tensor([3, 1, 7, 7, 2]), torch.tensor([0, 2, 2, 5]))
        >>> r.tolist(), r.row(-1).tolist()
        ([[3, 1], [], [7, 7, 2]], [7, 7, 2])
        >>> r.pad_rows(torch.tensor([0, 1]))  # left-padded with 0 to the longest asked row
        tensor([[3, 1],
                [0, 0]])
    """

    values: Tensor
    offsets: Tensor

    def __post_init__(self) -> None:
        check_ndim(self.values, 1, "values", "(m,)")
        check_ndim(self.offsets, 1, "offsets", "(r + 1,)")
        check_integer(self.values, "values")
        check_integer(self.offsets, "offsets")
        if self.offsets.numel() == 0:
            raise ValueError("offsets must have at least one entry (offsets[0] == 0)")
        if validate_args_enabled():
            first, last = int(self.offsets[0]), int(self.offsets[-1])
            if first != 0 or last != self.values.numel():
                raise ValueError(
                    f"offsets must start at 0 and end at len(values) = {self.values.numel()}, "
                    f"got {first} and {last}"
                )
            if self.offsets.numel() > 1 and bool((self.offsets[1:] < self.offsets[:-1]).any()):
                raise ValueError("offsets must be non-decreasing")

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int]], device: torch.device | str | None = None) -> Ragged:
        """Build from Python lists of ints (one list per row).

        Args:
            rows: a sequence of rows, each a sequence of ints (numpy integers and 0-d integer
                tensors are accepted; floats and bools are not: nothing is truncated).
            device: where the tensors go (default CPU).

        Raises:
            TypeError: if ``rows`` or one of its rows is not a sequence, or an entry is not an
                int.
            ValueError: if an entry does not fit in int64.

        Examples:
            >>> Ragged.from_lists([[1, 2], []]).tolist()
            [[1, 2], []]
        """
        values, offsets = _checked_lists(rows, "rows")
        return cls(values.to(device), offsets.to(device))

    @classmethod
    def from_lengths(cls, values: Tensor, lengths: Tensor) -> Ragged:
        """Build from flat ``values`` ``(m,)`` and per-row ``lengths`` ``(r,)`` (summing to ``m``).

        Args:
            values: ``(m,)`` integer tensor (cast to long; floats and bools are refused).
            lengths: ``(r,)`` integer tensor of non-negative row lengths summing to ``m``.

        Raises:
            TypeError: if ``values`` or ``lengths`` is not an integer tensor.
            ValueError: if either is not 1-D; with validation on, if a length is negative or
                the lengths do not sum to ``m``.

        Examples:
            >>> import torch
            >>> Ragged.from_lengths(torch.tensor([4, 5, 6]), torch.tensor([1, 0, 2])).tolist()
            [[4], [], [5, 6]]
        """
        check_ndim(values, 1, "values", "(m,)")
        check_integer(values, "values")
        check_ndim(lengths, 1, "lengths", "(r,)")
        check_integer(lengths, "lengths")
        lengths = lengths.to(values.device, torch.long)
        if validate_args_enabled() and lengths.numel():
            if int(lengths.min()) < 0:
                raise ValueError(f"lengths must be >= 0, got {lengths.tolist()}")
            total = int(lengths.sum())
            if total != values.numel():
                raise ValueError(f"lengths must sum to len(values) = {values.numel()}, got {total}")
        offsets = torch.zeros(lengths.numel() + 1, dtype=torch.long, device=values.device)
        offsets[1:] = lengths.cumsum(0)
        return cls(values.long(), offsets)

    @classmethod
    def from_padded(cls, padded: Tensor, pad: int = PADDING_ID) -> Ragged:
        """Build from a padded ``(r, w)`` tensor, dropping entries equal to ``pad`` (order kept).

        Reads the tensor (boolean-mask indexing): a builder, not for a training step.

        Raises:
            TypeError: if ``padded`` is not an integer tensor or ``pad`` not an int.
            ValueError: if ``padded`` is not 2-D.

        Examples:
            >>> import torch
            >>> Ragged.from_padded(torch.tensor([[0, 3, 4], [0, 0, 5]])).tolist()
            [[3, 4], [5]]
        """
        check_ndim(padded, 2, "padded", "(r, w)")
        check_integer(padded, "padded")
        fill = as_int(pad, "pad")
        keep = padded != fill
        return cls.from_lengths(padded[keep], keep.sum(1))

    # ---------------------------------------------------------------- properties
    @property
    def num_rows(self) -> int:
        """Number of rows ``r``."""
        return self.offsets.numel() - 1

    @property
    def lengths(self) -> Tensor:
        """``(r,)`` long, each row's length."""
        return self.offsets[1:] - self.offsets[:-1]

    @property
    def device(self) -> torch.device:
        """Where ``values`` and ``offsets`` live.

        Examples:
            >>> Ragged.from_lists([[1, 2], [3]]).device
            device(type='cpu')
        """
        return self.values.device

    def __len__(self) -> int:
        return self.num_rows

    def to(self, device: torch.device | str) -> Ragged:
        """The same rows on ``device``.

        Examples:
            >>> import torch
            >>> moved = Ragged.from_lists([[1, 2], [3]]).to(torch.device("cpu"))
            >>> moved.device, moved.tolist()
            (device(type='cpu'), [[1, 2], [3]])
        """
        return Ragged(self.values.to(device), self.offsets.to(device))

    def row(self, index: int) -> Tensor:
        """Row ``index`` as a 1-D tensor (a view of ``values``); one host read.

        Negative indices count from the end, as for a Python list (``row(-1)`` is the last
        row).

        Raises:
            TypeError: if ``index`` is not an int (bools and floats refused).
            RowIndexError: (an ``IndexError`` and a ``ValueError``) if ``index`` is outside
                ``[-r, r)``.

        Examples:
            >>> r = Ragged.from_lists([[1], [2, 3]])
            >>> r.row(1).tolist(), r.row(-1).tolist()
            ([2, 3], [2, 3])
        """
        i = as_int(index, "index")
        r = self.num_rows
        if not -r <= i < r:
            raise RowIndexError(f"index {i} is out of range for {r} rows (valid: -{r} .. {r - 1})")
        if i < 0:
            i += r
        start, stop = (int(v) for v in self.offsets[i : i + 2])
        return self.values[start:stop]

    def tolist(self) -> list[list[int]]:
        """Every row as a Python list.

        Examples:
            >>> import torch
            >>> Ragged.from_lengths(torch.tensor([5, 6, 7]), torch.tensor([2, 0, 1])).tolist()
            [[5, 6], [], [7]]
        """
        bounds = self.offsets.tolist()
        flat = self.values.tolist()
        return [flat[bounds[i] : bounds[i + 1]] for i in range(self.num_rows)]

    # ---------------------------------------------------------------- batched access
    def pad_rows(self, index: Tensor, width: int | None = None, pad: int = PADDING_ID) -> Tensor:
        """The rows ``index`` as a left-padded ``(len(index), w)`` tensor.

        With ``width`` given and validation off, nothing is read from the device.

        Args:
            index: ``(b,)`` integer row numbers in ``[0, r)`` (on this object's device; no
                negative indices here).
            width: ``w >= 0``; ``None`` takes the longest selected row (one host read). A
                shorter ``width`` keeps each row's last ``w`` entries.
            pad: the fill value.

        Returns:
            ``(b, w)`` long, each row right-aligned (left-padded), as the encoder expects.

        Raises:
            TypeError: if ``index`` is not an integer tensor, ``width`` not ``None`` or an int,
                or ``pad`` not an int.
            ValueError: if ``index`` is not 1-D or ``width < 0``; with validation on,
                :class:`RowIndexError` (a ``ValueError``) if an entry of ``index`` is outside
                ``[0, r)``.

        Examples:
            >>> import torch
            >>> r = Ragged.from_lists([[3, 1], [], [7, 7, 2]])
            >>> r.pad_rows(torch.tensor([0, 2]))
            tensor([[0, 3, 1],
                    [7, 7, 2]])
            >>> r.pad_rows(torch.tensor([2, 1]), width=2, pad=-1)  # the last 2 items of row 2
            tensor([[ 7,  2],
                    [-1, -1]])
        """
        check_ndim(index, 1, "index", "(b,)")
        check_integer(index, "index")
        if width is not None:
            width = check_int(width, "width", 0)
        pad = as_int(pad, "pad")
        if validate_args_enabled() and index.numel():
            lo, hi = (int(v) for v in torch.aminmax(index))
            if lo < 0 or hi >= self.num_rows:
                raise RowIndexError(
                    f"index must lie in [0, {self.num_rows - 1}] ({self.num_rows} rows), "
                    f"got values in [{lo}, {hi}]"
                )
        index = as_index(index)  # (a uint8 index would select as a boolean mask)
        starts = self.offsets[index]
        lengths = self.offsets[index + 1] - starts
        if width is None:
            width = int(lengths.max()) if index.numel() else 0
        cols = torch.arange(width, device=self.values.device)
        shift = width - lengths  # (b,) leading pads
        pos = cols.unsqueeze(0) - shift.unsqueeze(1)  # (b, w), < 0 in the padding
        valid = pos >= 0
        flat = (starts.unsqueeze(1) + pos.clamp(min=0)).clamp(max=max(self.values.numel() - 1, 0))
        if self.values.numel() == 0:
            return torch.full((index.numel(), width), pad, dtype=self.values.dtype, device=self.values.device)
        out = self.values[flat]
        return torch.where(valid, out, torch.full_like(out, pad))

    def flat_pairs(self, start: int, stop: int) -> tuple[Tensor, Tensor]:
        """Rows ``start..stop-1`` as flat ``(row - start, value)`` pairs, for scatters.

        Two host reads (the bounds of the slice of ``values``).

        Args:
            start: first row, ``0 <= start <= stop``.
            stop: one past the last row, ``stop <= r``.

        Returns:
            ``(rows, values)``, both ``(m',)`` long, ``rows`` counted from ``start``.

        Raises:
            TypeError: if ``start`` or ``stop`` is not an int.
            ValueError: if ``stop`` is outside ``[0, r]`` or ``start`` outside ``[0, stop]``.

        Examples:
            >>> rows, values = Ragged.from_lists([[1], [2, 3], [4]]).flat_pairs(1, 3)
            >>> rows.tolist(), values.tolist()
            ([0, 0, 1], [2, 3, 4])
        """
        start, stop = as_int(start, "start"), as_int(stop, "stop")
        if not 0 <= stop <= self.num_rows:
            raise ValueError(f"stop must lie in [0, num_rows] = [0, {self.num_rows}], got {stop}")
        if not 0 <= start <= stop:
            raise ValueError(f"start must lie in [0, stop] = [0, {stop}], got {start}")
        lo, hi = self.offsets[[start, stop]].tolist()
        lengths = self.offsets[start + 1 : stop + 1] - self.offsets[start:stop]
        rows = torch.repeat_interleave(
            torch.arange(stop - start, device=self.values.device), lengths, output_size=hi - lo
        )
        return rows, self.values[lo:hi]

    def sorted_keys(self, num_values: int) -> Tensor:
        """``(m,)`` sorted keys ``row * (num_values + 1) + value``, for :meth:`contains`.

        Compute once and pass to :meth:`contains` as ``keys`` to avoid re-sorting per call.

        Raises:
            TypeError: if ``num_values`` is not an int.
            ValueError: if ``num_values < 0``; with validation on, if a stored value lies
                outside ``[0, num_values]`` (its key would collide with another row's).

        Examples:
            >>> r = Ragged.from_lists([[3, 1], [2]])
            >>> r.sorted_keys(num_values=3).tolist()  # row * 4 + value: 0 * 4 + 3, 0 * 4 + 1, 1 * 4 + 2
            [1, 3, 6]
        """
        num_values = check_int(num_values, "num_values", 0)
        self._check_values_within(num_values)
        rows = torch.repeat_interleave(
            torch.arange(self.num_rows, device=self.values.device),
            self.lengths,
            output_size=self.values.numel(),
        )
        return (rows * (num_values + 1) + self.values).sort().values

    def _check_values_within(self, num_values: int) -> None:
        """A value check: keys ``row * (num_values + 1) + value`` are distinct per row only if
        every stored value lies in ``[0, num_values]``."""
        check_range(self.values, 0, num_values, f"the stored values (for num_values={num_values})")

    def contains(
        self, rows: Tensor, candidates: Tensor, *, keys: Tensor | None = None, num_values: int | None = None
    ) -> Tensor:
        """Whether ``candidates[i]`` occurs in row ``rows[i]``: batched, on the device, no host read.

        Args:
            rows: row numbers, any shape.
            candidates: values of the same shape as ``rows``, in ``[0, num_values]``.
            keys: the output of :meth:`sorted_keys` for the same ``num_values`` (computed
                here when ``None``).
            num_values: the largest possible value (default: the largest stored value, one
                host read).

        Returns:
            bool tensor of ``candidates``' shape.

        Raises:
            TypeError: if ``rows``, ``candidates`` or ``keys`` is not an integer tensor, or
                ``num_values`` not an int.
            ValueError: if ``rows`` and ``candidates`` differ in shape, ``keys`` is not 1-D or
                ``num_values < 0``; with validation on, if a row is outside ``[0, r)``, a
                candidate outside ``[0, num_values]`` or (when ``keys`` is computed here) a
                stored value outside ``[0, num_values]``.

        Examples:
            >>> import torch
            >>> r = Ragged.from_lists([[3, 1], [2]])
            >>> keys = r.sorted_keys(num_values=3)  # once, reused by every call
            >>> r.contains(torch.tensor([0, 0, 1]), torch.tensor([1, 2, 2]), keys=keys, num_values=3)
            tensor([ True, False,  True])
        """
        check_integer(check_tensor(rows, "rows"), "rows")
        check_integer(check_tensor(candidates, "candidates"), "candidates")
        if rows.shape != candidates.shape:
            raise ValueError(
                f"rows and candidates must have the same shape, got {tuple(rows.shape)} and "
                f"{tuple(candidates.shape)}"
            )
        if keys is not None:
            check_ndim(keys, 1, "keys", "(m,)")
            check_integer(keys, "keys")
        if num_values is not None:
            num_values = check_int(num_values, "num_values", 0)
        check_range(rows, 0, self.num_rows - 1, "rows")
        if self.values.numel() == 0:
            return torch.zeros_like(candidates, dtype=torch.bool)
        if num_values is None:
            num_values = int(self.values.max())
        check_range(candidates, 0, num_values, "candidates")
        if keys is None:
            keys = self.sorted_keys(num_values)
        query = rows.long() * (num_values + 1) + candidates.long()
        pos = torch.searchsorted(keys, query).clamp(max=keys.numel() - 1)
        return keys[pos] == query
