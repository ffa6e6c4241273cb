"""Shared, bounded hypothesis strategies, named for the shapes they draw.

Letter legend as in the docstrings: b batch, l sequence length, d hidden size,
k prototypes, n items. Draw the dimensions first, then the data.

Every tensor VALUE is drawn by hypothesis (``hypothesis.extra.numpy`` arrays turned into
tensors), never sampled by torch from a drawn seed, so hypothesis can shrink a failing
case towards small, simple numbers. The profiles (``default`` and ``ci``) are registered in
``conftest.py``; select one with ``pytest --hypothesis-profile=ci``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import torch
from hypothesis import settings

batch_sizes = st.integers(min_value=1, max_value=16)
seq_lens = st.integers(min_value=1, max_value=12)
hidden_sizes = st.integers(min_value=1, max_value=16)
num_prototypes = st.integers(min_value=1, max_value=12)
num_items = st.integers(min_value=1, max_value=40)
seeds = st.integers(min_value=0, max_value=2**31 - 1)
"""Seeds for torch generators passed to the code under test (e.g. augmentations); test
data itself is drawn with the value strategies below."""
temperatures = st.floats(min_value=0.05, max_value=5.0)

_NUMPY_DTYPES: dict[torch.dtype, Any] = {
    torch.float64: np.float64,
    torch.float32: np.float32,
    torch.float16: np.float16,
}


def examples(count: int) -> int:
    """``count`` scaled by the loaded profile: as written under ``default`` (40 examples),
    five times more under ``ci`` (200), for tests that set their own ``max_examples``."""
    return max(1, count * settings.default.max_examples // 40)


@st.composite
def float_tensors(
    draw: st.DrawFn,
    shape: Sequence[int],
    low: float = -3.0,
    high: float = 3.0,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """A tensor of the given shape whose entries hypothesis draws from ``[low, high]``.

    ``bfloat16`` is drawn in float32 and rounded. Shrinks towards zeros.
    """
    np_dtype = _NUMPY_DTYPES.get(dtype, np.float32)
    width = {np.float64: 64, np.float32: 32, np.float16: 16}[np_dtype]
    elements = st.floats(
        min_value=low, max_value=high, allow_nan=False, allow_infinity=False, width=width
    )
    array = draw(hnp.arrays(np_dtype, tuple(shape), elements=elements))
    return torch.from_numpy(np.ascontiguousarray(array)).to(dtype)


@st.composite
def long_tensors(draw: st.DrawFn, shape: Sequence[int], low: int, high: int) -> torch.Tensor:
    """A ``torch.long`` tensor of the given shape with entries drawn from ``[low, high]``."""
    array = draw(hnp.arrays(np.int64, tuple(shape), elements=st.integers(low, high)))
    return torch.from_numpy(np.ascontiguousarray(array))


@st.composite
def permutations(draw: st.DrawFn, size: int) -> torch.Tensor:
    """A ``(size,)`` long permutation of ``0..size-1`` drawn by hypothesis (shrinks to identity)."""
    return torch.tensor(draw(st.permutations(range(size))), dtype=torch.long)


@st.composite
def matrices(
    draw: st.DrawFn,
    rows: st.SearchStrategy[int] = batch_sizes,
    cols: st.SearchStrategy[int] = hidden_sizes,
    low: float = -3.0,
    high: float = 3.0,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """A ``(b, d)`` tensor: the dimensions first, then the values."""
    return draw(float_tensors((draw(rows), draw(cols)), low=low, high=high, dtype=dtype))


@st.composite
def left_padded_sequences(
    draw: st.DrawFn, max_batch: int = 16, max_len: int = 12, max_items: int = 40
) -> tuple[torch.Tensor, int]:
    """``(ids, num_items)``: a ``(b, l)`` long tensor of item ids in ``1..n``, left-padded with 0.

    Every row keeps at least one real item; lengths vary per row. Ids and lengths are drawn
    by hypothesis (they shrink to id 1 and full rows).
    """
    b = draw(st.integers(1, max_batch))
    l = draw(st.integers(1, max_len))  # noqa: E741 (the shape legend's letter)
    n = draw(st.integers(1, max_items))
    ids = draw(long_tensors((b, l), 1, n))
    lengths = torch.tensor(draw(st.lists(st.integers(1, l), min_size=b, max_size=b)))
    positions = torch.arange(l).expand(b, l)
    ids[positions < (l - lengths).unsqueeze(1)] = 0
    return ids, n
