"""Readers: the one-line format and RecBole .inter files (s4rec_components/data/readers.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given

from s4rec_components import SequenceDataset, load_recbole_inter, load_sequences
from s4rec_components.data._files import write_item_ids


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def sequences_of(data: SequenceDataset) -> list[list[int]]:
    return [data.sequence(u).tolist() for u in range(len(data))]


def raw_sequences_of(data: SequenceDataset) -> list[list[str]]:
    ids = data.item_ids
    return [[str(i) if ids is None else ids[i - 1] for i in seq] for seq in sequences_of(data)]


@st.composite
def raw_id_files(draw, max_users: int = 6, max_length: int = 10):
    """``(users, sequences)`` of raw integer ids: dense 1..n, sparse, or huge (beyond 64 bits)."""
    top = draw(st.sampled_from([5, 1000, 2**40, 2**80]))
    row = st.lists(st.integers(1, top), min_size=3, max_size=max_length)
    sequences = draw(st.lists(row, min_size=1, max_size=max_users))
    users = draw(st.lists(st.integers(1, 2**63 - 1), min_size=len(sequences), max_size=len(sequences), unique=True))
    return users, sequences


# ---------------------------------------------------------------------------- load_sequences
def test_load_sequences_parses_and_skips_blank_lines(tmp_path):
    path = write(tmp_path, "ok.txt", "\n5 1 2 3\n  \n3\t4 4 2 9\r\n\n")
    data = load_sequences(path)
    assert data.user_ids.tolist() == [5, 3]
    # ids 1 2 3 4 9 are not exactly 1..n: re-indexed in numeric order, 9 -> 5
    assert sequences_of(data) == [[1, 2, 3], [4, 4, 2, 5]]
    assert data.item_ids == ["1", "2", "3", "4", "9"]
    assert data.num_items == 5 and data.name == "ok"


def test_dense_ids_are_kept_as_they_are(tmp_path):
    data = load_sequences(write(tmp_path, "dense.txt", "1 3 1 2\n2 2 3 3 1\n"))
    assert data.item_ids is None and data.num_items == 3
    assert sequences_of(data) == [[3, 1, 2], [2, 3, 3, 1]]


def test_issue_reproducer_huge_id_does_not_make_a_huge_catalogue(tmp_path):
    data = load_sequences(write(tmp_path, "huge.txt", "1 2 2 3 1099511627776\n"))
    assert data.num_items == 3
    assert sequences_of(data) == [[1, 1, 2, 3]]
    assert data.item_ids == ["2", "3", "1099511627776"]
    assert data.item_index()["1099511627776"] == 3


@given(raw=raw_id_files())
def test_reindexing_keeps_order_and_round_trips(tmp_path_factory, raw):
    users, sequences = raw
    folder = tmp_path_factory.mktemp("raw")
    text = "".join(" ".join(map(str, [u, *s])) + "\n" for u, s in zip(users, sequences))
    path = write(folder, "raw.txt", text)
    data = load_sequences(path)
    distinct = sorted({i for s in sequences for i in s})
    assert data.num_items == len(distinct)
    assert data.user_ids.tolist() == users
    # internal ids follow the numeric order of the raw ids; the mapping gives the raw sequences back
    assert raw_sequences_of(data) == [[str(i) for i in s] for s in sequences]
    if distinct == list(range(1, len(distinct) + 1)):
        assert data.item_ids is None
    else:
        assert data.item_ids == [str(i) for i in distinct]
    # save -> load gives the same internal ids and raw ids (through the sidecar)
    back = load_sequences(data.save(folder / "saved.txt"))
    assert torch.equal(back.items, data.items) and torch.equal(back.offsets, data.offsets)
    assert back.item_ids == data.item_ids and torch.equal(back.user_ids, data.user_ids)


def test_reindex_modes(tmp_path):
    gaps = write(tmp_path, "gaps.txt", "1 2 4 6\n")
    kept = load_sequences(gaps, reindex="never")
    assert kept.num_items == 6 and kept.item_ids is None and sequences_of(kept) == [[2, 4, 6]]
    dense = write(tmp_path, "dense.txt", "1 1 2 3\n")
    forced = load_sequences(dense, reindex="always")
    assert forced.item_ids == ["1", "2", "3"] and sequences_of(forced) == [[1, 2, 3]]
    with pytest.raises(ValueError, match="reindex must be one of"):
        load_sequences(dense, reindex="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        load_sequences(dense, "name")  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "kwargs", "line", "message"),
    [
        ("1 1 2 3\n7\n", {}, 2, "at least 2 fields"),
        ("1 1 2 3\n2 1 x 3\n", {}, 2, "'x' is not a positive integer"),
        ("1 1 2 3\n\n2 1 2.5 3\n", {}, 3, "'2.5' is not a positive integer"),
        ("1 1 -2 3 4\n", {}, 1, "'-2' is not a positive integer"),
        ("1 1 2 3\n2 1 0 3\n", {}, 2, "must be positive integers"),
        ("0 1 2 3\n", {}, 1, "must be positive integers"),
        ("1 1 2 3\n2 4 5 6\n1 7 8 9\n", {}, 3, "user id 1 repeats the user of line 1"),
        ("1 1 2 3\n2 4 5\n", {}, 2, "has 2 item"),
        ("1 1 2 3\n9223372036854775808 1 2 3\n", {}, 2, "user id 9223372036854775808 does not fit in 64 bits"),
        ("1 1 2 3\n2 1 2 " + "9" * 5000 + "\n", {}, 2, "too many digits"),
        ("1 1 2 3\n2 1 2 " + str(2**64) + "\n", {"reindex": "never"}, 2, "re-indexing cannot apply"),
        # separators that str.split() takes for whitespace but the format does not
        ("1 1 2 3\n2 1\u00a02 3\n", {}, 2, r"'\\xa0' \(U\+00A0, a no-break space\) at column 4"),
        ("1 1 2 3\r2 1 2 3\r", {}, 1, r"U\+000D, a carriage return: lines that end with .{2,4} alone"),
        ("1 1\x0b2 3\n", {}, 1, r"U\+000B, a vertical tab\) at column 4"),
        ("1 1 2 3\n\ufeff2 1 2 3\n", {}, 2, r"is not a positive integer id \(it holds U\+FEFF, a byte-order mark\)"),  # not at the start
    ],
)
def test_load_sequences_malformed_lines(tmp_path, text, kwargs, line, message):
    path = write(tmp_path, "bad.txt", text)
    with pytest.raises(ValueError, match=message) as info:
        load_sequences(path, **kwargs)
    assert f"bad.txt, line {line}:" in str(info.value)


@pytest.mark.parametrize("text", ["", "\n  \n\n"])
def test_load_sequences_empty_file(tmp_path, text):
    with pytest.raises(ValueError, match=r"empty\.txt: the file holds no users"):
        load_sequences(write(tmp_path, "empty.txt", text))


def test_load_sequences_not_utf8_names_the_line_and_missing_file(tmp_path):
    path = tmp_path / "binary.txt"
    path.write_bytes(b"1 2 3 4\n1 2 3 \xff\n")
    with pytest.raises(ValueError, match=r"binary\.txt, line 2: not UTF-8 text"):
        load_sequences(path)
    with pytest.raises(FileNotFoundError):
        load_sequences(tmp_path / "nope.txt")


def test_sidecar_of_another_file_or_out_of_range_is_refused(tmp_path):
    path = SequenceDataset.from_sequences([[1, 2, 3]], item_ids=["a", "b", "c"]).save(tmp_path / "s.txt")
    assert load_sequences(path).item_ids == ["a", "b", "c"]
    path.write_text("1 1 2 3\n2 3 2 1\n")  # edited after the save
    with pytest.raises(ValueError, match=r"s\.txt\.item_ids\.json belongs to another version of s\.txt"):
        load_sequences(path)
    assert load_sequences(path, reindex="never").item_ids is None  # explicit modes ignore it
    write_item_ids(path, ["only"])  # a sidecar of this very file, with one item
    with pytest.raises(ValueError, match=r"s\.txt, line 1: item id outside 1\.\.1"):
        load_sequences(path)
    (tmp_path / "s.txt.item_ids.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"s\.txt\.item_ids\.json: not a readable item-id file"):
        load_sequences(path)
    (tmp_path / "s.txt.item_ids.json").write_text("[" * 200_000)  # nested beyond the parser's recursion
    with pytest.raises(ValueError, match=r"s\.txt\.item_ids\.json: not a readable item-id file \(RecursionError"):
        load_sequences(path)
    (tmp_path / "s.txt.item_ids.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not an item-id file of format"):
        load_sequences(path)


@pytest.mark.slow
def test_real_beauty_loads_unchanged(shared_data):
    path = shared_data / "Beauty.txt"
    data = load_sequences(path)
    assert data.item_ids is None and data.num_items == 12101 and data.num_users == 22363
    # identical ids: every line of the file, as written
    with path.open() as handle:
        raw = [list(map(int, line.split())) for line in handle if line.strip()]
    assert data.user_ids.tolist() == [r[0] for r in raw]
    assert data.items.tolist() == [i for r in raw for i in r[1:]]
    assert data.statistics()["avg_length"] == pytest.approx(8.9, abs=0.05)
    split = data.split(50)
    assert split.train_inputs.shape == (22363, 50)
    assert int(split.test_history.lengths.max()) == 203  # the longest user has 204 items


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
    assert sequences_of(data) == [[1, 2, 3, 4], [2, 1, 4]]
    assert data.item_ids == ["D", "B", "C", "A"]
    assert data.user_ids.tolist() == [1, 2] and data.num_items == 4
    # save -> load_sequences keeps ids and tokens (the documented numbering rule)
    back = load_sequences(data.save(tmp_path / "toy.txt"))
    assert torch.equal(back.items, data.items) and back.item_ids == data.item_ids


def test_recbole_custom_fields_and_no_time_column(tmp_path):
    text = "session:token\tthing:token\n" + "\n".join(["s\tz", "s\ty", "s\tz", "t\tq", "t\tz", "t\tw"]) + "\n"
    data = load_recbole_inter(write(tmp_path, "f.inter", text), user_field="session", item_field="thing")
    assert sequences_of(data) == [[1, 2, 1], [3, 1, 4]]
    assert data.item_ids == ["z", "y", "q", "w"]


def test_recbole_numeric_tokens_in_order_give_no_mapping(tmp_path):
    text = "user_id:token\titem_id:token\n" + "\n".join(["a\t1", "a\t2", "a\t3"]) + "\n"
    assert load_recbole_inter(write(tmp_path, "n.inter", text)).item_ids is None


def test_recbole_timestamps_above_2_53_sort_exactly(tmp_path):
    big = 2**53
    rows = [HEADER, f"a\tlate\t1\t{big + 1}", f"a\tearly\t1\t{big}", f"a\tlatest\t1\t{big + 2}",
            "a\tfloat\t1\t1.5e3"]
    data = load_recbole_inter(write(tmp_path, "big.inter", "\n".join(rows) + "\n"))
    assert raw_sequences_of(data) == [["float", "early", "late", "latest"]]


@given(times=st.lists(st.one_of(st.integers(-(2**70), 2**70), st.floats(-1e25, 1e25)), min_size=3, max_size=12))
def test_recbole_sorts_like_exact_reference(tmp_path_factory, times):
    rows = [HEADER] + [f"u\ti{j}\t1\t{t!r}" for j, t in enumerate(times)]
    path = write(tmp_path_factory.mktemp("t"), "t.inter", "\n".join(rows) + "\n")
    data = load_recbole_inter(path)
    # Python compares ints and floats exactly; sorted() is stable
    expected = [f"i{j}" for j, _ in sorted(enumerate(times), key=lambda p: p[1])]
    assert raw_sequences_of(data) == [expected]


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
        (HEADER + "\na\tx\t1\t1\na\ty\t1\tinf\n", {}, r"line 3: timestamp 'inf' is not finite"),
        (HEADER + "\na\tx\t1\t-Infinity\n", {}, r"line 2: timestamp '-Infinity' is not finite"),
        (HEADER + "\na\tx\t1\tnan\n", {}, r"line 2: timestamp 'nan' is not finite"),
        (HEADER + "\na\tx\t1\t1e400\n", {}, r"line 2: timestamp '1e400' is not finite"),
        (HEADER + "\na\tx\t1\t1_000\n", {}, r"line 2: timestamp '1_000' is not a number"),  # float() takes it
        (HEADER + "\na\tx\t1\t\u0661\u0662\n", {}, r"line 2: timestamp '\u0661\u0662' is not a number"),
        ("user_id:token\titem_id:token\titem_id:token\n", {}, r"line 1: column 'item_id' appears twice"),
        (HEADER + "\na\tx\t1\t1\na\ty\t1\t2\n", {}, r"no user has at least 3 interactions"),
        ("user_id:token item_id:token timestamp:float\nu a 1\n", {}, r"line 1: header field .* holds several 'name:type' pairs; .* tabs"),
        ("user_id:token\titem_id:tokn\n", {}, r"line 1: column 'item_id' has type 'tokn'; RecBole's types are token, "),
        ("\n" + HEADER + "\n\n", {}, r"no rows after the header \(line 2\)"),
    ],
)
def test_recbole_errors(tmp_path, text, kwargs, message):
    path = write(tmp_path, "bad.inter", text)
    with pytest.raises(ValueError, match=message) as info:
        load_recbole_inter(path, **kwargs)
    assert "bad.inter" in str(info.value)


def test_a_byte_order_mark_is_dropped_by_both_readers(tmp_path):
    """Editors on Windows write UTF-8 with a BOM: the first column must keep its name."""
    inter = tmp_path / "bom.inter"
    inter.write_bytes("\ufefftimestamp:float\tuser_id:token\titem_id:token\n3\tu\ta\n1\tu\tb\n2\tu\tc\n".encode())
    assert load_recbole_inter(inter).item_ids == ["b", "c", "a"]  # sorted by the first column's time
    text = tmp_path / "bom.txt"
    text.write_bytes("\ufeff1 1 2 3\n2 3 2 1\n".encode())
    assert sequences_of(load_sequences(text)) == [[1, 2, 3], [3, 2, 1]]


def test_recbole_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "b.inter"
    path.write_bytes(b"user_id:token\titem_id:token\na\tx\na\t\xfe\n")
    with pytest.raises(ValueError, match=r"b\.inter, line 3: not UTF-8 text"):
        load_recbole_inter(path)


# ---------------------------------------------------------------------------- fuzzing
@given(text=st.text(alphabet="0123456789 \t\n\r-x.", max_size=60))
def test_load_sequences_any_text_gives_a_dataset_or_an_error_naming_file_and_line(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "f.txt"
    path.write_text(text, newline="")
    try:
        data = load_sequences(path)
    except ValueError as err:
        message = str(err)
        assert message.startswith(f"{path}, line ") or message == f"{path}: the file holds no users (empty or only blank lines)"
    else:
        assert all(len(data.sequence(u)) >= 3 for u in range(len(data)))
        assert int(data.items.min()) >= 1 and int(data.items.max()) == data.num_items


@given(text=st.text(alphabet="ab1.e:\t\n-", max_size=80))
def test_load_recbole_any_text_gives_a_dataset_or_an_error_naming_the_file(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "f.inter"
    path.write_text("user_id:token\titem_id:token\ttimestamp:float\n" + text, newline="")
    try:
        data = load_recbole_inter(path)
    except ValueError as err:
        message = str(err)
        assert message.startswith((f"{path}, line ", f"{path}: no user has", f"{path}: no rows after the header"))
    else:
        assert all(len(data.sequence(u)) >= 3 for u in range(len(data)))


@pytest.mark.parametrize("reader", [load_sequences, load_recbole_inter])
@pytest.mark.parametrize("path", [3, None, 2.5, ["a.txt"]])
def test_a_path_that_is_not_a_file_name_is_a_type_error_naming_the_argument(reader, path):
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        reader(path)


def test_column_names_with_spaces_are_names_as_in_recbole(tmp_path):
    path = write(tmp_path, "s.inter", "user id:token\titem id:token\nu\ta\nu\tb\nu\tc\n")
    assert load_recbole_inter(path, user_field="user id", item_field="item id").item_ids == ["a", "b", "c"]


def test_the_column_of_an_odd_character_counts_the_leading_spaces(tmp_path):
    path = write(tmp_path, "c.txt", "    2 1\u00a02 3\n")
    with pytest.raises(ValueError, match="at column 8;"):
        load_sequences(path)


def test_a_float_column_that_may_be_the_time_is_pointed_out_when_no_timestamp_column_is_found(tmp_path, caplog):
    path = write(tmp_path, "yelp.inter", "user_id:token\titem_id:token\tdate:float\nu\ta\t3\nu\tb\t1\nu\tc\t2\n")
    with caplog.at_level(logging.INFO, logger="s4rec_components.data.readers"):
        assert load_recbole_inter(path).item_ids == ["a", "b", "c"]  # file order, as documented
    assert any(r.levelno == logging.WARNING and "['date']" in r.getMessage() for r in caplog.records)
    assert load_recbole_inter(path, time_field="date").item_ids == ["b", "c", "a"]
