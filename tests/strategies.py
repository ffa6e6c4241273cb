"""Shared, bounded hypothesis strategies, named for the shapes they draw.

Letter legend as in the docstrings: b batch, l sequence length, d hidden size,
k prototypes, n items. Draw the dimensions first, then the data.
"""

from __future__ import annotations

import hypothesis.strategies as st
import torch
from hypothesis import settings

# Property tests run with no deadline (torch's first call is slow) and a modest budget.
settings.register_profile("s4rec", deadline=None, max_examples=40)
settings.load_profile("s4rec")

batch_sizes = st.integers(min_value=1, max_value=16)
seq_lens = st.integers(min_value=1, max_value=12)
hidden_sizes = st.integers(min_value=1, max_value=16)
num_prototypes = st.integers(min_value=1, max_value=12)
num_items = st.integers(min_value=1, max_value=40)
seeds = st.integers(min_value=0, max_value=2**31 - 1)
temperatures = st.floats(min_value=0.05, max_value=5.0)


@st.composite
def float_tensors(draw, shape, low: float = -3.0, high: float = 3.0, dtype=torch.float64):
    """A tensor of the given shape with entries drawn uniformly in [low, high] from a drawn seed."""
    g = torch.Generator().manual_seed(draw(seeds))
    return torch.rand(shape, generator=g, dtype=dtype) * (high - low) + low


@st.composite
def left_padded_sequences(draw, max_batch: int = 16, max_len: int = 12, max_items: int = 40):
    """``(ids, num_items)``: a ``(b, l)`` long tensor of item ids in ``1..n``, left-padded with 0.

    Every row keeps at least one real item; lengths vary per row.
    """
    b = draw(st.integers(1, max_batch))
    l = draw(st.integers(1, max_len))
    n = draw(st.integers(1, max_items))
    g = torch.Generator().manual_seed(draw(seeds))
    ids = torch.randint(1, n + 1, (b, l), generator=g)
    lengths = torch.randint(1, l + 1, (b,), generator=g)
    positions = torch.arange(l).expand(b, l)
    ids[positions < (l - lengths).unsqueeze(1)] = 0
    return ids, n
