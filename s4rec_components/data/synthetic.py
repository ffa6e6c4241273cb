r"""A synthetic dataset with latent intents, sequential structure and a long tail of lengths.

For tests and quick runs without downloads; deterministic for a given ``seed``.

Examples:
    >>> from s4rec_components.data import generate_synthetic
    >>> data = generate_synthetic(num_users=10, num_items=20, num_intents=2, seed=0)
    >>> data.name, len(data), data.num_items
    ('synthetic', 10, 20)
"""

from __future__ import annotations

import math

import torch

from .._validation import check_int, check_probability, check_real
from .dataset import MIN_SEQUENCE_LENGTH, SequenceDataset

__all__ = ["generate_synthetic"]

_SEED_MIN, _SEED_MAX = -(2**63), 2**64 - 1  # the range torch.Generator.manual_seed accepts


def generate_synthetic(
    *,
    num_users: int = 3000,
    num_items: int = 500,
    num_intents: int = 8,
    seed: int = 0,
    min_length: int = 5,
    max_length: int = 60,
    mean_extra_length: float = 6.0,
    follow_prob: float = 0.6,
    second_intent_prob: float = 0.5,
    switch_prob: float = 0.3,
    popularity_skew: float = 2.0,
) -> SequenceDataset:
    r"""A dataset with latent intents, sequential structure and a long tail of sequence lengths.

    The items ``1..num_items`` are cut into ``num_intents`` contiguous blocks, one per intent. A
    user has a main intent and, with probability ``second_intent_prob``, a second one. At every
    step the user picks the second intent with probability ``switch_prob`` (else the main one);
    if it is the intent of the previous step, then with probability ``follow_prob`` the next item is
    the successor of the previous item inside the block (a cycle, so next-item prediction is
    learnable); otherwise an item of the block is drawn with popularity skewed to the block's
    first items (rank $\lfloor B v^{\gamma} \rfloor$, $v \sim U(0, 1)$,
    $\gamma$ = ``popularity_skew``).

    Lengths are $T = T_{min} + G$ with $G$ geometric of mean ``mean_extra_length``,
    truncated so that $T \le T_{max}$: most users are short (tail users), a few are long
    (head users). Everything is drawn from one ``torch.Generator`` seeded with ``seed``, so the
    result is deterministic; users are simulated together, one step at a time.

    Args:
        num_users: $u$, >= 1.
        num_items: $n$, >= ``num_intents``; ``dataset.num_items`` equals it.
        num_intents: $k$, number of item blocks, >= 1.
        seed: random seed (any int ``torch.Generator.manual_seed`` accepts).
        min_length: shortest sequence, >= 3.
        max_length: longest sequence, >= ``min_length``.
        mean_extra_length: mean of the untruncated geometric part, finite and > 0.
        follow_prob: chance of the sequential successor move, in [0, 1].
        second_intent_prob: chance a user mixes two intents, in [0, 1].
        switch_prob: per-step chance of using the second intent, in [0, 1].
        popularity_skew: $\gamma \ge 1$, finite; larger is more skewed.

    Returns:
        A ``SequenceDataset`` named ``"synthetic"`` (``item_ids`` is ``None``).

    Raises:
        TypeError: for a count that is not an ``int`` (``bool`` included) or a real argument
            that is not a real number (``bool`` and ``str`` included).
        ValueError: for out-of-range or non-finite arguments.

    Examples:
        >>> from s4rec_components import generate_synthetic
        >>> data = generate_synthetic(num_users=100, num_items=50, num_intents=4, seed=1)
        >>> len(data), data.num_items, int(data.lengths.min()) >= 5
        (100, 50, True)
    """
    u = check_int(num_users, "num_users", 1)
    k = check_int(num_intents, "num_intents", 1)
    n = check_int(num_items, "num_items", k)
    seed = check_int(seed, "seed", _SEED_MIN, _SEED_MAX)
    min_length = check_int(min_length, "min_length", MIN_SEQUENCE_LENGTH)
    max_length = check_int(max_length, "max_length", min_length)
    mean_extra_length = check_real(mean_extra_length, "mean_extra_length", low=0.0, low_open=True)
    follow_prob = check_probability(follow_prob, "follow_prob")
    second_intent_prob = check_probability(second_intent_prob, "second_intent_prob")
    switch_prob = check_probability(switch_prob, "switch_prob")
    popularity_skew = check_real(popularity_skew, "popularity_skew", low=1.0)

    g = torch.Generator().manual_seed(seed)
    # blocks: intent c owns items block_start[c] .. block_start[c] + block_size[c] - 1
    bounds = torch.div(torch.arange(k + 1) * n, k, rounding_mode="floor")
    block_start, block_size = bounds[:-1] + 1, bounds[1:] - bounds[:-1]

    # truncated geometric lengths by inverse CDF
    stop = 1.0 / (1.0 + mean_extra_length)  # success probability of the geometric
    span = max_length - min_length + 1
    top = 1.0 - (1.0 - stop) ** span
    v = torch.rand(u, generator=g, dtype=torch.float64) * top
    extra = torch.floor(torch.log1p(-v) / math.log1p(-stop)).long().clamp(0, span - 1)
    lengths = min_length + extra
    longest = int(lengths.max())

    main = torch.randint(0, k, (u,), generator=g)
    other = torch.randint(0, k, (u,), generator=g)
    two = torch.rand(u, generator=g) < second_intent_prob
    other = torch.where(two, other, main)

    out = torch.zeros(u, longest, dtype=torch.long)
    prev_item = torch.zeros(u, dtype=torch.long)
    prev_intent = torch.full((u,), -1, dtype=torch.long)
    for t in range(longest):  # loop over time steps; users are vectorised
        intent = torch.where(torch.rand(u, generator=g) < switch_prob, other, main)
        start, size = block_start[intent], block_size[intent]
        rank = torch.floor(size * torch.rand(u, generator=g) ** popularity_skew).long().clamp_max(size - 1)
        drawn = start + rank
        successor = start + (prev_item - start + 1) % size
        follow = (intent == prev_intent) & (torch.rand(u, generator=g) < follow_prob)
        item = torch.where(follow, successor, drawn)
        out[:, t] = item
        prev_item, prev_intent = item, intent

    keep = torch.arange(longest).unsqueeze(0) < lengths.unsqueeze(1)
    offsets = torch.zeros(u + 1, dtype=torch.long)
    torch.cumsum(lengths, 0, out=offsets[1:])
    return SequenceDataset(out[keep], offsets, num_items=n, name="synthetic")
