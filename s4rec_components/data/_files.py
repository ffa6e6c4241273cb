"""File helpers shared by the data modules (private): atomic writes, checksums, numbered lines.

* ``atomic_write_bytes``: write to a temporary file in the same folder, flush, fsync, then
  ``os.replace``, so a reader sees the old file or the new one, never half of one.
* checksum records: ``<file>.sha256`` beside a file, in ``sha256sum`` format
  (``<hex>  <name>`` per line), written when this library produced or verified the file and
  checked on every later use.
* item-id sidecars: ``<file>.item_ids.json`` beside a one-line dataset file whose ids were
  re-indexed; it holds the raw id of every internal item and the SHA-256 of the data file it
  belongs to.
* ``numbered_lines``: a text file's lines with exact 1-based line numbers, decoded one line
  at a time so that a decoding error names its line.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__: list[str] = []

CHUNK_BYTES = 1 << 20
"""Read and write block size."""

RECORD_SUFFIX = ".sha256"
MAX_RECORD_BYTES = 1 << 16
ITEM_IDS_SUFFIX = ".item_ids.json"
ITEM_IDS_FORMAT = "s4rec_components.item_ids"
ITEM_IDS_VERSION = 1


@dataclass(frozen=True)
class Checksum:
    """An expected digest: ``algorithm`` (``"sha256"`` or ``"md5"``) and its lowercase hex."""

    algorithm: Literal["sha256", "md5"]
    hexdigest: str

    def __str__(self) -> str:
        return f"{self.algorithm} {self.hexdigest}"


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of the file at ``path``, read in blocks."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def matches(path: Path, expected: Checksum) -> tuple[bool, str]:
    """Whether ``path`` has the ``expected`` digest, and the digest it has."""
    actual = file_digest(path, expected.algorithm)
    return actual == expected.hexdigest.lower(), actual


def file_mode(path: Path) -> int:
    """The permission bits for a file written over ``path``: the existing file's, else what
    ``open`` gives a new file (``0o666`` less the umask). ``mkstemp``'s temp files are ``0o600``,
    and ``os.replace`` would hand that to the result."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        umask = os.umask(0o022)  # the only portable way to read it: set, then put it back
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a fsync'ed temporary file and ``os.replace``; the
    file keeps ``path``'s permission bits (:func:`file_mode`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        os.chmod(temp_name, file_mode(path))
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp_name, path)
    finally:
        Path(temp_name).unlink(missing_ok=True)


# ----------------------------------------------------------------------------- checksum records
def record_path(path: Path) -> Path:
    """Where the checksum record of ``path`` lives: ``<path>.sha256``."""
    return path.with_name(path.name + RECORD_SUFFIX)


def write_record(path: Path, files: list[Path]) -> None:
    """Record the SHA-256 of ``files`` (all in ``path``'s folder) in ``record_path(path)``."""
    lines = [f"{file_digest(file)}  {file.name}\n" for file in files]
    atomic_write_bytes(record_path(path), "".join(lines).encode("utf-8"))


def read_record(path: Path) -> dict[str, str] | None:
    """The ``{file name: sha256}`` of ``path``'s record, or ``None`` without a readable one."""
    record = record_path(path)
    try:
        with record.open("rb") as handle:
            raw = handle.read(MAX_RECORD_BYTES + 1)  # a record lists a few files: never read a huge one
        if len(raw) > MAX_RECORD_BYTES:
            return None
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError):  # missing, a folder, unreadable
        return None
    out: dict[str, str] = {}
    for line in text.splitlines():
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name:
            return None
        if name in (".", "..") or "/" in name or "\\" in name or name != name.strip():
            return None  # names a file outside the record's folder: not a record this library wrote
        out[name] = digest.lower()
    return out or None


def check_record(path: Path) -> str | None:
    """``None`` when every file named in ``path``'s record has its recorded SHA-256, else why not."""
    record = read_record(path)
    if record is None:
        return f"no readable checksum record {record_path(path).name}"
    if path.name not in record:
        return f"{record_path(path).name} does not list {path.name}"
    for name, digest in record.items():
        file = path.parent / name
        if not file.is_file():
            return f"{name} is missing"
        actual = file_digest(file)
        if actual != digest:
            return f"{name} has sha256 {actual}, its record says {digest}"
    return None


# ----------------------------------------------------------------------------- item-id sidecars
def item_ids_path(path: Path) -> Path:
    """Where the item-id sidecar of the dataset file ``path`` lives: ``<path>.item_ids.json``."""
    return path.with_name(path.name + ITEM_IDS_SUFFIX)


def write_item_ids(path: Path, item_ids: list[str]) -> Path:
    """Write the sidecar of the dataset file ``path`` (which must already be written)."""
    sidecar = item_ids_path(path)
    payload = {
        "format": ITEM_IDS_FORMAT,
        "version": ITEM_IDS_VERSION,
        "data_sha256": file_digest(path),
        "num_items": len(item_ids),
        "item_ids": item_ids,
    }
    atomic_write_bytes(sidecar, json.dumps(payload).encode("utf-8"))
    return sidecar


def read_item_ids(sidecar: Path) -> tuple[list[str], str]:
    """``(item_ids, data_sha256)`` from a sidecar; ``ValueError`` naming it when malformed."""
    try:
        payload: Any = json.loads(sidecar.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:  # RecursionError: nested too deep
        raise ValueError(f"{sidecar}: not a readable item-id file ({type(err).__name__}: {str(err)[:200]}); "
                         f"delete it or save the dataset again") from None
    if (
        not isinstance(payload, dict)
        or payload.get("format") != ITEM_IDS_FORMAT
        or payload.get("version") != ITEM_IDS_VERSION
        or not isinstance(payload.get("data_sha256"), str)
        or not isinstance(payload.get("item_ids"), list)
        or not all(isinstance(v, str) for v in payload["item_ids"])
        or payload.get("num_items") != len(payload["item_ids"])
    ):
        raise ValueError(
            f"{sidecar}: not an item-id file of format {ITEM_IDS_FORMAT!r} version {ITEM_IDS_VERSION}"
        )
    seen: set[str] = set()
    for position, raw in enumerate(payload["item_ids"]):
        if raw in seen:
            raise ValueError(f"{sidecar}: item id {raw!r} repeats (at position {position}); the ids must be distinct")
        seen.add(raw)
    return list(payload["item_ids"]), str(payload["data_sha256"])


# ----------------------------------------------------------------------------- reading lines
def numbered_lines(path: Path, digest: Any = None) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of every line of ``path``, split on ``\\n`` only, ``\\r`` kept.

    Lines are decoded as UTF-8 one at a time, so an undecodable byte raises ``ValueError``
    naming the file and its line; a byte-order mark at the start of the file is dropped.
    ``digest`` (a ``hashlib`` object), when given, is updated with every byte read.
    """
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if digest is not None:
                digest.update(raw)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}, line {number}: not UTF-8 text ({err})") from None
            if number == 1:
                text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark is no part of the text
            yield number, text[:-1] if text.endswith("\n") else text
