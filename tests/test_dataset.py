"""SequenceDataset and the leave-one-out split (s4rec_components/data/dataset.py)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import textwrap

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given

from s4rec_components import LeaveOneOutSplit, Ragged, SequenceDataset
from s4rec_components.data import MIN_SEQUENCE_LENGTH


# ---------------------------------------------------------------------------- reference split
def left_pad(seq: list[int], width: int) -> list[int]:
    """The last ``width`` items of ``seq``, left-padded with 0 (written out by hand)."""
    tail = seq[-width:] if seq else []
    return [0] * (width - len(tail)) + tail


def reference_split(sequences: list[list[int]], max_len: int) -> dict[str, list]:
    """Leave-one-out fields transcribed from the definitions, one user at a time."""
    out: dict[str, list] = {k: [] for k in (
        "train_inputs", "train_targets", "valid_inputs", "valid_targets", "test_inputs",
        "test_targets", "valid_history", "test_history", "user_items", "lengths")}
    for s in sequences:
        train = s[:-2]
        inputs, targets = train[:-1], train[1:]
        out["train_inputs"].append(left_pad(inputs, max_len))
        padded_targets = left_pad(targets, max_len)
        # 0 where the input is padding
        padded_targets = [t if i != 0 else 0 for i, t in zip(left_pad(inputs, max_len), padded_targets)]
        out["train_targets"].append(padded_targets)
        out["valid_inputs"].append(left_pad(s[:-2], max_len))
        out["valid_targets"].append(s[-2])
        out["test_inputs"].append(left_pad(s[:-1], max_len))
        out["test_targets"].append(s[-1])
        out["valid_history"].append(s[:-2])
        out["test_history"].append(s[:-1])
        out["user_items"].append(list(s))
        out["lengths"].append(len(s))
    return out


def assert_split_matches(split: LeaveOneOutSplit, sequences: list[list[int]], max_len: int) -> None:
    expected = reference_split(sequences, max_len)
    for name, value in expected.items():
        got = getattr(split, name)
        if name in ("valid_history", "test_history", "user_items"):
            assert isinstance(got, Ragged), name
            assert got.values.dtype == torch.long and got.offsets.dtype == torch.long, name
        else:
            assert got.dtype == torch.long, name
        assert got.tolist() == value, name
    assert split.max_len == max_len
    assert split.train_lengths.tolist() == [len(s) - 2 for s in sequences]


@st.composite
def sequence_lists(draw, max_users: int = 8, max_length: int = 15, max_items: int = 30):
    """Lists of item-id lists, every one with >= 3 ids in ``1..n``; shrinks to short, small lists."""
    n = draw(st.integers(1, max_items))
    row = st.lists(st.integers(1, n), min_size=MIN_SEQUENCE_LENGTH, max_size=max_length)
    return draw(st.lists(row, min_size=1, max_size=max_users))


# ---------------------------------------------------------------------------- split
def test_split_hand_made_lengths_three_four_and_long():
    sequences = [[7, 8, 9], [1, 2, 3, 4], list(range(1, 12))]  # 3, 4 and 11 > max_len items
    split = SequenceDataset.from_sequences(sequences).split(max_len=4)
    assert split.train_inputs.tolist() == [[0, 0, 0, 0], [0, 0, 0, 1], [5, 6, 7, 8]]
    assert split.train_targets.tolist() == [[0, 0, 0, 0], [0, 0, 0, 2], [6, 7, 8, 9]]
    assert split.valid_inputs.tolist() == [[0, 0, 0, 7], [0, 0, 1, 2], [6, 7, 8, 9]]
    assert split.valid_targets.tolist() == [8, 3, 10]
    assert split.test_inputs.tolist() == [[0, 0, 7, 8], [0, 1, 2, 3], [7, 8, 9, 10]]
    assert split.test_targets.tolist() == [9, 4, 11]
    # histories are never truncated, and ragged: 1 + 2 + 9 and 2 + 3 + 10 values
    assert split.valid_history.tolist() == [[7], [1, 2], list(range(1, 10))]
    assert split.valid_history.offsets.tolist() == [0, 1, 3, 12]
    assert split.test_history.tolist() == [[7, 8], [1, 2, 3], list(range(1, 11))]
    assert split.user_items.tolist() == sequences
    # padded per batch only when asked: the evaluation's view of two users
    assert split.test_history.pad_rows(torch.tensor([0, 1])).tolist() == [[0, 7, 8], [1, 2, 3]]
    assert split.lengths.tolist() == [3, 4, 11]
    assert split.train_lengths.tolist() == [1, 2, 9]
    assert split.num_items == 11 and split.num_users == 3
    assert_split_matches(split, sequences, 4)


@given(sequences=sequence_lists(), max_len=st.integers(1, 12))
def test_split_matches_reference(sequences, max_len):
    split = SequenceDataset.from_sequences(sequences).split(max_len)
    assert_split_matches(split, sequences, max_len)
    # memory proportional to the interactions: exactly m - 2u, m - u and m values
    m, u = sum(map(len, sequences)), len(sequences)
    assert (split.valid_history.values.numel(), split.test_history.values.numel()) == (m - 2 * u, m - u)
    assert split.user_items.values.numel() == m


def test_split_helpers_and_to():
    split = SequenceDataset.from_sequences([[1, 2, 3, 4], [3, 2, 1]]).split(max_len=3)
    assert split.inputs("valid") is split.valid_inputs and split.inputs("test") is split.test_inputs
    assert split.targets("valid") is split.valid_targets and split.targets("test") is split.test_targets
    assert split.history("valid") is split.valid_history and split.history("test") is split.test_history
    moved = split.to("cpu")
    assert moved is not split and moved.device == torch.device("cpu")
    assert isinstance(moved.user_items, Ragged) and moved.user_items.tolist() == split.user_items.tolist()
    assert moved.max_len == 3 and moved.num_items == 4
    with pytest.raises(ValueError, match="split must be one of"):
        split.inputs("train")
    with pytest.raises(ValueError, match="split must be one of"):
        split.history("train")


@pytest.mark.parametrize(("max_len", "error", "message"), [
    (0, ValueError, "max_len must be >= 1, got 0"),
    (True, TypeError, "max_len must be an int, got bool"),
    (2.0, TypeError, "max_len must be an int, got float"),
    ("50", TypeError, "max_len must be an int, got str"),
])
def test_split_refuses_bad_max_len(max_len, error, message):
    with pytest.raises(error, match=message):
        SequenceDataset.from_sequences([[1, 2, 3]]).split(max_len)


def test_split_does_not_alias_the_dataset():
    data = SequenceDataset.from_sequences([[1, 2, 3, 4]])
    split = data.split(2)
    split.user_items.values[0] = 4
    assert data.items.tolist() == [1, 2, 3, 4]


@pytest.mark.slow
def test_split_one_long_user_among_many_short_is_fast_and_small():
    """Issue 9: 20,000 users of 8 items and one of 20,000 split in seconds, well under 1 GB.

    The padded layout (users x longest history) needed 20,001 x 20,000 x 8 bytes = 3.2 GB per
    history. Measured in a fresh process: the peak resident memory the split adds.
    """
    script = textwrap.dedent(
        """
        import json, resource, time
        from s4rec_components import SequenceDataset
        data = SequenceDataset.from_sequences([[1] * 8] * 20000 + [list(range(1, 20001))])
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        split = data.split(50)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"seconds": seconds, "peak_kib": after - before,
                          "values": split.test_history.values.numel(),
                          "shape": list(split.train_inputs.shape)}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["shape"] == [20001, 50]
    assert result["values"] == 20000 * 7 + 19999
    assert result["seconds"] < 10.0, result  # measured: 0.5 s (the padded layout took 46 s)
    assert result["peak_kib"] < 256 * 1024, result  # well under 1 GB (measured: a few MiB)


# ---------------------------------------------------------------------------- the dataset
def test_dataset_constructor_errors():
    with pytest.raises(ValueError, match="needs >= 3 items"):
        SequenceDataset.from_sequences([[1, 2, 3], [1, 2]])
    with pytest.raises(ValueError, match="ids >= 1"):
        SequenceDataset.from_sequences([[0, 1, 2]])
    with pytest.raises(ValueError, match="num_items must be >= the largest item id 9"):
        SequenceDataset.from_sequences([[1, 2, 9]], num_items=5)
    with pytest.raises(TypeError, match="num_items must be an int, got bool"):
        SequenceDataset.from_sequences([[1, 2, 3]], num_items=True)
    with pytest.raises(ValueError, match="offsets must start at 0"):
        SequenceDataset(torch.tensor([1, 2, 3]), torch.tensor([0, 2]))
    with pytest.raises(TypeError, match="items must be an integer tensor"):
        SequenceDataset(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="user_ids must have one entry per user"):
        SequenceDataset(torch.tensor([1, 2, 3]), torch.tensor([0, 3]), user_ids=torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="takes from 3 to 4 positional arguments"):
        SequenceDataset(torch.tensor([1, 2, 3]), torch.tensor([0, 3]), None, 5)  # type: ignore[misc]


def test_item_ids_are_checked_and_indexed():
    data = SequenceDataset.from_sequences([[1, 2, 3, 2]], item_ids=["900", "17", "1099511627776"])
    assert data.num_items == 3 and data.item_ids == ["900", "17", "1099511627776"]
    assert data.item_index() == {"900": 1, "17": 2, "1099511627776": 3}
    # a raw sequence is recovered through the mapping
    assert [data.item_ids[i - 1] for i in data.sequence(0).tolist()] == ["900", "17", "1099511627776", "17"]
    assert SequenceDataset.from_sequences([[1, 2, 2]]).item_index() == {"1": 1, "2": 2}
    with pytest.raises(ValueError, match="item_ids must have num_items = 4 entries .* got 3"):
        SequenceDataset.from_sequences([[1, 2, 3]], item_ids=["a", "b", "c"], num_items=4)
    with pytest.raises(ValueError, match="item_ids must be distinct .*'a' repeats"):
        SequenceDataset.from_sequences([[1, 2, 3]], item_ids=["a", "b", "a"])
    with pytest.raises(TypeError, match="item_ids must be a list of str, got int 7 at position 1"):
        SequenceDataset.from_sequences([[1, 2, 1]], item_ids=["a", 7])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="item_ids must have one raw id per internal item 1..n, so at least the "
                                         "largest item id 3 entries, got 2"):  # (num_items was not passed)
        SequenceDataset.from_sequences([[1, 2, 3]], item_ids=["a", "b"])
    with pytest.raises(ValueError, match="num_items must be >= the largest item id 3"):
        SequenceDataset.from_sequences([[1, 2, 3]], num_items=2)


def test_statistics_closed_form():
    data = SequenceDataset.from_sequences([[1, 2, 3], [2, 3, 4, 4, 5]], num_items=10, name="toy")
    stats = data.statistics()
    assert (stats["users"], stats["items"], stats["interactions"], stats["distinct_items"]) == (2, 10, 8, 5)
    assert stats["avg_length"] == 4.0 and stats["sparsity"] == pytest.approx(1 - 8 / 20)
    assert (stats["min_length"], stats["max_length"], stats["name"]) == (3, 5, "toy")
    assert len(data) == 2 and "toy" in repr(data)


@given(sequences=sequence_lists())
def test_median_length_is_the_usual_median(sequences):
    stats = SequenceDataset.from_sequences(sequences).statistics()
    assert stats["median_length"] == statistics.median(len(seq) for seq in sequences)


@given(sequences=sequence_lists())
def test_save_writes_one_line_per_user(tmp_path_factory, sequences):
    users = [10 * (u + 1) for u in range(len(sequences))]
    data = SequenceDataset.from_sequences(sequences, user_ids=users)
    path = data.save(tmp_path_factory.mktemp("save") / "seq.txt")
    expected = "".join(" ".join(map(str, [user, *seq])) + "\n" for user, seq in zip(users, sequences))
    assert path.read_text() == expected
    assert not path.with_name("seq.txt.item_ids.json").exists()


def test_save_writes_and_removes_the_item_id_sidecar(tmp_path):
    path = tmp_path / "d.txt"
    SequenceDataset.from_sequences([[1, 2, 1]], item_ids=["x", "y"]).save(path)
    sidecar = tmp_path / "d.txt.item_ids.json"
    payload = json.loads(sidecar.read_text())
    assert payload["item_ids"] == ["x", "y"] and payload["num_items"] == 2
    SequenceDataset.from_sequences([[1, 2, 1]]).save(path)  # ids 1..n: a stale sidecar goes
    assert not sidecar.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.txt"]  # no temporary files left
