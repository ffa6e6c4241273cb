r"""Public datasets: downloads with checksums, and the MovieLens-1M conversion.

:func:`download_dataset` fetches Beauty / Sports / Toys (the preprocessed files of ICLRec's
``data/`` folder) or MovieLens-1M (GroupLens ``ml-1m.zip``, converted to the one-line format).

Integrity rules:

* every file is checked on **every** use, not only after its download: against the caller's
  ``sha256``, else the published checksum of the public origin, else the checksum record
  ``<file>.sha256`` written when this library downloaded or produced the file;
* a download from a mirror (``url=``) needs ``sha256=`` or an explicit
  ``allow_unverified=True``;
* the converted ``ml-1m.txt`` (and its raw-id sidecar) carry a checksum record; a cached copy
  that fails it (truncated, edited) is converted again from the verified zip;
* the zip is decompressed as a stream with a size cap (``max_unpacked_bytes``), so a small
  archive that inflates to gigabytes fails fast without being read into memory;
* a download may not exceed ``MAX_DOWNLOAD_BYTES`` (a ``Content-Length`` above it is refused
  before the body is read) nor take longer than ``DOWNLOAD_DEADLINE_S`` in all, so an endless
  or trickling body cannot fill the disk or hang the caller;
* a cached ``ml-1m.txt`` is trusted only with the zip it was converted from, and only when that
  zip passes the checksum of this call (a conversion from a mirror is not reused for the
  public origin, or for another ``sha256``) and it was made by this version of the conversion
  (``ml-1m.txt.conversion`` names it; a file converted by an older version, without the 5-core
  filter, is converted again);
* URLs are shown without their query string and user info (a pre-signed mirror URL carries
  its credentials there).

Files are written atomically (a temporary file in ``root``, fsync, then renamed into place).

Examples:
    >>> from s4rec_components.data import DATASET_FILES
    >>> DATASET_FILES["Beauty"], DATASET_FILES["ML-1M"]
    ('Beauty.txt', 'ml-1m.txt')
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal

from .._validation import check_bool, check_choice, check_int
from ._files import (
    CHUNK_BYTES,
    Checksum,
    atomic_write_bytes,
    check_record,
    item_ids_path,
    matches,
    read_record,
    record_path,
    write_record,
)
from .dataset import SequenceDataset
from .readers import _index_tokens

__all__ = [
    "DATASET_FILES",
    "DOWNLOAD_DEADLINE_S",
    "DOWNLOAD_TIMEOUT_S",
    "ICLREC_DATA_URL",
    "KNOWN_MD5",
    "KNOWN_SHA256",
    "MAX_DOWNLOAD_BYTES",
    "MAX_UNPACKED_BYTES",
    "MOVIELENS_1M_URL",
    "MOVIELENS_MIN_COUNT",
    "DatasetName",
    "download_dataset",
]

LOG = logging.getLogger(__name__)

DatasetName = Literal["Beauty", "Sports", "Toys", "ML-1M"]

DATASET_FILES: dict[str, str] = {
    "Beauty": "Beauty.txt",
    "Sports": "Sports_and_Outdoors.txt",
    "Toys": "Toys_and_Games.txt",
    "ML-1M": "ml-1m.txt",
}
"""File name written under ``root`` for every dataset ``download_dataset`` knows."""

ICLREC_DATA_URL = "https://raw.githubusercontent.com/salesforce/ICLRec/master/data/"
MOVIELENS_1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
MOVIELENS_1M_ZIP = "ml-1m.zip"
MOVIELENS_RATINGS_MEMBER = "ml-1m/ratings.dat"
MOVIELENS_MIN_COUNT = 5
"""The S4Rec paper's preprocessing (its Section 5.1.1, after S3-Rec and SASRec): items and users
that occur fewer than 5 times are removed. This library repeats the removal until every kept
item and user has 5 ratings (the 5-core); SASRec's script removes once, which on ML-1M, whose
users all have 20 ratings or more, should come to the same. GroupLens' ``ml-1m.zip`` rates
3,706 movies; SASRec's ``ml-1m.txt`` has 6,040 users and 3,416 items, the paper's Table 1 lists
6,041 and 3,417 (apparently counting the padding id 0). The filter was checked on small
generated archives; this project's machines have no network, so not yet on the real zip."""
MOVIELENS_CONVERSION = (
    f"s4rec_components ml-1m conversion 2: ratings.dat by timestamp per user (stable), "
    f"{MOVIELENS_MIN_COUNT}-core (items and users with >= {MOVIELENS_MIN_COUNT} ratings, repeated until none is "
    f"dropped), users in increasing id order, items numbered from 1 by first occurrence\n"
)
"""What ``ml-1m.txt.conversion`` says: a cached conversion is reused only when it says this."""
_CONVERSION_SHA256 = hashlib.sha256(MOVIELENS_CONVERSION.encode("utf-8")).hexdigest()

KNOWN_SHA256: dict[str, str] = {
    "Beauty": "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
    "Sports": "2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2",
    "Toys": "176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f",
}
"""SHA-256 of the preprocessed text files as published in ICLRec's ``data/`` folder."""

KNOWN_MD5: dict[str, str] = {
    "ML-1M": "c4d9eecfca2ab87c1945afe126590906",
}
"""MD5 of GroupLens' ``ml-1m.zip`` as GroupLens publishes it (``ml-1m.zip.md5``; it publishes
no SHA-256). Used for the public origin only; a mirror needs ``sha256``."""

DOWNLOAD_TIMEOUT_S = 60.0
"""Seconds a download may stall before it fails."""

DOWNLOAD_DEADLINE_S = 1800.0
"""Seconds a whole download may take (a body trickled just within ``DOWNLOAD_TIMEOUT_S``)."""

MAX_DOWNLOAD_BYTES = 1 << 30
"""Most bytes one download may have (the largest known file, Sports, is about 3 MB; the zip 6 MB)."""

MAX_UNPACKED_BYTES = 256 * 2**20
"""Default cap on the decompressed size of ``ratings.dat`` (the real one is about 24 MB)."""


class DownloadError(RuntimeError):
    """A public dataset could not be obtained or trusted.

    Raised by :func:`download_dataset` when the download fails, a checksum does not match, or
    the MovieLens zip is not the expected archive. A subclass of ``RuntimeError``, so code that
    caught that before still works; the message says what failed and what to do (download by
    hand into ``root``, or load a file you trust with ``load_sequences``).

    Examples:
        >>> from s4rec_components import DownloadError
        >>> issubclass(DownloadError, RuntimeError)
        True
    """


def _shown(url: str) -> str:
    """``url`` without user info, query and fragment, for logs and messages (they may hold secrets)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<an unparsable URL>"
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    hidden = "?..." if parts.query or parts.fragment else ""
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", "")) + hidden


def download_dataset(
    name: DatasetName,
    root: str | Path,
    *,
    url: str | None = None,
    sha256: str | None = None,
    allow_unverified: bool = False,
    max_unpacked_bytes: int = MAX_UNPACKED_BYTES,
) -> Path:
    """Return the path of a public dataset under ``root``, downloading it first if needed.

    * Beauty / Sports / Toys: the preprocessed one-line files of the public ICLRec repository
      (``Beauty.txt``, ``Sports_and_Outdoors.txt``, ``Toys_and_Games.txt``), checked against
      ``KNOWN_SHA256``.
    * ML-1M: GroupLens ``ml-1m.zip`` (checked against the published MD5, ``KNOWN_MD5``); its
      ``ratings.dat`` (``user::item::rating::timestamp``) is converted to ``ml-1m.txt`` in the
      one-line format, preprocessed as the S4Rec paper says (its Section 5.1.1): movies and
      users with fewer than 5 ratings are removed, here repeatedly until none is left to
      remove (``MOVIELENS_MIN_COUNT``; SASRec's file of this preprocessing has 6,040 users and
      3,416 items); each
      user's ratings sorted by timestamp (stable), users in ascending id order, items numbered
      from 1 in order of first occurrence. The MovieLens movie ids go to the sidecar
      ``ml-1m.txt.item_ids.json``, so ``load_sequences`` gives them as ``item_ids``. The zip is
      kept beside it, so a second conversion needs no network.

    Every file is verified on every call (see the module notes): a cached file that fails its
    checksum raises (Beauty / Sports / Toys) or is converted again from the zip (ML-1M).

    Args:
        name: which dataset.
        root: folder to keep the files in (created when missing).
        url: where to download from instead of the public origin (a mirror). Needs ``sha256``
            or ``allow_unverified=True``.
        sha256: expected SHA-256 of the downloaded file (for ML-1M: of the zip); overrides the
            built-in checksum.
        allow_unverified: accept a mirror download without a checksum. Its SHA-256 is logged
            and recorded in ``<file>.sha256``, and every later use is checked against that record.
            It trusts a download, not a file found in ``root`` without such a record (refused).
        max_unpacked_bytes: the most bytes ``ratings.dat`` may inflate to (ML-1M); >= 1.

    Returns:
        Path of the one-line text file.

    Raises:
        TypeError: for arguments of the wrong type.
        ValueError: for an unknown ``name``, a malformed ``sha256``, or a mirror ``url`` without
            ``sha256`` or ``allow_unverified=True`` (raised before any network access).
        DownloadError: (a ``RuntimeError``) if ``root`` (or a folder above it) is a file, or its
            dataset file is a folder or a pipe, if the download fails, exceeds ``MAX_DOWNLOAD_BYTES``
            or ``DOWNLOAD_DEADLINE_S``, a checksum does not match, a cached file has no record to
            check it against, or the zip is not the expected archive or inflates beyond
            ``max_unpacked_bytes``;
            the message says what failed and what to do (download by hand into ``root``, or
            load a file you trust with ``load_sequences``). A failed first download leaves no
            empty ``root`` behind.

    Examples:
        >>> import tempfile
        >>> from s4rec_components import download_dataset
        >>> download_dataset("Beauty", tempfile.mkdtemp(), url="https://example.org/Beauty.txt")
        Traceback (most recent call last):
        ...
        ValueError: url='https://example.org/Beauty.txt' is not the public origin of Beauty: pass sha256=... (the expected SHA-256 of the file), or allow_unverified=True to trust it on first download
    """
    check_choice(name, tuple(DATASET_FILES), "name")
    if url is not None and not isinstance(url, str):
        raise TypeError(f"url must be a str or None, got {type(url).__name__}")
    if sha256 is not None:
        if not isinstance(sha256, str):
            raise TypeError(f"sha256 must be a str or None, got {type(sha256).__name__}")
        if len(sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha256):
            raise ValueError(f"sha256 must be 64 hexadecimal digits, got {sha256!r}")
    check_bool(allow_unverified, "allow_unverified")
    max_unpacked_bytes = check_int(max_unpacked_bytes, "max_unpacked_bytes", 1)
    root = Path(root)
    target = root / DATASET_FILES[name]
    _check_place(root, target)
    origin = MOVIELENS_1M_URL if name == "ML-1M" else ICLREC_DATA_URL + DATASET_FILES[name]
    official = url is None or url == origin
    source = origin if url is None else url
    if not official and sha256 is None and not allow_unverified:
        raise ValueError(
            f"url={_shown(source)!r} is not the public origin of {name}: pass sha256=... (the expected "
            f"SHA-256 of the file), or allow_unverified=True to trust it on first download"
        )
    if sha256 is not None:
        expected: Checksum | None = Checksum("sha256", sha256.lower())
    elif official and name in KNOWN_SHA256:
        expected = Checksum("sha256", KNOWN_SHA256[name])
    elif official and name in KNOWN_MD5:
        expected = Checksum("md5", KNOWN_MD5[name])
    else:
        expected = None
    if name == "ML-1M":
        return _movielens(root, target, source, expected, max_unpacked_bytes)
    _ensure_file(target, source, expected, hand_target=target)
    return target


def _check_place(root: Path, target: Path) -> None:
    """``root`` must be a folder (or not yet exist under folders) and ``target`` a regular file
    or absent: anything else is one ``DownloadError`` naming the path, before any network."""
    for path in (root, *root.parents):
        if path.exists() and not path.is_dir():
            raise DownloadError(f"root {root}: {path} exists and is not a folder; name a folder for the data")
    if target.exists() and not target.is_file():
        raise DownloadError(f"{target} exists and is not a regular file (a folder or a pipe); remove it or "
                            f"name another root")


# ============================================================================= one verified file
def _ensure_file(target: Path, source: str, expected: Checksum | None, hand_target: Path) -> None:
    """Make ``target`` a verified copy of ``source``: check a cached one, else download it."""
    if target.exists():
        _verify_cached(target, expected, source, hand_target)
        return
    created = [folder for folder in (target.parent, *target.parent.parents) if not folder.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    LOG.info("downloading %s", _shown(source))
    try:
        _fetch(source, target, expected, hand_target)
    except BaseException:
        for folder in created:  # innermost first: the folders this call made, if still empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    write_record(target, [target])


def _verify_cached(target: Path, expected: Checksum | None, source: str, hand_target: Path) -> None:
    """Check a cached download against ``expected``, else against its checksum record."""
    if expected is not None:
        ok, actual = matches(target, expected)
        if not ok:
            raise DownloadError(
                f"checksum mismatch for {target}: expected {expected}, got {actual}. Delete the file and "
                f"download {_shown(source)} by hand into {hand_target.parent} (as {hand_target.name}), or "
                f"load a file you trust with load_sequences"
            )
        return  # nothing written: the folder may be read-only (a shared copy of the data)
    problem = check_record(target)
    if problem is None:
        return
    if read_record(target) is None:  # reached only with allow_unverified=True
        # not a file this library downloaded: allow_unverified trusts a download, not what lies there
        raise DownloadError(
            f"{target} has no checksum record to verify it against (this library did not download it, "
            f"or its record {record_path(target).name} was removed). Delete it to download "
            f"{_shown(source)} again, pass sha256=... for it, or load a file you trust with load_sequences"
        )
    raise DownloadError(
        f"checksum mismatch for {target}: {problem}. Delete {target.name} and "
        f"{record_path(target).name} and download {_shown(source)} again into {hand_target.parent}, or "
        f"load a file you trust with load_sequences"
    )


def _fetch(url: str, target: Path, expected: Checksum | None, hand_target: Path) -> None:
    """Download ``url`` to ``target`` through a temporary file; verify or log its digest."""
    handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    temp = Path(temp_name)
    digest = hashlib.new(expected.algorithm if expected is not None else "sha256")
    shown, cap = _shown(url), MAX_DOWNLOAD_BYTES
    by_hand = f"Download it by hand into {hand_target.parent} (as {hand_target.name}), or load a local copy with load_sequences"
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                started, total = time.monotonic(), 0
                with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                    declared = response.headers.get("Content-Length")
                    if declared is not None and declared.strip().isdigit() and int(declared) > cap:
                        raise DownloadError(f"{shown} announces {int(declared)} bytes, more than MAX_DOWNLOAD_BYTES = "
                                            f"{cap}; nothing was written. {by_hand}")
                    for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                        total += len(chunk)
                        if total > cap:
                            raise DownloadError(f"{shown} sent more than MAX_DOWNLOAD_BYTES = {cap} bytes; nothing "
                                                f"was written. {by_hand}")
                        if time.monotonic() - started > DOWNLOAD_DEADLINE_S:
                            raise DownloadError(f"{shown} took longer than DOWNLOAD_DEADLINE_S = "
                                                f"{DOWNLOAD_DEADLINE_S:g} s; nothing was written. {by_hand}")
                        out.write(chunk)
                        digest.update(chunk)
            except (urllib.error.URLError, OSError, ValueError) as err:
                reason = str(err).replace(url, shown)  # urllib may quote the URL with its secrets
                raise DownloadError(f"could not download {shown} ({reason}). {by_hand}") from err
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if expected is not None and actual != expected.hexdigest:
            raise DownloadError(
                f"checksum mismatch for {shown}: expected {expected}, got {actual}; nothing was "
                f"written. Download it by hand into {hand_target.parent} (as {hand_target.name}) and "
                f"check it, or load a file you trust with load_sequences"
            )
        if expected is None:
            LOG.warning("sha256 of %s: %s (not verified: allow_unverified=True)", shown, actual)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


# ============================================================================= MovieLens-1M
def _movielens(root: Path, target: Path, url: str, expected: Checksum | None, cap: int) -> Path:
    """Return a verified ``ml-1m.txt``, converting it (again) from a verified zip when needed."""
    archive = root / MOVIELENS_1M_ZIP
    marker = target.with_name(target.name + ".conversion")
    if target.exists():
        problem = check_record(target)
        record = read_record(target) or {}
        if problem is None and MOVIELENS_1M_ZIP not in record:
            problem = f"{record_path(target).name} does not name {MOVIELENS_1M_ZIP}, the archive it came from"
        if problem is None and expected is not None and not matches(archive, expected)[0]:
            problem = f"{MOVIELENS_1M_ZIP} is not the archive this call asks for ({expected})"
        if problem is None and record.get(marker.name) != _CONVERSION_SHA256:
            problem = "it was converted by an older version of this library (without the 5-core filter)"
        if problem is None:
            return target
        LOG.warning("%s cannot be reused (%s); converting it again from %s", target, problem, MOVIELENS_1M_ZIP)
    _ensure_file(archive, url, expected, hand_target=archive)
    dataset = _convert_movielens(archive, cap)
    dataset.save(target)
    atomic_write_bytes(marker, MOVIELENS_CONVERSION.encode("utf-8"))
    sidecar = item_ids_path(target)  # absent when the movie ids came out as 1..n already
    # the record names the zip too: the converted file is trusted only beside its own archive
    write_record(target, [target, *([sidecar] if sidecar.is_file() else []), archive, marker])
    LOG.info("wrote %s (%d users, %d items)", target, dataset.num_users, dataset.num_items)
    return target


def _capped_lines(stream: IO[bytes], cap: int, source: str) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a binary stream read in blocks; ``DownloadError`` past ``cap`` bytes."""
    total = 0
    number = 0
    carry = b""
    while True:
        block = stream.read(CHUNK_BYTES)
        if not block:
            break
        total += len(block)
        if total > cap:
            raise DownloadError(
                f"{source} inflates to more than max_unpacked_bytes = {cap} bytes; it is not the GroupLens "
                f"file (delete it), or raise max_unpacked_bytes"
            )
        pieces = (carry + block).split(b"\n")
        carry = pieces.pop()
        for piece in pieces:
            number += 1
            yield number, piece.decode("latin-1")
    if carry:
        yield number + 1, carry.decode("latin-1")


_ASCII_ID = re.compile(r"[0-9]{1,30}")  # int() would also take "+1", "1_0" and other scripts' digits
_ASCII_TIME = re.compile(r"-?[0-9]{1,30}")


def _convert_movielens(archive: Path, cap: int) -> SequenceDataset:
    """``ratings.dat`` of ``archive`` -> chronological sequences (stable per user), streamed."""
    source = f"{archive}, {MOVIELENS_RATINGS_MEMBER}"
    per_user: dict[int, list[tuple[int, str]]] = {}
    try:
        with zipfile.ZipFile(archive) as zf:
            info = zf.getinfo(MOVIELENS_RATINGS_MEMBER)
            if info.file_size > cap:
                raise DownloadError(
                    f"{source} declares {info.file_size} bytes, more than max_unpacked_bytes = {cap}; it is "
                    f"not the GroupLens file (delete {archive.name}), or raise max_unpacked_bytes"
                )
            with zf.open(info) as stream:
                for number, raw in _capped_lines(stream, cap, source):
                    line = raw.strip()
                    if not line:
                        continue
                    fields = line.split("::")
                    if len(fields) != 4:
                        raise ValueError(f"{source}, line {number}: expected user::item::rating::timestamp")
                    if not all(_ASCII_ID.fullmatch(fields[i]) for i in (0, 1)) or not _ASCII_TIME.fullmatch(fields[3]):
                        raise ValueError(f"{source}, line {number}: non-integer field in {line[:80]!r}")
                    user, item, when = int(fields[0]), int(fields[1]), int(fields[3])
                    if not 1 <= user < 2**63:  # saved as int64 user ids
                        raise ValueError(f"{source}, line {number}: user id {fields[0][:30]} is not in [1, 2**63)")
                    per_user.setdefault(user, []).append((when, str(item)))
    except (zipfile.BadZipFile, KeyError, EOFError, zlib.error, NotImplementedError) as err:
        raise DownloadError(
            f"{archive} is not the GroupLens ml-1m.zip ({err}); delete it and download "
            f"{MOVIELENS_1M_URL} by hand into {archive.parent}, or load a converted file with load_sequences"
        ) from None
    kept = _k_core(per_user, MOVIELENS_MIN_COUNT)
    items_before = len({item for rows in per_user.values() for _, item in rows})
    items_after = len({item for rows in kept.values() for _, item in rows})
    LOG.info(
        "%s: %d-core filter: %d of %d users and %d of %d movies kept", source, MOVIELENS_MIN_COUNT,
        len(kept), len(per_user), items_after, items_before,
    )
    users = sorted(kept)
    if not users:
        raise ValueError(f"{source}: no user is left with {MOVIELENS_MIN_COUNT} ratings of movies rated "
                         f"{MOVIELENS_MIN_COUNT} times or more")
    sequences = [[item for _, item in sorted(kept[u], key=lambda r: r[0])] for u in users]
    return _index_tokens(sequences, "ML-1M", user_ids=users)


def _k_core(per_user: dict[int, list[tuple[int, str]]], k: int) -> dict[int, list[tuple[int, str]]]:
    """Remove items with fewer than ``k`` rows and users with fewer than ``k`` rows until none is left.

    ``per_user`` maps a user to its ``(timestamp, item)`` rows; the rows kept keep their order.
    Repeated because each removal can push the other side under ``k``.
    """
    while True:
        counts = Counter(item for rows in per_user.values() for _, item in rows)
        rare = {item for item, count in counts.items() if count < k}
        kept = {u: [row for row in rows if row[1] not in rare] for u, rows in per_user.items()}
        kept = {u: rows for u, rows in kept.items() if len(rows) >= k}
        if not rare and len(kept) == len(per_user):
            return kept
        per_user = kept
