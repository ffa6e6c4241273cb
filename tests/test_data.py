"""Datasets: loaders, the leave-one-out split, synthetic generation and download (data.py)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import logging
import socket
import threading
import zipfile
from pathlib import Path

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings
from strategies import seeds

from s4rec_components import (
    LeaveOneOutSplit,
    SequenceDataset,
    download_dataset,
    generate_synthetic,
    load_recbole_inter,
    load_sequences,
)
from s4rec_components.data import KNOWN_SHA256


# ---------------------------------------------------------------------------- reference split
def left_pad(seq: list[int], width: int) -> list[int]:
    """The last ``width`` items of ``seq``, left-padded with 0 (written out by hand)."""
    tail = seq[-width:] if seq else []
    return [0] * (width - len(tail)) + tail


def right_pad(seq: list[int], width: int) -> list[int]:
    return seq + [0] * (width - len(seq))


def reference_split(sequences: list[list[int]], max_len: int) -> dict[str, list]:
    """Leave-one-out fields transcribed from the definitions, one user at a time."""
    h = max(len(s) for s in sequences) - 1
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
        out["valid_history"].append(right_pad(s[:-2], h))
        out["test_history"].append(right_pad(s[:-1], h))
        out["user_items"].append(right_pad(s, h + 1))
        out["lengths"].append(len(s))
    return out


def assert_split_matches(split: LeaveOneOutSplit, sequences: list[list[int]], max_len: int) -> None:
    expected = reference_split(sequences, max_len)
    for name, value in expected.items():
        got = getattr(split, name)
        assert got.dtype == torch.long, name
        assert got.tolist() == value, name
    assert split.max_len == max_len
    assert split.train_lengths.tolist() == [len(s) - 2 for s in sequences]


@st.composite
def sequence_lists(draw, max_users: int = 8, max_length: int = 15, max_items: int = 30):
    users = draw(st.integers(1, max_users))
    n = draw(st.integers(1, max_items))
    return [
        draw(st.lists(st.integers(1, n), min_size=3, max_size=max_length)) for _ in range(users)
    ]


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
    # histories are never truncated: h = 11 - 1 = 10
    assert split.valid_history.shape == (3, 10)
    assert split.valid_history[2].tolist() == list(range(1, 10)) + [0]
    assert split.test_history[2].tolist() == list(range(1, 11))
    assert split.test_history[0].tolist() == [7, 8] + [0] * 8
    assert split.user_items.shape == (3, 11)
    assert split.user_items[1].tolist() == [1, 2, 3, 4] + [0] * 7
    assert split.lengths.tolist() == [3, 4, 11]
    assert split.train_lengths.tolist() == [1, 2, 9]
    assert split.num_items == 11 and split.num_users == 3
    assert_split_matches(split, sequences, 4)


@given(sequences=sequence_lists(), max_len=st.integers(1, 12))
def test_split_matches_reference(sequences, max_len):
    split = SequenceDataset.from_sequences(sequences).split(max_len=max_len)
    assert_split_matches(split, sequences, max_len)


def test_split_helpers_and_to():
    split = SequenceDataset.from_sequences([[1, 2, 3, 4], [3, 2, 1]]).split(max_len=3)
    assert split.inputs("valid") is split.valid_inputs and split.inputs("test") is split.test_inputs
    assert split.targets("valid") is split.valid_targets and split.targets("test") is split.test_targets
    assert split.history("valid") is split.valid_history and split.history("test") is split.test_history
    moved = split.to("cpu")
    assert moved is not split and moved.device == torch.device("cpu")
    assert torch.equal(moved.user_items, split.user_items) and moved.max_len == 3
    with pytest.raises(ValueError, match="split must be one of"):
        split.inputs("train")
    with pytest.raises(ValueError, match="max_len must be an integer >= 1"):
        SequenceDataset.from_sequences([[1, 2, 3]]).split(max_len=0)


def test_dataset_constructor_errors():
    with pytest.raises(ValueError, match="needs >= 3 items"):
        SequenceDataset.from_sequences([[1, 2, 3], [1, 2]])
    with pytest.raises(ValueError, match="ids >= 1"):
        SequenceDataset.from_sequences([[0, 1, 2]])
    with pytest.raises(ValueError, match="num_items must be >= the largest item id 9"):
        SequenceDataset.from_sequences([[1, 2, 9]], num_items=5)
    with pytest.raises(ValueError, match="offsets must start at 0"):
        SequenceDataset(torch.tensor([1, 2, 3]), torch.tensor([0, 2]))
    with pytest.raises(TypeError, match="items must be an integer tensor"):
        SequenceDataset(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="user_ids must have one entry per user"):
        SequenceDataset(torch.tensor([1, 2, 3]), torch.tensor([0, 3]), user_ids=torch.tensor([1, 2]))


def test_statistics_closed_form():
    data = SequenceDataset.from_sequences([[1, 2, 3], [2, 3, 4, 4, 5]], num_items=10, name="toy")
    stats = data.statistics()
    assert (stats["users"], stats["items"], stats["interactions"], stats["distinct_items"]) == (2, 10, 8, 5)
    assert stats["avg_length"] == 4.0 and stats["sparsity"] == pytest.approx(1 - 8 / 20)
    assert (stats["min_length"], stats["max_length"], stats["name"]) == (3, 5, "toy")
    assert len(data) == 2 and "toy" in repr(data)


# ---------------------------------------------------------------------------- load_sequences
def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_sequences_parses_and_skips_blank_lines(tmp_path):
    path = write(tmp_path, "ok.txt", "\n5 1 2 3\n  \n3\t4 4 2 9\r\n\n")
    data = load_sequences(path)
    assert data.user_ids.tolist() == [5, 3]
    assert [data.sequence(u).tolist() for u in range(2)] == [[1, 2, 3], [4, 4, 2, 9]]
    assert data.num_items == 9 and data.name == "ok"


@given(sequences=sequence_lists())
@settings(max_examples=20)
def test_save_then_load_round_trip(tmp_path_factory, sequences):
    data = SequenceDataset.from_sequences(sequences, user_ids=[10 * (u + 1) for u in range(len(sequences))])
    path = data.save(tmp_path_factory.mktemp("rt") / "seq.txt")
    back = load_sequences(path)
    assert torch.equal(back.items, data.items) and torch.equal(back.offsets, data.offsets)
    assert torch.equal(back.user_ids, data.user_ids)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("1 1 2 3\n7\n", 2, "at least 2 fields"),
        ("1 1 2 3\n2 1 x 3\n", 2, "'x' is not a positive integer"),
        ("1 1 2 3\n\n2 1 2.5 3\n", 3, "'2.5' is not a positive integer"),
        ("1 1 -2 3 4\n", 1, "'-2' is not a positive integer"),
        ("1 1 2 3\n2 1 0 3\n", 2, "must be positive integers"),
        ("0 1 2 3\n", 1, "must be positive integers"),
        ("1 1 2 3\n2 4 5 6\n1 7 8 9\n", 3, "user id 1 repeats the user of line 1"),
        ("1 1 2 3\n2 4 5\n", 2, "has 2 item"),
    ],
)
def test_load_sequences_malformed_lines(tmp_path, text, line, message):
    path = write(tmp_path, "bad.txt", text)
    with pytest.raises(ValueError, match=message) as info:
        load_sequences(path)
    assert f"bad.txt, line {line}:" in str(info.value)


@pytest.mark.parametrize("text", ["", "\n  \n\n"])
def test_load_sequences_empty_file(tmp_path, text):
    with pytest.raises(ValueError, match=r"empty\.txt: the file holds no users"):
        load_sequences(write(tmp_path, "empty.txt", text))


def test_load_sequences_not_utf8_and_missing(tmp_path):
    path = tmp_path / "binary.txt"
    path.write_bytes(b"1 2 3 \xff\n")
    with pytest.raises(ValueError, match=r"binary\.txt: not a UTF-8 text file"):
        load_sequences(path)
    with pytest.raises(FileNotFoundError):
        load_sequences(tmp_path / "nope.txt")


def test_real_beauty_statistics_and_split(shared_data):
    data = load_sequences(shared_data / "Beauty.txt")
    stats = data.statistics()
    assert (stats["users"], stats["items"], stats["interactions"]) == (22363, 12101, 198502)
    assert stats["avg_length"] == pytest.approx(8.9, abs=0.05)
    split = data.split(max_len=50)
    assert split.train_inputs.shape == (22363, 50) and split.test_history.shape == (22363, 203)
    g = torch.Generator().manual_seed(0)
    chosen = torch.randperm(len(data), generator=g)[:150].tolist()
    sub = [data.sequence(u).tolist() for u in chosen]
    expected = reference_split(sub, 50)
    width = max(len(s) for s in sub) - 1
    for name in ("train_inputs", "train_targets", "valid_inputs", "test_inputs", "valid_targets", "test_targets"):
        assert getattr(split, name)[chosen].tolist() == expected[name], name
    assert split.test_history[chosen][:, :width].tolist() == expected["test_history"]
    assert int(split.test_history[chosen][:, width:].abs().sum()) == 0


def test_shared_files_match_known_checksums(shared_data):
    for name, file in (("Beauty", "Beauty.txt"), ("Sports", "Sports_and_Outdoors.txt"), ("Toys", "Toys_and_Games.txt")):
        assert hashlib.sha256((shared_data / file).read_bytes()).hexdigest() == KNOWN_SHA256[name]


# ---------------------------------------------------------------------------- load_recbole_inter
HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"


def test_recbole_sorts_stably_reindexes_and_drops_short_users(tmp_path, caplog):
    rows = [
        HEADER,
        "u1\tA\t5\t30", "u2\tB\t4\t1", "u1\tB\t3\t10", "u3\tA\t1\t1",  # u3 has 1 row: dropped
        "u1\tC\t3\t10", "u2\tD\t4\t2", "u2\tA\t4\t3", "u1\tD\t2\t5",
    ]
    path = write(tmp_path, "toy.inter", "\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING, logger="s4rec_components.data"):
        data = load_recbole_inter(path)
    assert "dropped 1 of 3 users" in caplog.text
    # u1 by time: D(5) B(10) C(10, after B: stable) A(30); u2: B D A
    # items numbered by first occurrence reading u1 then u2: D=1 B=2 C=3 A=4
    assert [data.sequence(u).tolist() for u in range(2)] == [[1, 2, 3, 4], [2, 1, 4]]
    assert data.user_ids.tolist() == [1, 2] and data.num_items == 4
    # reloading the saved file keeps the ids (the documented numbering rule)
    back = load_recbole_inter(path)
    assert torch.equal(back.items, data.items)


def test_recbole_custom_fields_and_no_time_column(tmp_path):
    text = "session:token\tthing:token\n" + "\n".join(["s\tz", "s\ty", "s\tz", "t\tq", "t\tz", "t\tw"]) + "\n"
    data = load_recbole_inter(write(tmp_path, "f.inter", text), user_field="session", item_field="thing")
    assert [data.sequence(u).tolist() for u in range(2)] == [[1, 2, 1], [3, 1, 4]]


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("", {}, r"empty file"),
        ("user_id\titem_id:token\n", {}, r"line 1: header field 'user_id' is not 'name:type'"),
        ("uid:token\titem_id:token\n", {}, r"no column 'user_id'"),
        (HEADER + "\n", {"time_field": "when"}, r"no column 'when'"),
        (HEADER + "\na\tx\t1\n", {}, r"line 2: expected 4 tab-separated fields, got 3"),
        (HEADER + "\na\tx\t1\t1\n\na\t\t1\t2\n", {}, r"line 4: empty user or item token"),
        (HEADER + "\na\tx\t1\tnoon\n", {}, r"line 2: timestamp 'noon' is not a number"),
        (HEADER + "\na\tx\t1\t1\na\ty\t1\t2\n", {}, r"no user has at least 3 interactions"),
    ],
)
def test_recbole_errors(tmp_path, text, kwargs, message):
    path = write(tmp_path, "bad.inter", text)
    with pytest.raises(ValueError, match=message) as info:
        load_recbole_inter(path, **kwargs)
    assert "bad.inter" in str(info.value)


# ---------------------------------------------------------------------------- synthetic
def test_synthetic_is_deterministic_and_well_formed():
    a = generate_synthetic(num_users=400, num_items=80, num_intents=4, seed=5)
    b = generate_synthetic(num_users=400, num_items=80, num_intents=4, seed=5)
    c = generate_synthetic(num_users=400, num_items=80, num_intents=4, seed=6)
    assert torch.equal(a.items, b.items) and torch.equal(a.offsets, b.offsets)
    assert not (a.items.shape == c.items.shape and torch.equal(a.items, c.items))
    assert a.num_items == 80 and len(a) == 400
    assert int(a.items.min()) >= 1 and int(a.items.max()) <= 80
    assert int(a.lengths.min()) >= 5 and int(a.lengths.max()) <= 60
    # long tail: mostly short users, some much longer ones
    assert float(a.lengths.float().median()) < 12 and int(a.lengths.max()) >= 25


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


def test_synthetic_bad_arguments():
    with pytest.raises(ValueError, match="num_items must be an integer >= num_intents"):
        generate_synthetic(num_items=3, num_intents=4)
    with pytest.raises(ValueError, match="min_length must be an integer >= 3"):
        generate_synthetic(min_length=2)
    with pytest.raises(ValueError, match="max_length must be an integer >= min_length"):
        generate_synthetic(min_length=10, max_length=9)
    with pytest.raises(ValueError, match="follow_prob must lie in"):
        generate_synthetic(follow_prob=1.5)
    with pytest.raises(ValueError, match="num_users must be an integer >= 1"):
        generate_synthetic(num_users=0)


# ---------------------------------------------------------------------------- download
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving ``tmp_path / "origin"``; yields its base URL."""
    origin = tmp_path / "origin"
    origin.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(origin))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield origin, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/Beauty.txt"


def test_download_text_file_with_checksum(server, tmp_path):
    origin, base = server
    payload = b"1 1 2 3\n2 2 3 4\n"
    (origin / "Beauty.txt").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    root = tmp_path / "data"
    path = download_dataset("Beauty", root, url=f"{base}/Beauty.txt", sha256=digest)
    assert path == root / "Beauty.txt" and path.read_bytes() == payload
    assert sorted(p.name for p in root.iterdir()) == ["Beauty.txt"]  # no temp file left
    # second call: the file exists, no network needed (unreachable url)
    assert download_dataset("Beauty", root, url=closed_port_url(), sha256=digest) == path
    assert load_sequences(path).num_users == 2


def test_download_checksum_mismatch_writes_nothing(server, tmp_path):
    origin, base = server
    (origin / "Toys_and_Games.txt").write_bytes(b"1 1 2 3\n")
    root = tmp_path / "data"
    with pytest.raises(RuntimeError, match="checksum mismatch") as info:
        download_dataset("Toys", root, url=f"{base}/Toys_and_Games.txt", sha256="0" * 64)
    assert "by hand" in str(info.value) and str(root) in str(info.value) and "--data PATH" in str(info.value)
    assert list(root.iterdir()) == []


def test_download_existing_file_is_checked_against_known_checksum(tmp_path):
    (tmp_path / "Sports_and_Outdoors.txt").write_text("1 1 2 3\n")  # not the published file
    with pytest.raises(RuntimeError, match="checksum mismatch .*Delete the file"):
        download_dataset("Sports", tmp_path)


def test_download_unreachable_url_says_what_to_do(tmp_path):
    url = closed_port_url()
    with pytest.raises(RuntimeError, match="could not download") as info:
        download_dataset("Beauty", tmp_path / "data", url=url)
    message = str(info.value)
    assert url in message and "by hand" in message and "--data PATH" in message
    assert list((tmp_path / "data").iterdir()) == []


def test_download_movielens_converts_ratings(server, tmp_path, caplog):
    origin, base = server
    ratings = "\n".join([
        "2::50::5::300", "1::10::3::200", "1::20::4::100", "2::10::1::100",
        "1::30::2::200", "2::60::2::200", "1::40::5::150",
    ]) + "\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", ratings)
        zf.writestr("ml-1m/movies.dat", "unused")
    (origin / "ml-1m.zip").write_bytes(buffer.getvalue())
    root = tmp_path / "data"
    with caplog.at_level(logging.INFO, logger="s4rec_components.data"):
        path = download_dataset("ML-1M", root, url=f"{base}/ml-1m.zip")
    assert hashlib.sha256(buffer.getvalue()).hexdigest() in caplog.text  # logged, nothing to compare
    # user 1 by time: 20(100) 40(150) 10(200) 30(200, after 10: stable); user 2: 10 60 50
    # re-indexed by first occurrence: 20->1 40->2 10->3 30->4 60->5 50->6
    assert path.read_text() == "1 1 2 3 4\n2 3 5 6\n"
    assert (root / "ml-1m.zip").exists()
    assert download_dataset("ML-1M", root, url=closed_port_url()) == path  # cached


def test_download_movielens_bad_zip_and_checksum(server, tmp_path):
    origin, base = server
    (origin / "ml-1m.zip").write_bytes(b"not a zip")
    with pytest.raises(RuntimeError, match="checksum mismatch"):
        download_dataset("ML-1M", tmp_path / "a", url=f"{base}/ml-1m.zip", sha256="1" * 64)
    with pytest.raises(RuntimeError, match="is not the GroupLens ml-1m.zip") as info:
        download_dataset("ML-1M", tmp_path / "b", url=f"{base}/ml-1m.zip")
    assert "by hand" in str(info.value)


def test_download_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="name must be one of"):
        download_dataset("Yelp", tmp_path)  # type: ignore[arg-type]
