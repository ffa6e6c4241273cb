"""Synthetic data (s4rec_components/data/synthetic.py)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from strategies import seeds

from s4rec_components import generate_synthetic


def test_synthetic_is_deterministic_and_well_formed():
    a = generate_synthetic(num_users=400, num_items=80, num_intents=4, seed=5)
    b = generate_synthetic(num_users=400, num_items=80, num_intents=4, seed=5)
    c = generate_synthetic(num_users=400, num_items=80, num_intents=4, seed=6)
    assert torch.equal(a.items, b.items) and torch.equal(a.offsets, b.offsets)
    assert not (a.items.shape == c.items.shape and torch.equal(a.items, c.items))
    assert a.num_items == 80 and len(a) == 400 and a.item_ids is None and a.name == "synthetic"
    assert int(a.items.min()) >= 1 and int(a.items.max()) <= 80
    assert int(a.lengths.min()) >= 5 and int(a.lengths.max()) <= 60
    # long tail: mostly short users, some much longer ones
    assert float(a.lengths.float().median()) < 12 and int(a.lengths.max()) >= 25


def test_synthetic_lengths_respect_their_bounds():
    data = generate_synthetic(num_users=300, num_items=10, num_intents=2, min_length=3, max_length=4)
    assert set(data.lengths.tolist()) == {3, 4}


@given(seed=seeds)
@settings(max_examples=10)
def test_synthetic_has_learnable_sequential_structure(seed):
    data = generate_synthetic(num_users=200, num_items=64, num_intents=4, seed=seed)
    size = 64 // 4
    pairs = 0
    follows = 0
    for u in range(len(data)):
        s = data.sequence(u)
        prev, nxt = s[:-1] - 1, s[1:] - 1
        successor = (prev // size) * size + (prev % size + 1) % size
        follows += int((nxt == successor).sum())
        pairs += prev.numel()
    # uniform guessing would give ~1/64; the Markov move happens about 0.6 * 0.7 of the time
    assert follows / pairs > 0.25


def test_synthetic_without_follow_moves_has_no_extra_structure():
    data = generate_synthetic(num_users=300, num_items=64, num_intents=4, follow_prob=0.0, popularity_skew=1.0)
    size = 16
    s = data.items
    starts = data.offsets[:-1]
    prev, nxt = s[:-1] - 1, s[1:] - 1
    boundary = torch.zeros_like(prev, dtype=torch.bool)
    boundary[(starts[1:] - 1)] = True  # pairs that cross users
    successor = (prev // size) * size + (prev % size + 1) % size
    share = float(((nxt == successor) & ~boundary).sum()) / float((~boundary).sum())
    assert share < 0.15  # about 1/16 within a block


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"num_items": 3, "num_intents": 4}, ValueError, "num_items must be >= 4"),
        ({"min_length": 2}, ValueError, "min_length must be >= 3"),
        ({"min_length": 10, "max_length": 9}, ValueError, "max_length must be >= 10"),
        ({"follow_prob": 1.5}, ValueError, r"follow_prob must lie in \[0, 1\]"),
        ({"switch_prob": math.nan}, ValueError, "switch_prob must be finite"),
        ({"second_intent_prob": "0.5"}, TypeError, "second_intent_prob must be a real number, got str"),
        ({"num_users": 0}, ValueError, "num_users must be >= 1"),
        ({"num_users": True}, TypeError, "num_users must be an int, got bool"),
        ({"num_items": "500"}, TypeError, "num_items must be an int, got str"),
        ({"num_intents": 2.0}, TypeError, "num_intents must be an int, got float"),
        ({"seed": False}, TypeError, "seed must be an int, got bool"),
        ({"seed": 2**64}, ValueError, "seed must be <= 18446744073709551615"),
        ({"mean_extra_length": 0.0}, ValueError, r"mean_extra_length must lie in \(0, inf\)"),
        ({"mean_extra_length": math.inf}, ValueError, "mean_extra_length must be finite"),
        ({"mean_extra_length": True}, TypeError, "mean_extra_length must be a real number, got bool"),
        ({"popularity_skew": 0.5}, ValueError, r"popularity_skew must lie in \[1, inf\)"),
        ({"popularity_skew": math.nan}, ValueError, "popularity_skew must be finite"),
    ],
)
def test_synthetic_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        generate_synthetic(**kwargs)


def test_synthetic_arguments_are_keyword_only():
    with pytest.raises(TypeError, match="positional"):
        generate_synthetic(100)  # type: ignore[misc]
