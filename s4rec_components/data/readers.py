r"""Readers of sequential-recommendation files into a :class:`SequenceDataset`.

* :func:`load_sequences`: the one-line-per-user text format of the public ICLRec repository
  (``user_id item item ...``); sparse or huge item ids are re-indexed to ``1..n``.
* :func:`load_recbole_inter`: a RecBole atomic ``.inter`` file (tab-separated, typed header);
  item tokens are numbered ``1..n`` and kept as ``item_ids``.

Both read the file line by line and name the file and the 1-based line of every error.

Examples:
    >>> import tempfile, pathlib
    >>> from s4rec_components.data import load_sequences
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "sparse.txt"
    >>> _ = path.write_text("1 2 2 3 1099511627776\n")
    >>> data = load_sequences(path)
    >>> data.num_items, data.sequence(0).tolist(), data.item_ids
    (3, [1, 1, 2, 3], ['2', '3', '1099511627776'])
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch

from .._validation import check_choice
from ._files import item_ids_path, numbered_lines, read_item_ids
from .dataset import MIN_SEQUENCE_LENGTH, SequenceDataset

__all__ = ["REINDEX_MODES", "Reindex", "load_recbole_inter", "load_sequences"]

LOG = logging.getLogger(__name__)

Reindex = Literal["auto", "always", "never"]
"""How :func:`load_sequences` treats raw item ids (see there)."""

REINDEX_MODES: tuple[str, ...] = ("auto", "always", "never")

INT64_MAX = 2**63 - 1
"""Largest id a ``torch.long`` holds."""

_ID_LINE = re.compile(r"[0-9]+(?:[ \t]+[0-9]+)+")
_ASCII_INT = re.compile(r"[0-9]+")
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
# what float() reads, less its "1_000" and non-ASCII digits (inf and nan are refused as not finite)
_FLOAT_TEXT = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE)
_ID_CHARACTERS = frozenset("0123456789 \t")
_CHARACTER_NAMES = {
    "\r": ", a carriage return: lines that end with '\\r' alone (old Mac files) run together",
    "\u00a0": ", a no-break space",
    "\ufeff": ", a byte-order mark",
    "\x0b": ", a vertical tab",
    "\x0c": ", a form feed",
}
_RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")
"""The column types of RecBole's atomic files (its ``FeatureType``)."""


# ============================================================================= one line per user
def _as_path(path: object) -> Path:
    """``path`` as a ``Path``; ``TypeError`` naming the argument for anything else."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike (a file name), got {type(path).__name__}")
    return Path(path)


def load_sequences(path: str | Path, *, name: str | None = None, reindex: Reindex = "auto") -> SequenceDataset:
    """Load the one-line-per-user format ``user_id item item ...`` (ICLRec's ``data/*.txt``).

    Every non-blank line holds a positive integer user id followed by that user's item ids in
    chronological order, separated by spaces or tabs. Blank lines (empty or only whitespace) are
    skipped, so a trailing newline or an empty last line is harmless; so is a byte-order mark.
    Ids are decimal integers, so ``007`` and ``7`` are the same id. Users keep the file's order
    and their ids (which must fit in 64 bits).

    Item ids (``reindex``):

    * ``"auto"`` (default): when the file's distinct item ids are exactly ``1..n`` they are kept
      and ``item_ids`` is ``None`` (ICLRec's files load unchanged). Otherwise (gaps, huge ids
      such as hashes) they are re-indexed to ``1..n`` in increasing numeric order of the raw
      ids, and ``dataset.item_ids`` holds the raw ids (``item_ids[i - 1]`` is internal ``i``).
      When the sidecar ``<path>.item_ids.json`` written by ``SequenceDataset.save`` is present,
      the file holds internal ids and the sidecar's raw ids are used (after checking that the
      sidecar belongs to this very file by its SHA-256).
    * ``"always"``: re-index as above even for ``1..n`` files; the sidecar is ignored.
    * ``"never"``: keep the raw ids (``num_items`` = the largest id, so a huge id makes a huge
      catalogue); the sidecar is ignored.

    Args:
        path: the text file.
        name: label of the dataset; defaults to the file's stem.
        reindex: ``"auto"``, ``"always"`` or ``"never"``, as above.

    Returns:
        A ``SequenceDataset``.

    Raises:
        TypeError: if ``path`` is not a ``str`` or ``os.PathLike``.
        FileNotFoundError: if ``path`` does not exist.
        ValueError: naming the file and the 1-based line number, for a line that is not UTF-8,
            has fewer than 2 fields or a field that is not a positive integer, a repeated
            user id, a user id above ``2**63 - 1``, a user with fewer than 3 items, an item id
            that cannot be kept (``"never"`` and above ``2**63 - 1``) or is outside the sidecar's
            items; naming the file for one with no users or a sidecar of another file.

    Examples:
        >>> import tempfile, pathlib
        >>> from s4rec_components import load_sequences
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "toy.txt").write_text("1 3 1 2\\n\\n2 2 4 5 1\\n")
        >>> data = load_sequences(folder / "toy.txt")
        >>> data.num_users, data.num_items, data.sequence(1).tolist(), data.item_ids
        (2, 5, [2, 4, 5, 1], None)
    """
    check_choice(reindex, REINDEX_MODES, "reindex")
    path = _as_path(path)
    sidecar = item_ids_path(path)
    use_sidecar = reindex == "auto" and sidecar.is_file()
    digest = hashlib.sha256() if use_sidecar else None
    users: list[int] = []
    lines: list[int] = []
    flat: list[int] = []
    lengths: list[int] = []
    seen: dict[int, int] = {}
    for number, raw in numbered_lines(path, digest):
        line = raw.strip()
        if not line:
            continue
        if _ID_LINE.fullmatch(line) is None:
            _diagnose_line(path, number, line, len(raw) - len(raw.lstrip()))
        try:
            values = [int(field) for field in line.split()]
        except ValueError:  # Python's limit on the digits of an int
            raise ValueError(f"{path}, line {number}: an id has too many digits to be read as an integer") from None
        if min(values) < 1:
            raise ValueError(f"{path}, line {number}: ids must be positive integers (0 is padding), got 0")
        user = values[0]
        if user > INT64_MAX:
            raise ValueError(
                f"{path}, line {number}: user id {user} does not fit in 64 bits (user ids are kept as "
                f"they are; only item ids are re-indexed)"
            )
        if user in seen:
            raise ValueError(f"{path}, line {number}: user id {user} repeats the user of line {seen[user]}")
        seen[user] = number
        if len(values) - 1 < MIN_SEQUENCE_LENGTH:
            raise ValueError(
                f"{path}, line {number}: user {user} has {len(values) - 1} item(s); the leave-one-out "
                f"split needs at least {MIN_SEQUENCE_LENGTH}"
            )
        users.append(user)
        lines.append(number)
        lengths.append(len(values) - 1)
        flat.extend(values[1:])
    if not users:
        raise ValueError(f"{path}: the file holds no users (empty or only blank lines)")

    def line_of(bad: Callable[[int], bool]) -> int:
        start = 0
        for number, length in zip(lines, lengths):
            if any(bad(v) for v in flat[start : start + length]):
                return number
            start += length
        return 0  # pragma: no cover - called only when an offending line exists

    item_ids: list[str] | None = None
    largest = max(flat)
    if use_sidecar and digest is not None:
        item_ids, data_sha256 = read_item_ids(sidecar)
        if digest.hexdigest() != data_sha256:
            raise ValueError(
                f"{sidecar} belongs to another version of {path.name} (the sha256 it records differs); "
                f"delete it to load the raw ids, or save the dataset again"
            )
        n = len(item_ids)
        if largest > n:
            raise ValueError(
                f"{path}, line {line_of(lambda v: v > n)}: item id outside 1..{n}, the items of {sidecar.name}"
            )
        num_items = n
    else:
        distinct = set(flat)
        keep = reindex == "never" or (reindex == "auto" and largest == len(distinct))
        if keep:
            if largest > INT64_MAX:
                raise ValueError(
                    f"{path}, line {line_of(lambda v: v > INT64_MAX)}: item id does not fit in 64 bits; "
                    f"re-indexing cannot apply with reindex='never' (use 'auto')"
                )
            num_items = largest
        else:
            order = sorted(distinct)
            index = {raw: i for i, raw in enumerate(order, start=1)}
            flat = [index[v] for v in flat]
            item_ids = [str(raw) for raw in order]
            num_items = len(order)
            LOG.info("%s: %d distinct item ids re-indexed to 1..%d (largest raw id %d)", path, num_items, num_items, largest)
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.long)
    torch.cumsum(torch.tensor(lengths, dtype=torch.long), 0, out=offsets[1:])
    return SequenceDataset(
        torch.tensor(flat, dtype=torch.long),
        offsets,
        torch.tensor(users, dtype=torch.long),
        num_items=num_items,
        name=name or path.stem,
        item_ids=item_ids,
    )


def _diagnose_line(path: Path, number: int, line: str, indent: int) -> None:
    """Raise the precise error of a line that failed the fast format check (``line`` stripped
    of the ``indent`` leading whitespace characters of the file's line)."""
    fields = line.split()
    if len(fields) < 2:
        raise ValueError(
            f"{path}, line {number}: expected 'user_id item item ...' (at least 2 fields), got {line!r}"
        )
    for field in fields:
        if _ASCII_INT.fullmatch(field) is None:
            named = next((c for c in field if c in _CHARACTER_NAMES), None)
            hint = "" if named is None else f" (it holds U+{ord(named):04X}{_CHARACTER_NAMES[named]})"
            raise ValueError(f"{path}, line {number}: {field!r} is not a positive integer id{hint}")
    # every field is digits once split on any whitespace: a separator other than space or tab
    odd = next(c for c in line if c not in _ID_CHARACTERS)
    raise ValueError(
        f"{path}, line {number}: unexpected character {odd!r} (U+{ord(odd):04X}"
        f"{_CHARACTER_NAMES.get(odd, '')}) at column {indent + line.index(odd) + 1}; ids are separated by "
        f"spaces or tabs and lines end with '\\n' or '\\r\\n'"
    )


# ============================================================================= RecBole .inter
def load_recbole_inter(
    path: str | Path,
    *,
    user_field: str | None = None,
    item_field: str | None = None,
    time_field: str | None = None,
    name: str | None = None,
) -> SequenceDataset:
    """Load a RecBole atomic ``.inter`` file into chronological sequences.

    The file is tab-separated (UTF-8; a byte-order mark is dropped); its first line names the
    columns as ``name:type`` (for example
    ``user_id:token  item_id:token  rating:float  timestamp:float``). The user, item and time
    columns are found by name (``user_id``, ``item_id``, ``timestamp`` unless given). Without a
    time column (and none requested) the file's row order is taken as chronological; a warning
    names any float column whose name holds "time" or "date" (Yelp's ``date:float``), which
    ``time_field=`` would use.

    Documented behaviour:

    * timestamps written as integers are compared as exact integers (no rounding, also above
      ``2**53``); others are read as floats; NaN and infinities are refused;
    * each user's interactions are sorted by timestamp with a stable sort (equal timestamps keep
      the file's order);
    * users with fewer than 3 interactions are DROPPED (the leave-one-out split needs 3); their
      number is logged with ``logging.warning``;
    * users are numbered ``1..u`` in order of first appearance in the file (their original tokens
      are not kept), and items are numbered from 1 in the order they first occur when the kept
      users' sorted sequences are read one after another; ``dataset.item_ids`` holds the item
      tokens (``None`` when the tokens are exactly ``"1".."n"`` in that order), so saving the
      result with ``SequenceDataset.save`` and loading it back gives the same ids and tokens.

    Args:
        path: the ``.inter`` file.
        user_field: user column name (default ``"user_id"``).
        item_field: item column name (default ``"item_id"``).
        time_field: timestamp column name (default ``"timestamp"``, optional when not given).
        name: label of the dataset; defaults to the file's stem.

    Returns:
        A ``SequenceDataset``.

    Raises:
        TypeError: if ``path`` is not a ``str`` or ``os.PathLike``.
        FileNotFoundError: if ``path`` does not exist.
        ValueError: naming the file (and 1-based line number) for a malformed header (a field
            that is not ``name:type``, holds several of them, or has a type other than
            ``token``, ``token_seq``, ``float``, ``float_seq``), no rows after it, a missing
            column, a row with the wrong number of fields, an empty user/item token, a
            timestamp that is not a finite number, a line that is not UTF-8, or no user left
            with 3 interactions.

    Examples:
        >>> import tempfile, pathlib
        >>> from s4rec_components import load_recbole_inter
        >>> rows = ["user_id:token\\titem_id:token\\ttimestamp:float",
        ...         "a\\tx\\t3", "a\\ty\\t1", "a\\tz\\t2", "b\\tq\\t1"]
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "toy.inter").write_text("\\n".join(rows) + "\\n")
        >>> data = load_recbole_inter(folder / "toy.inter")  # user b (1 row) is dropped
        >>> data.num_users, data.sequence(0).tolist(), data.item_ids
        (1, [1, 2, 3], ['y', 'z', 'x'])
    """
    path = _as_path(path)
    rows = numbered_lines(path)
    header_number, header_text = next(((i, t) for i, t in rows if t.strip()), (0, ""))
    if header_number == 0:
        raise ValueError(f"{path}: empty file; expected a header line like 'user_id:token\\titem_id:token'")
    names: list[str] = []
    kinds: list[str] = []
    for field in header_text.rstrip("\r").split("\t"):
        column, sep, kind = field.strip().partition(":")
        if len(field.split()) > 1 and field.count(":") > 1:  # "name:type name:type": one field
            raise ValueError(
                f"{path}, line {header_number}: header field {field!r} holds several 'name:type' "
                f"pairs; RecBole atomic files separate their columns with tabs"
            )
        if not sep or not column:
            raise ValueError(
                f"{path}, line {header_number}: header field {field!r} is not 'name:type' "
                f"(RecBole atomic files are tab-separated with typed column names)"
            )
        if kind not in _RECBOLE_TYPES:
            raise ValueError(
                f"{path}, line {header_number}: column {column!r} has type {kind!r}; RecBole's types are "
                f"{', '.join(_RECBOLE_TYPES)}"
            )
        if column in names:
            raise ValueError(f"{path}, line {header_number}: column {column!r} appears twice in the header")
        names.append(column)
        kinds.append(kind)

    def column_of(requested: str | None, default: str) -> int:
        wanted = requested or default
        if wanted in names:
            return names.index(wanted)
        raise ValueError(f"{path}: no column {wanted!r} in the header; columns are {names}")

    user_col = column_of(user_field, "user_id")
    item_col = column_of(item_field, "item_id")
    time_col = None if time_field is None and "timestamp" not in names else column_of(time_field, "timestamp")
    if time_col is None:
        floats = [n for n, k in zip(names, kinds) if k == "float" and ("time" in n.lower() or "date" in n.lower())]
        if floats:  # a time column under another name (Yelp's date:float) would be ignored
            LOG.warning(
                "%s: no 'timestamp' column; the file's row order is taken as chronological. If %s "
                "holds the time, pass time_field=", path, floats,
            )
        else:
            LOG.info("%s: no timestamp column; the file's row order is taken as chronological", path)

    per_user: dict[str, list[tuple[int | float, str]]] = {}
    width = len(names)
    for number, text in rows:
        raw = text.rstrip("\r")
        if not raw.strip():
            continue
        fields = raw.split("\t")
        if len(fields) != width:
            raise ValueError(f"{path}, line {number}: expected {width} tab-separated fields, got {len(fields)}")
        user, item = fields[user_col].strip(), fields[item_col].strip()
        if not user or not item:
            raise ValueError(f"{path}, line {number}: empty user or item token")
        when = 0 if time_col is None else _timestamp(fields[time_col], path, number)
        per_user.setdefault(user, []).append((when, item))

    if not per_user:
        raise ValueError(f"{path}: no rows after the header (line {header_number})")
    kept = {u: entries for u, entries in per_user.items() if len(entries) >= MIN_SEQUENCE_LENGTH}
    dropped = len(per_user) - len(kept)
    if dropped:
        LOG.warning(
            "%s: dropped %d of %d users with fewer than %d interactions (the leave-one-out split needs %d)",
            path, dropped, len(per_user), MIN_SEQUENCE_LENGTH, MIN_SEQUENCE_LENGTH,
        )
    if not kept:
        raise ValueError(f"{path}: no user has at least {MIN_SEQUENCE_LENGTH} interactions")
    sequences = [[item for _, item in sorted(entries, key=lambda r: r[0])] for entries in kept.values()]
    return _index_tokens(sequences, name or path.stem)


def _timestamp(field: str, path: Path, number: int) -> int | float:
    """An integer timestamp as an exact ``int``, any other as a finite ``float``."""
    text = field.strip()
    if _INT_TEXT.fullmatch(text) is not None:
        try:
            return int(text)
        except ValueError:  # Python's limit on the digits of an int
            raise ValueError(f"{path}, line {number}: timestamp has too many digits") from None
    if _FLOAT_TEXT.fullmatch(text) is None:
        raise ValueError(f"{path}, line {number}: timestamp {text[:40]!r} is not a number")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{path}, line {number}: timestamp {text!r} is not finite")
    return value


def _index_tokens(sequences: list[list[str]], name: str, user_ids: list[int] | None = None) -> SequenceDataset:
    """Number item tokens from 1 in order of first occurrence; keep them as ``item_ids``.

    Users are numbered ``1..u`` in the given order unless ``user_ids`` is given. ``item_ids``
    is ``None`` when the tokens are exactly ``"1".."n"`` in that order.
    """
    index: dict[str, int] = {}
    flat: list[int] = []
    lengths: list[int] = []
    for seq in sequences:
        for item in seq:
            flat.append(index.setdefault(item, len(index) + 1))
        lengths.append(len(seq))
    tokens = list(index)
    identity = all(token == str(i) for i, token in enumerate(tokens, start=1))
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.long)
    torch.cumsum(torch.tensor(lengths, dtype=torch.long), 0, out=offsets[1:])
    users = None if user_ids is None else torch.tensor(user_ids, dtype=torch.long)
    return SequenceDataset(
        torch.tensor(flat, dtype=torch.long),
        offsets,
        users,
        num_items=len(tokens),
        name=name,
        item_ids=None if identity else tokens,
    )
