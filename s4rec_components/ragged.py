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

from ._validation import check_integer, check_ndim, validate_args_enabled
from .constants import PADDING_ID

__all__ = ["Ragged"]


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
        """Build from Python lists of ints (one list per row)."""
        lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
        flat = [int(v) for row in rows for v in row]
        values = torch.tensor(flat, dtype=torch.long)
        offsets = torch.zeros(len(rows) + 1, dtype=torch.long)
        offsets[1:] = lengths.cumsum(0)
        return cls(values.to(device), offsets.to(device))

    @classmethod
    def from_lengths(cls, values: Tensor, lengths: Tensor) -> Ragged:
        """Build from flat ``values`` ``(m,)`` and per-row ``lengths`` ``(r,)`` (summing to ``m``)."""
        offsets = torch.zeros(lengths.numel() + 1, dtype=torch.long, device=values.device)
        offsets[1:] = lengths.to(values.device, torch.long).cumsum(0)
        return cls(values.long(), offsets)

    @classmethod
    def from_padded(cls, padded: Tensor, pad: int = PADDING_ID) -> Ragged:
        """Build from a padded ``(r, w)`` tensor, dropping entries equal to ``pad`` (order kept)."""
        check_ndim(padded, 2, "padded", "(r, w)")
        keep = padded != pad
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
        return self.values.device

    def __len__(self) -> int:
        return self.num_rows

    def to(self, device: torch.device | str) -> Ragged:
        """The same rows on ``device``."""
        return Ragged(self.values.to(device), self.offsets.to(device))

    def row(self, index: int) -> Tensor:
        """Row ``index`` as a 1-D tensor (a view of ``values``)."""
        start, stop = int(self.offsets[index]), int(self.offsets[index + 1])
        return self.values[start:stop]

    def tolist(self) -> list[list[int]]:
        """Every row as a Python list."""
        bounds = self.offsets.tolist()
        flat = self.values.tolist()
        return [flat[bounds[i] : bounds[i + 1]] for i in range(self.num_rows)]

    # ---------------------------------------------------------------- batched access
    def pad_rows(self, index: Tensor, width: int | None = None, pad: int = PADDING_ID) -> Tensor:
        """The rows ``index`` as a left-padded ``(len(index), w)`` tensor.

        Args:
            index: ``(b,)`` long row numbers (on this object's device).
            width: ``w``; ``None`` takes the longest selected row (one host read). A shorter
                ``width`` keeps each row's last ``w`` entries.
            pad: the fill value.

        Returns:
            ``(b, w)`` long, each row right-aligned (left-padded), as the encoder expects.
        """
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

        Returns:
            ``(rows, values)``, both ``(m',)`` long, ``rows`` counted from ``start``.
        """
        lo, hi = int(self.offsets[start]), int(self.offsets[stop])
        lengths = self.offsets[start + 1 : stop + 1] - self.offsets[start:stop]
        rows = torch.repeat_interleave(torch.arange(stop - start, device=self.values.device), lengths)
        return rows, self.values[lo:hi]

    def sorted_keys(self, num_values: int) -> Tensor:
        """``(m,)`` sorted keys ``row * (num_values + 1) + value``, for :meth:`contains`.

        Compute once and pass to :meth:`contains` as ``keys`` to avoid re-sorting per call.
        """
        rows = torch.repeat_interleave(torch.arange(self.num_rows, device=self.values.device), self.lengths)
        return (rows * (num_values + 1) + self.values).sort().values

    def contains(
        self, rows: Tensor, candidates: Tensor, *, keys: Tensor | None = None, num_values: int | None = None
    ) -> Tensor:
        """Whether ``candidates[i]`` occurs in row ``rows[i]``: batched, on the device, no host read.

        Args:
            rows: row numbers, any shape.
            candidates: values of the same shape as ``rows``, in ``[0, num_values]``.
            keys: the output of :meth:`sorted_keys` (computed here when ``None``).
            num_values: the largest possible value (default: the largest stored value, one
                host read).

        Returns:
            bool tensor of ``candidates``' shape.
        """
        if self.values.numel() == 0:
            return torch.zeros_like(candidates, dtype=torch.bool)
        if num_values is None:
            num_values = int(self.values.max())
        if keys is None:
            keys = self.sorted_keys(num_values)
        query = rows.long() * (num_values + 1) + candidates.long()
        pos = torch.searchsorted(keys, query).clamp(max=keys.numel() - 1)
        return keys[pos] == query
