"""Ragged CSR rows (s4rec_components/ragged.py) against plain-list references."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given
from test_contrastive import count_host_reads

import s4rec_components
from s4rec_components import Ragged, set_validate_args
from s4rec_components.ragged import RowIndexError

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


# ---------------------------------------------------------------- G-4: bad inputs name the argument


def test_builders_refuse_non_integers_instead_of_truncating():
    with pytest.raises(TypeError, match="values must be an integer tensor"):
        Ragged.from_lengths(torch.tensor([1.5]), torch.tensor([1]))
    with pytest.raises(TypeError, match="values must be an integer tensor"):
        Ragged.from_lengths(torch.tensor([True]), torch.tensor([1]))
    with pytest.raises(TypeError, match="lengths must be an integer tensor"):
        Ragged.from_lengths(torch.tensor([1]), torch.tensor([1.0]))
    with pytest.raises(TypeError, match="values must be a torch.Tensor, got list"):
        Ragged.from_lengths([1, 2], torch.tensor([2]))
    for rows in ([[1.5]], [[True]], [[1], [2.0]], [[torch.tensor(1.0)]]):
        with pytest.raises(TypeError, match=r"rows\[\d\] entries must be an int"):
            Ragged.from_lists(rows)
    for rows in (5, "12", None, [1, 2], [[1], "2"]):
        with pytest.raises(TypeError, match="rows"):
            Ragged.from_lists(rows)
    with pytest.raises(ValueError, match="must fit in int64"):
        Ragged.from_lists([[2**63]])
    with pytest.raises(TypeError, match="padded must be an integer tensor"):
        Ragged.from_padded(torch.tensor([[0.0, 1.5]]))
    with pytest.raises(TypeError, match="pad must be an int"):
        Ragged.from_padded(torch.tensor([[0, 1]]), pad=0.5)
    # int-likes that are exact are fine
    assert Ragged.from_lists([[torch.tensor(3), 4]]).tolist() == [[3, 4]]
    assert Ragged.from_lists((torch.tensor([1, 2]), [])).tolist() == [[1, 2], []]


def test_from_lengths_value_checks_only_while_validating():
    values = torch.tensor([1, 2, 3])
    with pytest.raises(ValueError, match=r"lengths must sum to len\(values\) = 3, got 2"):
        Ragged.from_lengths(values, torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="lengths must be >= 0"):
        Ragged.from_lengths(values, torch.tensor([4, -1]))
    with pytest.raises(ValueError, match=r"lengths must have shape \(r,\)"):
        Ragged.from_lengths(values, torch.tensor([[3]]))
    with pytest.raises(ValueError, match=r"values must have shape \(m,\)"):
        Ragged.from_lengths(values[None], torch.tensor([3]))
    set_validate_args(False)
    try:  # not checked (no host read): the caller vouches for the lengths
        Ragged.from_lengths(values, torch.tensor([1, 1]))
    finally:
        set_validate_args(True)


@given(rows=rows_strategy, data=st.data())
def test_row_takes_python_indices(rows, data):
    r = Ragged.from_lists(rows)
    index = data.draw(st.integers(-len(rows), len(rows) - 1))
    assert r.row(index).tolist() == rows[index]


def test_row_errors_name_index_and_row_count():
    r = Ragged.from_lists([[1], [2]])
    assert r.row(-1).tolist() == [2] and r.row(-2).tolist() == [1]
    for index in (2, 5, -3):
        with pytest.raises(IndexError, match=rf"index {index} is out of range for 2 rows"):
            r.row(index)
    with pytest.raises(ValueError, match="index 5 is out of range"):  # also a ValueError
        r.row(5)
    assert issubclass(RowIndexError, IndexError) and issubclass(RowIndexError, ValueError)
    assert s4rec_components.RowIndexError is RowIndexError  # catchable from the top-level package
    for index in (1.0, True, "0", None):
        with pytest.raises(TypeError, match="index must be an int"):
            r.row(index)  # type: ignore[arg-type]
    with pytest.raises(IndexError, match="for 0 rows"):
        Ragged.from_lists([]).row(0)


def test_pad_rows_errors():
    r = Ragged.from_lists([[1], [2, 3]])
    with pytest.raises(IndexError, match=r"index must lie in \[0, 1\] \(2 rows\), got values in \[3, 3\]"):
        r.pad_rows(torch.tensor([3]))
    with pytest.raises(ValueError, match=r"index must lie in \[0, 1\]"):
        r.pad_rows(torch.tensor([0, -1]))
    with pytest.raises(ValueError, match=r"index must have shape \(b,\)"):
        r.pad_rows(torch.tensor([[0]]))
    with pytest.raises(TypeError, match="index must be an integer tensor"):
        r.pad_rows(torch.tensor([0.0]))
    with pytest.raises(TypeError, match="index must be a torch.Tensor"):
        r.pad_rows([0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="width must be >= 0, got -1"):
        r.pad_rows(torch.tensor([0]), -1)
    with pytest.raises(TypeError, match="width must be an int"):
        r.pad_rows(torch.tensor([0]), 2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="pad must be an int"):
        r.pad_rows(torch.tensor([0]), 2, pad=0.5)  # type: ignore[arg-type]
    assert r.pad_rows(torch.tensor([1, 0], dtype=torch.int32), 3).tolist() == [[0, 2, 3], [0, 0, 1]]


def test_flat_pairs_errors():
    r = Ragged.from_lists([[1], [2, 3]])
    with pytest.raises(ValueError, match=r"start must lie in \[0, stop\] = \[0, 1\], got 2"):
        r.flat_pairs(2, 1)
    with pytest.raises(ValueError, match=r"stop must lie in \[0, num_rows\] = \[0, 2\], got 9"):
        r.flat_pairs(0, 9)
    with pytest.raises(ValueError, match="start must lie"):
        r.flat_pairs(-1, 1)
    with pytest.raises(ValueError, match="stop must lie"):
        r.flat_pairs(0, -1)
    with pytest.raises(TypeError, match="start must be an int"):
        r.flat_pairs(0.0, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="stop must be an int"):
        r.flat_pairs(0, None)  # type: ignore[arg-type]


def test_contains_and_sorted_keys_errors():
    r = Ragged.from_lists([[1], [2, 3]])
    with pytest.raises(ValueError, match=r"rows must lie in \[0, 1\], got values in \[5, 5\]"):
        r.contains(torch.tensor([5]), torch.tensor([1]))
    with pytest.raises(ValueError, match=r"candidates must lie in \[0, 3\]"):
        r.contains(torch.tensor([1]), torch.tensor([4]), num_values=3)
    with pytest.raises(ValueError, match=r"candidates must lie in \[0, 3\]"):  # default: max value
        r.contains(torch.tensor([0]), torch.tensor([4]))
    with pytest.raises(ValueError, match="rows and candidates must have the same shape"):
        r.contains(torch.tensor([0, 1]), torch.tensor([1]))
    with pytest.raises(TypeError, match="candidates must be an integer tensor"):
        r.contains(torch.tensor([0]), torch.tensor([1.0]))
    with pytest.raises(TypeError, match="rows must be a torch.Tensor"):
        r.contains([0], torch.tensor([1]))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="num_values must be an int"):
        r.contains(torch.tensor([0]), torch.tensor([1]), num_values=3.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_values must be >= 0"):
        r.sorted_keys(-1)
    set_validate_args(False)
    try:  # value checks off: out-of-range rows are the caller's responsibility
        assert r.contains(torch.tensor([5]), torch.tensor([1])).tolist() == [False]
    finally:
        set_validate_args(True)


def test_pad_rows_and_contains_read_nothing_with_validation_off():
    r = Ragged.from_lists([[1], [2, 3], []])
    index = torch.tensor([1, 2, 0])
    keys = r.sorted_keys(5)
    set_validate_args(False)
    try:
        with count_host_reads() as seen:
            r.pad_rows(index, 2)
            r.contains(index, torch.tensor([3, 1, 1]), keys=keys, num_values=5)
    finally:
        set_validate_args(True)
    assert seen == []
    with count_host_reads() as seen_on:  # and the value checks do read while validating
        r.pad_rows(index, 2)
    assert seen_on
