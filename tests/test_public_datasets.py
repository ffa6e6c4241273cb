"""Public datasets: downloads, checksums on every use, the ML-1M conversion (data/public.py).

Downloads are served by a local HTTP server on 127.0.0.1; nothing here needs the network.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import http.server
import io
import logging
import socket
import struct
import tempfile
import threading
import time
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s4rec_components import DownloadError, download_dataset, load_sequences
from s4rec_components.data import KNOWN_MD5, KNOWN_SHA256, MOVIELENS_MIN_COUNT
from s4rec_components.data._files import write_record
from s4rec_components.data.public import _capped_lines, _k_core

RATINGS = "\n".join([
    # user 1 in reverse time order, user 2 with a tie (40 before 30 at time 3: stable)
    "1::10::5::5", "1::20::4::4", "1::30::3::3", "1::40::2::2", "1::50::1::1", "1::60::4::6",
    "2::10::1::1", "2::20::2::2", "2::40::3::3", "2::30::3::3", "2::50::5::5", "2::60::2::3",
    *[f"{u}::{m}::3::{t}" for u in (3, 4, 5) for t, m in enumerate((10, 20, 30, 40, 50), start=1)],
    "3::60::1::9", "4::60::1::9",
    # user 6 has 4 ratings (< 5: dropped); then movie 60 has 4 (users 1-4), so it goes in a second
    # round (a single pass would keep it); movie 99 has one rating
    "6::10::2::1", "6::60::2::2", "6::99::2::3", "6::20::2::4",
]) + "\n"
# after the 5-core filter, by time: user 1: 50 40 30 20 10; users 2: 10 20 40 30 50; 3-5: 10 20 30 40 50
# numbered by first occurrence: 50->1 40->2 30->3 20->4 10->5
CONVERTED = "1 1 2 3 4 5\n2 5 4 2 3 1\n3 5 4 3 2 1\n4 5 4 3 2 1\n5 5 4 3 2 1\n"
MOVIE_IDS = ["50", "40", "30", "20", "10"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@contextlib.contextmanager
def _serving(handler) -> Iterator[str]:
    """``handler`` served on 127.0.0.1 from a thread while the block runs; yields the base URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving ``tmp_path / "origin"``; yields (folder, base URL)."""
    origin = tmp_path / "origin"
    origin.mkdir()
    with _serving(functools.partial(_QuietHandler, directory=str(origin))) as base:
        yield origin, base


def closed_port_url(name: str = "Beauty.txt") -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


def sha(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def movielens_zip(ratings: str = RATINGS) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ml-1m/ratings.dat", ratings)
        zf.writestr("ml-1m/movies.dat", "unused")
    return buffer.getvalue()


def zip_bomb(megabytes: int, declared: int | None = None) -> bytes:
    """A zip whose ratings.dat inflates to ``megabytes`` MiB of zeros (about 1000:1).

    With ``declared``, both headers claim that uncompressed size instead (a lying archive).
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("ml-1m/ratings.dat", "w") as member:
            block = b"\0" * (1 << 20)
            for _ in range(megabytes):
                member.write(block)
    data = bytearray(buffer.getvalue())
    if declared is not None:
        local = data.find(b"PK\x03\x04")
        central = data.find(b"PK\x01\x02")
        struct.pack_into("<I", data, local + 22, declared)
        struct.pack_into("<I", data, central + 24, declared)
    return bytes(data)


# ---------------------------------------------------------------------------- text datasets
def test_download_text_file_with_checksum(server, tmp_path):
    origin, base = server
    payload = b"1 1 2 3\n2 2 3 4\n"
    (origin / "Beauty.txt").write_bytes(payload)
    root = tmp_path / "data"
    path = download_dataset("Beauty", root, url=f"{base}/Beauty.txt", sha256=sha(payload))
    assert path == root / "Beauty.txt" and path.read_bytes() == payload
    assert sorted(p.name for p in root.iterdir()) == ["Beauty.txt", "Beauty.txt.sha256"]  # no temp file
    assert (root / "Beauty.txt.sha256").read_text() == f"{sha(payload)}  Beauty.txt\n"
    # second call: the file exists, no network needed (unreachable url), checked again
    assert download_dataset("Beauty", root, url=closed_port_url(), sha256=sha(payload)) == path
    assert load_sequences(path).num_users == 2
    path.write_bytes(payload[:-3])  # truncated
    with pytest.raises(RuntimeError, match="checksum mismatch .*Beauty.txt"):
        download_dataset("Beauty", root, url=closed_port_url(), sha256=sha(payload))


def test_download_checksum_mismatch_writes_nothing(server, tmp_path):
    origin, base = server
    (origin / "Toys_and_Games.txt").write_bytes(b"1 1 2 3\n")
    root = tmp_path / "data"
    with pytest.raises(RuntimeError, match="checksum mismatch") as info:
        download_dataset("Toys", root, url=f"{base}/Toys_and_Games.txt", sha256="0" * 64)
    assert "by hand" in str(info.value) and str(root) in str(info.value) and "load_sequences" in str(info.value)
    assert not root.exists()  # nothing written, not even the folder


def test_download_existing_file_is_checked_against_known_checksum(tmp_path):
    (tmp_path / "Sports_and_Outdoors.txt").write_text("1 1 2 3\n")  # not the published file
    with pytest.raises(RuntimeError, match="checksum mismatch .*Delete the file"):
        download_dataset("Sports", tmp_path)


def test_download_unreachable_url_says_what_to_do(tmp_path):
    url = closed_port_url()
    (tmp_path / "kept").mkdir()
    for root in (tmp_path / "data" / "nested", tmp_path / "kept"):
        with pytest.raises(DownloadError, match="could not download") as info:
            download_dataset("Beauty", root, url=url, sha256="0" * 64)
        message = str(info.value)
        assert url in message and "by hand" in message and "load_sequences" in message
    assert isinstance(info.value, RuntimeError)  # what callers caught before DownloadError
    assert not (tmp_path / "data").exists()  # the folders the call made are gone ...
    assert list((tmp_path / "kept").iterdir()) == []  # ... one that was there stays, empty


def test_mirror_without_sha256_is_refused_before_any_download(tmp_path):
    root = tmp_path / "data"
    for name in ("Beauty", "ML-1M"):
        with pytest.raises(ValueError, match="is not the public origin .* pass sha256=.*allow_unverified=True"):
            download_dataset(name, root, url=closed_port_url())
    assert not root.exists()


def test_allow_unverified_records_the_checksum_and_checks_it_on_every_use(server, tmp_path, caplog):
    origin, base = server
    payload = b"1 1 2 3\n"
    (origin / "Toys_and_Games.txt").write_bytes(payload)
    root = tmp_path / "data"
    with caplog.at_level(logging.WARNING, logger="s4rec_components.data"):
        path = download_dataset("Toys", root, url=f"{base}/Toys_and_Games.txt", allow_unverified=True)
    assert sha(payload) in caplog.text and "not verified" in caplog.text
    assert (root / "Toys_and_Games.txt.sha256").read_text().startswith(sha(payload))
    assert download_dataset("Toys", root, url=closed_port_url(), allow_unverified=True) == path
    path.write_bytes(payload[:4])  # truncated in the cache
    with pytest.raises(RuntimeError, match="checksum mismatch .*Toys_and_Games.txt has sha256"):
        download_dataset("Toys", root, url=closed_port_url(), allow_unverified=True)


def test_shared_files_match_known_checksums(shared_data):
    for name, file in (("Beauty", "Beauty.txt"), ("Sports", "Sports_and_Outdoors.txt"), ("Toys", "Toys_and_Games.txt")):
        assert hashlib.sha256((shared_data / file).read_bytes()).hexdigest() == KNOWN_SHA256[name]


def test_shared_read_only_copies_are_verified_without_writing(shared_data):
    before = sorted(p.name for p in shared_data.iterdir())
    for name, file in (("Beauty", "Beauty.txt"), ("Toys", "Toys_and_Games.txt")):
        assert download_dataset(name, shared_data) == shared_data / file  # official: KNOWN_SHA256
    assert sorted(p.name for p in shared_data.iterdir()) == before


# ---------------------------------------------------------------------------- MovieLens-1M
def converted_movielens(server, tmp_path) -> tuple[Path, Path, bytes, str]:
    """Serve the fixture's zip and convert it into ``tmp_path / "data"``.

    Returns (root, its ml-1m.txt, the zip's bytes, the server's base URL)."""
    origin, base = server
    archive = movielens_zip()
    (origin / "ml-1m.zip").write_bytes(archive)
    root = tmp_path / "data"
    return root, download_dataset("ML-1M", root, url=f"{base}/ml-1m.zip", sha256=sha(archive)), archive, base


def test_download_movielens_converts_ratings_and_keeps_movie_ids(server, tmp_path):
    root, path, archive, base = converted_movielens(server, tmp_path)
    assert path.read_text() == CONVERTED
    assert (root / "ml-1m.zip").read_bytes() == archive
    data = load_sequences(path)
    assert data.item_ids == MOVIE_IDS and data.user_ids.tolist() == [1, 2, 3, 4, 5]
    assert data.item_index()["50"] == 1
    record = (root / "ml-1m.txt.sha256").read_text()
    assert "ml-1m.txt\n" in record and "ml-1m.txt.item_ids.json\n" in record
    assert download_dataset("ML-1M", root, url=closed_port_url(), sha256=sha(archive)) == path  # cached


def test_truncated_cached_movielens_is_detected_and_converted_again(server, tmp_path, caplog):
    root, path, archive, base = converted_movielens(server, tmp_path)
    path.write_text(CONVERTED[:7])  # a truncated cache
    with caplog.at_level(logging.WARNING, logger="s4rec_components.data"):
        again = download_dataset("ML-1M", root, url=closed_port_url(), sha256=sha(archive))  # from the kept zip
    assert "cannot be reused" in caplog.text and "has sha256" in caplog.text
    assert again.read_text() == CONVERTED
    # without the zip, it is downloaded again; from nowhere, the failure says so
    path.write_text(CONVERTED[:7])
    (root / "ml-1m.zip").unlink()
    assert download_dataset("ML-1M", root, url=f"{base}/ml-1m.zip", sha256=sha(archive)).read_text() == CONVERTED
    path.write_text(CONVERTED[:7])
    (root / "ml-1m.zip").unlink()
    with pytest.raises(RuntimeError, match="could not download"):
        download_dataset("ML-1M", root, url=closed_port_url(), sha256=sha(archive))


def test_cached_movielens_without_record_is_converted_again(server, tmp_path):
    origin, base = server
    archive = movielens_zip()
    (origin / "ml-1m.zip").write_bytes(archive)
    root = tmp_path / "data"
    root.mkdir()
    (root / "ml-1m.txt").write_text("1 1 2 3\n")  # placed by hand or by an older version: unverifiable
    path = download_dataset("ML-1M", root, url=f"{base}/ml-1m.zip", sha256=sha(archive))
    assert path.read_text() == CONVERTED


def k_core_reference(rows: list[tuple[int, int]], k: int) -> list[tuple[int, int]]:
    """The k-core of ``(user, movie)`` rows, the slow way: drop one offending row at a time."""
    rows = list(rows)
    while True:
        users = collections.Counter(u for u, _ in rows)
        movies = collections.Counter(m for _, m in rows)
        bad = next((i for i, (u, m) in enumerate(rows) if users[u] < k or movies[m] < k), None)
        if bad is None:
            return rows
        del rows[bad]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 9), st.integers(1, 9)), max_size=120), st.integers(1, 6))
def test_k_core_matches_removing_rows_one_at_a_time(pairs, k):
    per_user: dict[int, list[tuple[int, str]]] = {}
    for when, (user, movie) in enumerate(pairs):
        per_user.setdefault(user, []).append((when, str(movie)))
    kept = _k_core(per_user, k)
    got = sorted((u, int(m)) for u, rows in kept.items() for _, m in rows)
    assert got == sorted(k_core_reference(pairs, k))
    for u, rows in kept.items():  # each kept user's rows in their original order
        assert rows == [row for row in per_user[u] if row in rows]


def test_movielens_conversion_applies_the_papers_5_core_filter_repeatedly(server, tmp_path, caplog):
    origin, base = server
    archive = movielens_zip()
    (origin / "ml-1m.zip").write_bytes(archive)
    with caplog.at_level(logging.INFO, logger="s4rec_components.data.public"):
        path = download_dataset("ML-1M", tmp_path / "d", url=f"{base}/ml-1m.zip", sha256=sha(archive))
    data = load_sequences(path)
    assert (data.num_users, data.num_items) == (5, 5) and MOVIELENS_MIN_COUNT == 5
    assert "60" not in data.item_ids and "99" not in data.item_ids  # 60: only in the second round
    assert "5 of 6 users and 5 of 7 movies kept" in caplog.text
    assert (tmp_path / "d" / "ml-1m.txt.conversion").read_text().startswith("s4rec_components ml-1m conversion 2")


def test_a_conversion_by_an_older_version_is_converted_again(server, tmp_path, caplog):
    root, path, archive, base = converted_movielens(server, tmp_path)
    # what version 1 left: no 5-core filter, no conversion marker, a record of the txt and the zip
    path.write_text("1 1 2 3 4 5 6\n")
    (root / "ml-1m.txt.item_ids.json").unlink()
    (root / "ml-1m.txt.conversion").unlink()
    write_record(path, [path, root / "ml-1m.zip"])
    with caplog.at_level(logging.WARNING, logger="s4rec_components.data.public"):
        again = download_dataset("ML-1M", root, url=closed_port_url(), sha256=sha(archive))  # from the kept zip
    assert again.read_text() == CONVERTED and "older version" in caplog.text
    (root / "ml-1m.txt.conversion").write_text("s4rec_components ml-1m conversion 1\n")  # edited marker
    with caplog.at_level(logging.WARNING, logger="s4rec_components.data.public"):
        assert download_dataset("ML-1M", root, url=closed_port_url(), sha256=sha(archive)).read_text() == CONVERTED
    assert (root / "ml-1m.txt.conversion").read_text().startswith("s4rec_components ml-1m conversion 2")


def test_download_movielens_bad_zip_and_checksum(server, tmp_path):
    origin, base = server
    (origin / "ml-1m.zip").write_bytes(b"not a zip")
    with pytest.raises(RuntimeError, match="checksum mismatch"):
        download_dataset("ML-1M", tmp_path / "a", url=f"{base}/ml-1m.zip", sha256="1" * 64)
    with pytest.raises(RuntimeError, match="is not the GroupLens ml-1m.zip") as info:
        download_dataset("ML-1M", tmp_path / "b", url=f"{base}/ml-1m.zip", allow_unverified=True)
    assert "by hand" in str(info.value)


def test_corrupt_deflate_stream_is_reported_as_a_bad_archive(server, tmp_path):
    origin, base = server
    archive = bytearray(movielens_zip("1::10::3::200\n" * 2000))
    start = archive.find(b"PK\x03\x04") + 30 + len("ml-1m/ratings.dat")
    archive[start + 5 : start + 40] = b"\xff" * 35  # garbage inside the compressed bytes
    (origin / "ml-1m.zip").write_bytes(bytes(archive))
    with pytest.raises(RuntimeError, match="is not the GroupLens ml-1m.zip"):
        download_dataset("ML-1M", tmp_path / "d", url=f"{base}/ml-1m.zip", sha256=sha(bytes(archive)))


def test_official_movielens_zip_is_checked_against_the_published_md5(tmp_path):
    (tmp_path / "ml-1m.zip").write_bytes(movielens_zip())  # cached, but not GroupLens' archive
    with pytest.raises(RuntimeError, match=f"checksum mismatch .*expected md5 {KNOWN_MD5['ML-1M']}"):
        download_dataset("ML-1M", tmp_path)
    assert not (tmp_path / "ml-1m.txt").exists()


@pytest.mark.parametrize("line, message", [
    ("1::x::3::201", "non-integer field"),
    ("+1::10::3::201", "non-integer field"),  # int() reads these three
    ("1::1_0::3::201", "non-integer field"),
    ("1::\u0661\u0660::3::201", "non-integer field"),
    (f"{2**63}::10::3::201", r"user id 9223372036854775808 is not in \[1, 2\*\*63\)"),  # was an overflow
    ("0::10::3::201", r"user id 0 is not in"),
])
def test_malformed_ratings_line_names_the_line(server, tmp_path, line, message):
    origin, base = server
    archive = movielens_zip(f"1::10::3::200\n{line}\n")
    (origin / "ml-1m.zip").write_bytes(archive)
    with pytest.raises(ValueError, match=r"ml-1m\.zip, ml-1m/ratings\.dat, line 2: " + message):
        download_dataset("ML-1M", tmp_path / "d", url=f"{base}/ml-1m.zip", sha256=sha(archive))


@pytest.mark.slow
def test_zip_bomb_fails_fast_without_reading_it_into_memory(server, tmp_path):
    origin, base = server
    bomb = zip_bomb(64)  # 64 MiB of zeros in about 64 KiB
    assert len(bomb) < 1 << 20
    (origin / "ml-1m.zip").write_bytes(bomb)
    root = tmp_path / "data"
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(RuntimeError, match="more than max_unpacked_bytes = 1048576"):
            download_dataset("ML-1M", root, url=f"{base}/ml-1m.zip", sha256=sha(bomb), max_unpacked_bytes=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 5.0
    assert peak < 8 << 20  # never the 64 MiB
    assert not (root / "ml-1m.txt").exists()


@pytest.mark.slow
def test_zip_with_a_lying_size_header_fails_without_inflating_past_it(server, tmp_path):
    origin, base = server
    bomb = zip_bomb(64, declared=1000)  # headers claim 1000 bytes
    (origin / "ml-1m.zip").write_bytes(bomb)
    tracemalloc.start()
    try:
        with pytest.raises(RuntimeError, match="is not the GroupLens ml-1m.zip"):
            download_dataset("ML-1M", tmp_path / "d", url=f"{base}/ml-1m.zip", sha256=sha(bomb), max_unpacked_bytes=4096)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


class _CountingStream(io.RawIOBase):
    """An endless stream of ``b"1::1::1::1\\n"`` lines that counts the bytes handed out."""

    def __init__(self) -> None:
        self.handed = 0

    def read(self, size: int = -1) -> bytes:
        block = (b"1::1::1::1\n" * (1 + max(size, 0) // 11))[:size]
        self.handed += len(block)
        return block


def test_capped_lines_stop_reading_at_the_cap():
    stream = _CountingStream()
    with pytest.raises(RuntimeError, match="more than max_unpacked_bytes = 3000000"):
        for _ in _capped_lines(stream, 3_000_000, "x"):  # type: ignore[arg-type]
            pass
    assert 3_000_000 < stream.handed <= 3_000_000 + (1 << 20)  # one block past the cap, no more
    lines = list(_capped_lines(io.BytesIO(b"a\nb\n\nc"), 100, "y"))
    assert lines == [(1, "a"), (2, "b"), (3, ""), (4, "c")]


# ---------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"name": "Yelp"}, ValueError, "name must be one of"),
        ({"sha256": "abc"}, ValueError, "sha256 must be 64 hexadecimal digits"),
        ({"sha256": "g" * 64}, ValueError, "sha256 must be 64 hexadecimal digits"),
        ({"allow_unverified": 1}, TypeError, "allow_unverified must be a bool"),
        ({"max_unpacked_bytes": 0}, ValueError, "max_unpacked_bytes must be >= 1"),
        ({"max_unpacked_bytes": True}, TypeError, "max_unpacked_bytes must be an int"),
        ({"url": 3}, TypeError, "url must be a str or None"),
    ],
)
def test_download_bad_arguments(tmp_path, kwargs, error, message):
    arguments = {"name": "Beauty", "root": tmp_path / "r", **kwargs}
    with pytest.raises(error, match=message):
        download_dataset(**arguments)
    assert not (tmp_path / "r").exists()


def test_no_message_names_the_examples_flags(server, tmp_path):
    origin, base = server
    (origin / "ml-1m.zip").write_bytes(b"not a zip")
    (tmp_path / "Sports_and_Outdoors.txt").write_text("x")
    attempts = [
        lambda: download_dataset("Sports", tmp_path),
        lambda: download_dataset("Beauty", tmp_path / "a", url=closed_port_url(), sha256="0" * 64),
        lambda: download_dataset("ML-1M", tmp_path / "b", url=f"{base}/ml-1m.zip", allow_unverified=True),
        lambda: download_dataset("Beauty", tmp_path / "c", url=closed_port_url()),
    ]
    for attempt in attempts:
        with pytest.raises((RuntimeError, ValueError)) as info:
            attempt()
        assert "--" not in str(info.value)


# ---------------------------------------------------------------------------- hostile origins and caches
class _NoLengthHandler(http.server.BaseHTTPRequestHandler):
    """Sends ``body`` bytes without a Content-Length (the body ends when the connection closes)."""

    body = b""

    def do_GET(self):  # noqa: N802 - the http.server name
        self.send_response(200)
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def no_length_server():
    handler = type("Handler", (_NoLengthHandler,), {"body": b"1 1 2 3\n" * 100})
    handler.protocol_version = "HTTP/1.0"
    with _serving(handler) as base:
        yield base


def test_a_download_larger_than_the_cap_is_refused_and_writes_nothing(server, no_length_server, tmp_path,
                                                                     monkeypatch):
    from s4rec_components.data import public

    origin, base = server
    (origin / "Beauty.txt").write_bytes(b"1 1 2 3\n" * 100)  # 800 bytes, with a Content-Length
    monkeypatch.setattr(public, "MAX_DOWNLOAD_BYTES", 100)
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="announces 800 bytes, more than MAX_DOWNLOAD_BYTES = 100"):
        download_dataset("Beauty", root, url=f"{base}/Beauty.txt", allow_unverified=True)
    with pytest.raises(DownloadError, match="sent more than MAX_DOWNLOAD_BYTES = 100 bytes"):  # no Content-Length
        download_dataset("Beauty", root, url=f"{no_length_server}/Beauty.txt", allow_unverified=True)
    assert not root.exists()  # no partial file, no folder


def test_a_download_past_its_deadline_is_refused(server, tmp_path, monkeypatch):
    from s4rec_components.data import public

    origin, base = server
    (origin / "Beauty.txt").write_bytes(b"1 1 2 3\n")
    monkeypatch.setattr(public, "DOWNLOAD_DEADLINE_S", -1.0)  # every chunk arrives too late
    with pytest.raises(DownloadError, match="took longer than DOWNLOAD_DEADLINE_S"):
        download_dataset("Beauty", tmp_path / "data", url=f"{base}/Beauty.txt", allow_unverified=True)
    assert not (tmp_path / "data").exists()


def test_secrets_in_a_mirror_url_are_never_shown(caplog):
    url = closed_port_url("Beauty.txt").replace("http://", "http://user:hunter2@") + "?X-Amz-Signature=s3cr3t#frag"
    with caplog.at_level(logging.DEBUG, logger="s4rec_components.data"):
        with pytest.raises(DownloadError) as info:
            download_dataset("Beauty", Path(tempfile.mkdtemp()), url=url, allow_unverified=True)
        with pytest.raises(ValueError) as refused:
            download_dataset("Beauty", Path(tempfile.mkdtemp()), url=url)  # no checksum: refused up front
    for text in (str(info.value), str(refused.value), caplog.text):
        assert "hunter2" not in text and "s3cr3t" not in text and "user" not in text
    assert "/Beauty.txt?..." in str(info.value) and "/Beauty.txt?..." in str(refused.value)


def test_allow_unverified_does_not_trust_a_file_it_did_not_download(tmp_path):
    (tmp_path / "Beauty.txt").write_text("1 1 2 3\n")  # placed by hand, no record
    with pytest.raises(DownloadError, match="no checksum record to verify it against"):
        download_dataset("Beauty", tmp_path, url=closed_port_url(), allow_unverified=True)
    assert not (tmp_path / "Beauty.txt.sha256").exists()  # not recorded as trusted either


def test_a_record_naming_a_file_outside_its_folder_is_not_a_record(tmp_path):
    from s4rec_components.data._files import check_record, read_record

    (tmp_path / "a.txt").write_text("x")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("y")
    digest = hashlib.sha256(b"y").hexdigest()
    for name in (f"../{outside.name}", "sub/a.txt", "..", " a.txt"):
        (tmp_path / "a.txt.sha256").write_text(f"{hashlib.sha256(b'x').hexdigest()}  a.txt\n{digest}  {name}\n")
        assert read_record(tmp_path / "a.txt") is None and "no readable checksum record" in check_record(tmp_path / "a.txt")
    (tmp_path / "a.txt.sha256").write_text("0" * 64 + "  a.txt\n" * 10_000)  # far beyond a record's size
    assert read_record(tmp_path / "a.txt") is None
    outside.unlink()


def test_movielens_whose_ids_are_already_1_to_n_converts_without_a_sidecar(server, tmp_path):
    origin, base = server
    # five users rate movies 1..5 in that order: first occurrences 1..5
    archive = movielens_zip("".join(f"{u}::{m}::5::{100 * m}\n" for u in range(1, 6) for m in range(1, 6)))
    (origin / "ml-1m.zip").write_bytes(archive)
    root = tmp_path / "data"
    path = download_dataset("ML-1M", root, url=f"{base}/ml-1m.zip", sha256=sha(archive))
    assert path.read_text() == "".join(f"{u} 1 2 3 4 5\n" for u in range(1, 6))
    assert not (root / "ml-1m.txt.item_ids.json").exists()
    assert sorted(read_names(root / "ml-1m.txt.sha256")) == ["ml-1m.txt", "ml-1m.txt.conversion", "ml-1m.zip"]
    assert download_dataset("ML-1M", root, url=closed_port_url(), sha256=sha(archive)) == path  # cached, reused


def read_names(record: Path) -> list[str]:
    return [line.split("  ", 1)[1] for line in record.read_text().splitlines()]


def test_a_conversion_from_a_mirror_is_not_reused_for_another_checksum_or_the_public_origin(server, tmp_path):
    origin, base = server
    archive = movielens_zip()
    (origin / "ml-1m.zip").write_bytes(archive)
    root = tmp_path / "data"
    path = download_dataset("ML-1M", root, url=f"{base}/ml-1m.zip", allow_unverified=True)
    assert path.read_text() == CONVERTED
    with pytest.raises(DownloadError, match="checksum mismatch .*ml-1m.zip: expected sha256 0000"):
        download_dataset("ML-1M", root, url=closed_port_url(), sha256="0" * 64)
    with pytest.raises(DownloadError, match=f"checksum mismatch .*expected md5 {KNOWN_MD5['ML-1M']}"):
        download_dataset("ML-1M", root)  # GroupLens' origin: its published MD5, not the mirror's zip
    assert download_dataset("ML-1M", root, url=closed_port_url(), sha256=sha(archive)) == path  # its own zip: fine
    (root / "ml-1m.zip").write_bytes(movielens_zip("1::1::5::100\n1::2::5::200\n1::3::5::300\n"))  # swapped
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download_dataset("ML-1M", root, url=closed_port_url(), allow_unverified=True)  # not the recorded zip
