"""Ragged CSR rows (s4rec_components/ragged.py) against plain-list references."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given

from s4rec_components import Ragged, set_validate_args

rows_strategy = st.lists(st.lists(st.integers(0, 20), max_size=8), min_size=1, max_size=8)


def reference_pad(row: list[int], width: int, pad: int) -> list[int]:
    tail = row[len(row) - width :] if width < len(row) else row
    return [pad] * (width - len(tail)) + tail


@given(rows=rows_strategy)
def test_from_lists_round_trips_and_lengths(rows):
    r = Ragged.from_lists(rows)
    assert r.tolist() == rows and r.num_rows == len(rows) == len(r)
    assert r.lengths.tolist() == [len(x) for x in rows]
    assert [r.row(i).tolist() for i in range(len(rows))] == rows
    lengths = torch.tensor([len(x) for x in rows])
    assert Ragged.from_lengths(r.values, lengths).tolist() == rows


@given(rows=rows_strategy, data=st.data())
def test_pad_rows_matches_reference(rows, data):
    r = Ragged.from_lists(rows)
    index = data.draw(st.lists(st.integers(0, len(rows) - 1), max_size=6))
    width = data.draw(st.one_of(st.none(), st.integers(0, 10)))
    pad = data.draw(st.integers(-1, 0))
    got = r.pad_rows(torch.tensor(index, dtype=torch.long), width, pad)
    w = width if width is not None else max((len(rows[i]) for i in index), default=0)
    assert got.shape == (len(index), w)
    assert got.tolist() == [reference_pad(rows[i], w, pad) for i in index]


@given(rows=rows_strategy)
def test_from_padded_drops_padding(rows):
    width = max(map(len, rows))
    padded = torch.tensor([reference_pad(x, width, 0) for x in rows], dtype=torch.long).reshape(len(rows), width)
    assert Ragged.from_padded(padded).tolist() == [[v for v in x if v != 0] for x in rows]


@given(rows=rows_strategy, data=st.data())
def test_flat_pairs_matches_reference(rows, data):
    r = Ragged.from_lists(rows)
    start = data.draw(st.integers(0, len(rows)))
    stop = data.draw(st.integers(start, len(rows)))
    row_ids, values = r.flat_pairs(start, stop)
    expected = [(i - start, v) for i in range(start, stop) for v in rows[i]]
    assert list(zip(row_ids.tolist(), values.tolist())) == expected


@given(rows=rows_strategy, data=st.data())
def test_contains_matches_reference(rows, data):
    r = Ragged.from_lists(rows)
    queries = data.draw(st.lists(st.tuples(st.integers(0, len(rows) - 1), st.integers(0, 20)), max_size=12))
    row_ids = torch.tensor([q[0] for q in queries], dtype=torch.long)
    candidates = torch.tensor([q[1] for q in queries], dtype=torch.long)
    expected = [c in rows[i] for i, c in queries]
    assert r.contains(row_ids, candidates, num_values=20).tolist() == expected
    keys = r.sorted_keys(20)
    assert r.contains(row_ids, candidates, keys=keys, num_values=20).tolist() == expected
    if r.values.numel():
        assert r.contains(row_ids, candidates.clamp(max=int(r.values.max()))).tolist() == [
            min(c, int(r.values.max())) in rows[i] for i, c in queries
        ]


def test_to_keeps_rows():
    r = Ragged.from_lists([[1, 2], [], [3]])
    moved = r.to("cpu")
    assert moved.tolist() == r.tolist() and moved.device == torch.device("cpu")


def test_construction_errors():
    with pytest.raises(ValueError, match="offsets must start at 0 and end at len"):
        Ragged(torch.tensor([1, 2]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="non-decreasing"):
        Ragged(torch.tensor([1, 2]), torch.tensor([0, 2, 1, 2]))
    with pytest.raises(TypeError, match="values must be an integer tensor"):
        Ragged(torch.tensor([1.0]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="at least one entry"):
        Ragged(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long))
    set_validate_args(False)
    try:  # value checks are skipped while validation is off; structure is still checked
        Ragged(torch.tensor([1, 2]), torch.tensor([0, 1]))
        with pytest.raises(ValueError, match="must have shape"):
            Ragged(torch.tensor([[1, 2]]), torch.tensor([0, 2]))
    finally:
        set_validate_args(True)
