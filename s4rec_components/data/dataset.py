r"""Sequential-recommendation datasets: loading, generation, download and the leave-one-out split.

Every loader returns a ``SequenceDataset``: one chronological item sequence per user, item ids
``1..n`` (0 is padding everywhere in this library). ``SequenceDataset.split`` builds the
leave-one-out protocol of S4Rec Section 5.1.2 (and of the S3-Rec / CoSeRec / ICLRec line of work):
for a user with items $(s_1, \dots, s_T)$,

$$
\text{train} = (s_1, \dots, s_{T-2}), \qquad
\text{valid target} = s_{T-1}, \qquad \text{test target} = s_T .
$$

Sources:

* ``load_sequences``: the one-line-per-user text format of the public ICLRec repository
  (``user_id item item ...``);
* ``load_recbole_inter``: a RecBole atomic ``.inter`` file;
* ``generate_synthetic``: a small dataset with latent intents and sequential structure, for
  tests and quick runs;
* ``download_dataset``: fetches Beauty / Sports / Toys (ICLRec's ``data/`` folder) or MovieLens-1M
  (GroupLens) and converts the latter to the one-line format.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import re
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from ._validation import check_choice, check_integer, check_ndim

LOG = logging.getLogger(__name__)

MIN_SEQUENCE_LENGTH = 3
"""Fewest items a user needs: one to train on, one validation and one test target."""

PADDING_ID = 0
"""Item id 0 pads sequences; real items are numbered from 1."""

SPLITS = ("valid", "test")

_ID_LINE = re.compile(r"[0-9]+(?:[ \t]+[0-9]+)+")
_ASCII_INT = re.compile(r"[0-9]+")

# ----------------------------------------------------------------------------- download table
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

KNOWN_SHA256: dict[str, str] = {
    "Beauty": "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
    "Sports": "2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2",
    "Toys": "176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f",
}
"""SHA-256 of the preprocessed text files as published in ICLRec's ``data/`` folder.

The ML-1M text is produced locally by the converter, so it has no entry; the GroupLens zip is
checked only when the caller passes its checksum.
"""

DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK_BYTES = 1 << 20


# ============================================================================= the dataset
class SequenceDataset:
    r"""Chronological item sequences of many users, stored flat.

    The sequences are concatenated into one long tensor ``items`` with ``offsets`` marking where
    each user starts: user ``u`` owns ``items[offsets[u]:offsets[u + 1]]``. Item ids are
    ``1..num_items`` (0 is padding and never appears), and every user has at least
    ``MIN_SEQUENCE_LENGTH = 3`` items so that ``split`` can hold out two of them.

    Args:
        items: ``(m,)`` integer tensor, all sequences concatenated, ids in ``1..num_items``.
        offsets: ``(u + 1,)`` integer tensor, non-decreasing, ``offsets[0] = 0`` and
            ``offsets[-1] = m``.
        user_ids: ``(u,)`` the users' original ids (defaults to ``1..u``).
        num_items: the largest item id the model must score; defaults to ``items.max()`` and may
            be larger (ids that never occur).
        name: a label for logs and results.

    Shape:
        - items: $(m,)$ with $m = \sum_u T_u$ interactions.
        - offsets: $(u + 1,)$.
        - lengths: $(u,)$, $T_u$.

    Raises:
        TypeError: if a tensor argument is not an integer tensor.
        ValueError: on inconsistent offsets, ids out of range or a user with fewer than 3 items.

    Examples:
        >>> import torch
        >>> from s4rec_components import SequenceDataset
        >>> data = SequenceDataset(torch.tensor([1, 2, 3, 4, 2, 3, 5]), torch.tensor([0, 4, 7]))
        >>> len(data), data.num_items, data.lengths.tolist()
        (2, 5, [4, 3])
        >>> data.sequence(1).tolist()
        [2, 3, 5]
    """

    def __init__(
        self,
        items: Tensor,
        offsets: Tensor,
        user_ids: Tensor | None = None,
        num_items: int | None = None,
        name: str = "dataset",
    ) -> None:
        check_ndim(items, 1, "items", "(m,)")
        check_integer(items, "items")
        check_ndim(offsets, 1, "offsets", "(u + 1,)")
        check_integer(offsets, "offsets")
        if offsets.numel() < 2:
            raise ValueError(
                f"offsets must hold at least one user (shape (u + 1,)), got {tuple(offsets.shape)}"
            )
        items = items.to(torch.long).cpu()
        offsets = offsets.to(torch.long).cpu()
        if int(offsets[0]) != 0 or int(offsets[-1]) != items.numel():
            raise ValueError(
                f"offsets must start at 0 and end at len(items) = {items.numel()}, "
                f"got {int(offsets[0])} and {int(offsets[-1])}"
            )
        lengths = offsets[1:] - offsets[:-1]
        if int(lengths.min()) < MIN_SEQUENCE_LENGTH:
            user = int(torch.nonzero(lengths < MIN_SEQUENCE_LENGTH)[0])
            raise ValueError(
                f"every user needs >= {MIN_SEQUENCE_LENGTH} items for the leave-one-out split; "
                f"user index {user} has {int(lengths[user])}"
            )
        low = int(items.min())
        largest = int(items.max())
        if low < 1:
            raise ValueError(f"items must be ids >= 1 (0 is padding), got a minimum of {low}")
        if num_items is None:
            num_items = largest
        if num_items < largest:
            raise ValueError(f"num_items must be >= the largest item id {largest}, got {num_items}")
        if user_ids is None:
            user_ids = torch.arange(1, lengths.numel() + 1)
        check_ndim(user_ids, 1, "user_ids", "(u,)")
        check_integer(user_ids, "user_ids")
        if user_ids.numel() != lengths.numel():
            raise ValueError(
                f"user_ids must have one entry per user ({lengths.numel()}), got shape {tuple(user_ids.shape)}"
            )
        self.items = items
        self.offsets = offsets
        self.user_ids = user_ids.to(torch.long).cpu()
        self.lengths = lengths
        self.num_items = int(num_items)
        self.name = name

    # ------------------------------------------------------------------ basic access
    @classmethod
    def from_sequences(
        cls,
        sequences: Sequence[Sequence[int]],
        user_ids: Sequence[int] | None = None,
        num_items: int | None = None,
        name: str = "dataset",
    ) -> SequenceDataset:
        """Build from Python lists (one list of item ids per user); convenient for small data."""
        lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
        offsets = torch.zeros(lengths.numel() + 1, dtype=torch.long)
        torch.cumsum(lengths, 0, out=offsets[1:])
        flat = torch.tensor([i for s in sequences for i in s], dtype=torch.long)
        users = None if user_ids is None else torch.as_tensor(list(user_ids), dtype=torch.long)
        return cls(flat, offsets, users, num_items=num_items, name=name)

    @property
    def num_users(self) -> int:
        """Number of users (sequences)."""
        return self.lengths.numel()

    @property
    def num_interactions(self) -> int:
        """Total number of items over all sequences."""
        return self.items.numel()

    def __len__(self) -> int:
        return self.num_users

    def __repr__(self) -> str:
        return (
            f"SequenceDataset(name={self.name!r}, users={self.num_users}, items={self.num_items}, "
            f"interactions={self.num_interactions})"
        )

    def sequence(self, user: int) -> Tensor:
        """The ``(T_u,)`` item sequence of the user at index ``user`` (0-based, file order)."""
        return self.items[int(self.offsets[user]) : int(self.offsets[user + 1])]

    def statistics(self) -> dict[str, float | int | str]:
        """Summary numbers: users, items (largest id), distinct items, interactions, lengths, sparsity.

        ``sparsity`` is $1 - m / (u \\cdot n)$, the share of empty user-item cells.
        """
        users, items, m = self.num_users, self.num_items, self.num_interactions
        lengths = self.lengths.double()
        return {
            "name": self.name,
            "users": users,
            "items": items,
            "distinct_items": int(torch.unique(self.items).numel()),
            "interactions": m,
            "avg_length": float(lengths.mean()),
            "min_length": int(self.lengths.min()),
            "max_length": int(self.lengths.max()),
            "median_length": float(lengths.median()),
            "sparsity": 1.0 - m / (users * items),
        }

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the one-line-per-user format (``user_id item item ...``) atomically; return the path."""
        path = Path(path)
        bounds = self.offsets.tolist()
        flat = self.items.tolist()
        lines = [
            " ".join(map(str, [user, *flat[bounds[u] : bounds[u + 1]]]))
            for u, user in enumerate(self.user_ids.tolist())
        ]
        _atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("ascii"))
        return path

    # ------------------------------------------------------------------ the split
    def split(self, max_len: int = 50) -> LeaveOneOutSplit:
        r"""The leave-one-out split of every user, as padded tensors (see ``LeaveOneOutSplit``).

        Args:
            max_len: $l$, the model's input length; inputs keep their last ``max_len``
                items, left-padded with 0. Must be >= 1.

        Returns:
            A ``LeaveOneOutSplit`` on the CPU.

        Raises:
            ValueError: if ``max_len < 1``.

        Examples:
            >>> import torch
            >>> from s4rec_components import SequenceDataset
            >>> split = SequenceDataset.from_sequences([[1, 2, 3, 4, 5]]).split(max_len=3)
            >>> split.train_inputs.tolist(), split.train_targets.tolist()
            ([[0, 1, 2]], [[0, 2, 3]])
            >>> split.test_inputs.tolist(), split.test_targets.tolist()
            ([[2, 3, 4]], [5])
        """
        if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 1:
            raise ValueError(f"max_len must be an integer >= 1, got {max_len!r}")
        starts, n = self.offsets[:-1], self.lengths
        longest = int(n.max())
        history = longest - 1

        train_inputs = _window(self.items, starts, n - 3, max_len)
        train_targets = _window(self.items, starts + 1, n - 3, max_len)
        return LeaveOneOutSplit(
            train_inputs=train_inputs,
            train_targets=train_targets,
            valid_inputs=_window(self.items, starts, n - 2, max_len),
            valid_targets=self.items[starts + n - 2],
            test_inputs=_window(self.items, starts, n - 1, max_len),
            test_targets=self.items[starts + n - 1],
            valid_history=_prefix(self.items, starts, n - 2, history),
            test_history=_prefix(self.items, starts, n - 1, history),
            user_items=_prefix(self.items, starts, n, history + 1),
            lengths=n.clone(),
            num_items=self.num_items,
            max_len=max_len,
        )


def _window(items: Tensor, starts: Tensor, counts: Tensor, width: int) -> Tensor:
    """``(u, width)``: the last ``min(count, width)`` items from ``starts``, left-padded with 0."""
    cols = torch.arange(width, device=items.device)
    position = counts.unsqueeze(1) - width + cols  # index inside the user's slice
    index = (starts.unsqueeze(1) + position).clamp_min(0)
    return items.take(index).masked_fill_(position < 0, PADDING_ID)


def _prefix(items: Tensor, starts: Tensor, counts: Tensor, width: int) -> Tensor:
    """``(u, width)``: the first ``count`` items from ``starts``, right-padded with 0."""
    cols = torch.arange(width, device=items.device)
    index = (starts.unsqueeze(1) + cols).clamp_max(items.numel() - 1)
    return items.take(index).masked_fill_(cols >= counts.unsqueeze(1), PADDING_ID)


@dataclass
class LeaveOneOutSplit:
    r"""Leave-one-out split of every user as padded tensors, built once (S4Rec Section 5.1.2).

    For a user with items $(s_1, \dots, s_T)$, $T \ge 3$, and the model length
    $l$ (``max_len``):

    $$
    \text{train inputs} = (s_1, \dots, s_{T-3}), \quad
    \text{train targets} = (s_2, \dots, s_{T-2}), \\
    \text{valid}: (s_1, \dots, s_{T-2}) \mapsto s_{T-1}, \qquad
    \text{test}: (s_1, \dots, s_{T-1}) \mapsto s_T .
    $$

    Model inputs keep their last $l$ items and are LEFT-padded with 0, so the most recent
    item is always in column ``l - 1``; ``train_targets[u, j]`` is the item that follows
    ``train_inputs[u, j]`` (0 where the input is padding). Histories are NOT truncated: they hold
    every item the user interacted with before the target, RIGHT-padded with 0, and feed the
    "exclude already-seen items" rule of the full-ranking evaluation.

    Attributes:
        train_inputs: ``(u, l)`` long.
        train_targets: ``(u, l)`` long.
        valid_inputs: ``(u, l)`` long.
        valid_targets: ``(u,)`` long.
        test_inputs: ``(u, l)`` long.
        test_targets: ``(u,)`` long.
        valid_history: ``(u, h)`` long, $h = \max_u T_u - 1$, all of $s_{1..T-2}$.
        test_history: ``(u, h)`` long, all of $s_{1..T-1}$.
        user_items: ``(u, h + 1)`` long, the whole sequence (to draw negatives outside it).
        lengths: ``(u,)`` long, $T_u$.
        num_items: largest item id $n$.
        max_len: $l$.

    Shape:
        - inputs: $(u, l)$; targets: $(u,)$; histories: $(u, h)$.

    Examples:
        >>> import torch
        >>> from s4rec_components import SequenceDataset
        >>> split = SequenceDataset.from_sequences([[4, 5, 6], [1, 2, 3, 4]]).split(max_len=2)
        >>> split.valid_inputs.tolist(), split.valid_targets.tolist()
        ([[0, 4], [1, 2]], [5, 3])
        >>> split.history("test").tolist()
        [[4, 5, 0], [1, 2, 3]]
    """

    train_inputs: Tensor
    train_targets: Tensor
    valid_inputs: Tensor
    valid_targets: Tensor
    test_inputs: Tensor
    test_targets: Tensor
    valid_history: Tensor
    test_history: Tensor
    user_items: Tensor
    lengths: Tensor
    num_items: int
    max_len: int

    @property
    def num_users(self) -> int:
        """Number of users."""
        return self.lengths.numel()

    @property
    def train_lengths(self) -> Tensor:
        """``(u,)`` length of each training sequence, $T_u - 2$."""
        return self.lengths - 2

    @property
    def device(self) -> torch.device:
        """Where the tensors live."""
        return self.lengths.device

    def to(self, device: torch.device | str) -> LeaveOneOutSplit:
        """A copy with every tensor moved to ``device``."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), Tensor)
        }
        return dataclasses.replace(self, **moved)

    def inputs(self, split: Literal["valid", "test"]) -> Tensor:
        """``(u, l)`` model inputs of the ``"valid"`` or ``"test"`` split."""
        check_choice(split, SPLITS, "split")
        return self.valid_inputs if split == "valid" else self.test_inputs

    def targets(self, split: Literal["valid", "test"]) -> Tensor:
        """``(u,)`` held-out items of the ``"valid"`` or ``"test"`` split."""
        check_choice(split, SPLITS, "split")
        return self.valid_targets if split == "valid" else self.test_targets

    def history(self, split: Literal["valid", "test"]) -> Tensor:
        """``(u, h)`` every item before the target of the ``"valid"`` or ``"test"`` split."""
        check_choice(split, SPLITS, "split")
        return self.valid_history if split == "valid" else self.test_history


# ============================================================================= text loaders
def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a UTF-8 text file ({err})") from None


def load_sequences(path: str | Path, name: str | None = None) -> SequenceDataset:
    """Load the one-line-per-user format ``user_id item item ...`` (ICLRec's ``data/*.txt``).

    Every non-blank line holds a positive integer user id followed by that user's item ids in
    chronological order, separated by spaces or tabs. Blank lines (empty or only whitespace) are
    skipped, so a trailing newline or an empty last line is harmless. Users keep the file's order;
    ``num_items`` is the largest item id.

    Args:
        path: the text file.
        name: label of the dataset; defaults to the file's stem.

    Returns:
        A ``SequenceDataset``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: naming the file and the 1-based line number, for a line with fewer than 2
            fields, a field that is not a positive integer, a repeated user id, a user with fewer
            than 3 items, or a file with no users at all.

    Examples:
        >>> import tempfile, pathlib
        >>> from s4rec_components import load_sequences
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "toy.txt").write_text("1 3 1 2\\n\\n2 2 4 5 1\\n")
        >>> data = load_sequences(folder / "toy.txt")
        >>> data.num_users, data.num_items, data.sequence(1).tolist()
        (2, 5, [2, 4, 5, 1])
    """
    path = Path(path)
    text = _read_text(path)
    users: list[int] = []
    flat: list[int] = []
    lengths: list[int] = []
    seen: dict[int, int] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        if _ID_LINE.fullmatch(line) is None:
            _diagnose_line(path, number, line)
        values = list(map(int, line.split()))
        if min(values) < 1:
            raise ValueError(f"{path}, line {number}: ids must be positive integers (0 is padding), got 0")
        user = values[0]
        if user in seen:
            raise ValueError(f"{path}, line {number}: user id {user} repeats the user of line {seen[user]}")
        seen[user] = number
        if len(values) - 1 < MIN_SEQUENCE_LENGTH:
            raise ValueError(
                f"{path}, line {number}: user {user} has {len(values) - 1} item(s); the leave-one-out "
                f"split needs at least {MIN_SEQUENCE_LENGTH}"
            )
        users.append(user)
        lengths.append(len(values) - 1)
        flat.extend(values[1:])
    if not users:
        raise ValueError(f"{path}: the file holds no users (empty or only blank lines)")
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.long)
    torch.cumsum(torch.tensor(lengths, dtype=torch.long), 0, out=offsets[1:])
    return SequenceDataset(
        torch.tensor(flat, dtype=torch.long),
        offsets,
        torch.tensor(users, dtype=torch.long),
        name=name or path.stem,
    )


def _diagnose_line(path: Path, number: int, line: str) -> None:
    """Raise the precise error of a line that failed the fast format check."""
    fields = line.split()
    if len(fields) < 2:
        raise ValueError(
            f"{path}, line {number}: expected 'user_id item item ...' (at least 2 fields), got {line!r}"
        )
    for field in fields:
        if _ASCII_INT.fullmatch(field) is None:
            raise ValueError(f"{path}, line {number}: {field!r} is not a positive integer id")
    raise ValueError(f"{path}, line {number}: cannot parse {line!r}")  # pragma: no cover - defensive


def load_recbole_inter(
    path: str | Path,
    user_field: str | None = None,
    item_field: str | None = None,
    time_field: str | None = None,
    name: str | None = None,
) -> SequenceDataset:
    """Load a RecBole atomic ``.inter`` file into chronological sequences.

    The file is tab-separated; its first line names the columns as ``name:type`` (for example
    ``user_id:token  item_id:token  rating:float  timestamp:float``). The user, item and time
    columns are found by name (``user_id``, ``item_id``, ``timestamp`` unless given). Without a
    time column (and none requested) the file's row order is taken as chronological.

    Documented behaviour:

    * each user's interactions are sorted by timestamp with a stable sort (equal timestamps keep
      the file's order);
    * users with fewer than 3 interactions are DROPPED (the leave-one-out split needs 3); their
      number is logged with ``logging.warning``;
    * users are numbered ``1..u`` in order of first appearance in the file (their original tokens
      are not kept), and items are re-indexed from 1 in the order they first occur when the kept
      users' sorted sequences are read one after another; so saving the result with
      ``SequenceDataset.save`` and loading it back gives the same ids.

    Args:
        path: the ``.inter`` file.
        user_field: user column name (default ``"user_id"``).
        item_field: item column name (default ``"item_id"``).
        time_field: timestamp column name (default ``"timestamp"``, optional when not given).
        name: label of the dataset; defaults to the file's stem.

    Returns:
        A ``SequenceDataset``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: naming the file (and 1-based line number) for a malformed header, a missing
            column, a row with the wrong number of fields, an empty user/item token, a
            non-numeric timestamp, or no user left with 3 interactions.

    Examples:
        >>> import tempfile, pathlib
        >>> from s4rec_components import load_recbole_inter
        >>> rows = ["user_id:token\\titem_id:token\\ttimestamp:float",
        ...         "a\\tx\\t3", "a\\ty\\t1", "a\\tz\\t2", "b\\tq\\t1"]
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "toy.inter").write_text("\\n".join(rows) + "\\n")
        >>> data = load_recbole_inter(folder / "toy.inter")  # user b (1 row) is dropped
        >>> data.num_users, data.sequence(0).tolist()
        (1, [1, 2, 3])
    """
    path = Path(path)
    text = _read_text(path)
    lines = text.split("\n")
    header_number = next((i for i, line in enumerate(lines, start=1) if line.strip()), None)
    if header_number is None:
        raise ValueError(f"{path}: empty file; expected a header line like 'user_id:token\\titem_id:token'")
    header = lines[header_number - 1].rstrip("\r").split("\t")
    names = []
    for field in header:
        column, sep, _kind = field.strip().partition(":")
        if not sep or not column:
            raise ValueError(
                f"{path}, line {header_number}: header field {field!r} is not 'name:type' "
                f"(RecBole atomic files are tab-separated with typed column names)"
            )
        names.append(column)

    def column_of(requested: str | None, default: str, required: bool) -> int | None:
        wanted = requested or default
        if wanted in names:
            return names.index(wanted)
        if requested is None and not required:
            return None
        raise ValueError(f"{path}: no column {wanted!r} in the header; columns are {names}")

    user_col = column_of(user_field, "user_id", True)
    item_col = column_of(item_field, "item_id", True)
    time_col = column_of(time_field, "timestamp", False)
    if time_col is None:
        LOG.info("%s: no timestamp column; the file's row order is taken as chronological", path)

    per_user: dict[str, list[tuple[float, str]]] = {}
    width = len(names)
    for number in range(header_number + 1, len(lines) + 1):
        raw = lines[number - 1].rstrip("\r")
        if not raw.strip():
            continue
        fields = raw.split("\t")
        if len(fields) != width:
            raise ValueError(
                f"{path}, line {number}: expected {width} tab-separated fields, got {len(fields)}"
            )
        user, item = fields[user_col].strip(), fields[item_col].strip()
        if not user or not item:
            raise ValueError(f"{path}, line {number}: empty user or item token")
        when = 0.0
        if time_col is not None:
            try:
                when = float(fields[time_col])
            except ValueError:
                raise ValueError(
                    f"{path}, line {number}: timestamp {fields[time_col]!r} is not a number"
                ) from None
            if math.isnan(when):
                raise ValueError(f"{path}, line {number}: timestamp is NaN")
        per_user.setdefault(user, []).append((when, item))

    kept = {u: rows for u, rows in per_user.items() if len(rows) >= MIN_SEQUENCE_LENGTH}
    dropped = len(per_user) - len(kept)
    if dropped:
        LOG.warning(
            "%s: dropped %d of %d users with fewer than %d interactions (the leave-one-out split needs %d)",
            path, dropped, len(per_user), MIN_SEQUENCE_LENGTH, MIN_SEQUENCE_LENGTH,
        )
    if not kept:
        raise ValueError(f"{path}: no user has at least {MIN_SEQUENCE_LENGTH} interactions")
    sequences = [[item for _, item in sorted(rows, key=lambda r: r[0])] for rows in kept.values()]
    return _reindexed(sequences, name or path.stem)


def _reindexed(sequences: Iterable[list[str]] | Iterable[list[int]], name: str) -> SequenceDataset:
    """Number items from 1 in order of first occurrence and users 1..u in the given order."""
    index: dict = {}
    flat: list[int] = []
    lengths: list[int] = []
    for seq in sequences:
        for item in seq:
            flat.append(index.setdefault(item, len(index) + 1))
        lengths.append(len(seq))
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.long)
    torch.cumsum(torch.tensor(lengths, dtype=torch.long), 0, out=offsets[1:])
    return SequenceDataset(torch.tensor(flat, dtype=torch.long), offsets, name=name)


# ============================================================================= synthetic data
def generate_synthetic(
    num_users: int = 3000,
    num_items: int = 500,
    num_intents: int = 8,
    seed: int = 0,
    min_length: int = 5,
    max_length: int = 60,
    mean_extra_length: float = 6.0,
    follow_prob: float = 0.6,
    second_intent_prob: float = 0.5,
    switch_prob: float = 0.3,
    popularity_skew: float = 2.0,
) -> SequenceDataset:
    r"""A dataset with latent intents, sequential structure and a long tail of sequence lengths.

    The items ``1..num_items`` are cut into ``num_intents`` contiguous blocks, one per intent. A
    user has a main intent and, with probability ``second_intent_prob``, a second one. At every
    step the user picks the second intent with probability ``switch_prob`` (else the main one);
    if it is the intent of the previous step, then with probability ``follow_prob`` the next item is
    the successor of the previous item inside the block (a cycle, so next-item prediction is
    learnable); otherwise an item of the block is drawn with popularity skewed to the block's
    first items (rank $\lfloor B v^{\gamma} \rfloor$, $v \sim U(0, 1)$,
    $\gamma$ = ``popularity_skew``).

    Lengths are $T = T_{min} + G$ with $G$ geometric of mean ``mean_extra_length``,
    truncated so that $T \le T_{max}$: most users are short (tail users), a few are long
    (head users). Everything is drawn from one ``torch.Generator`` seeded with ``seed``, so the
    result is deterministic; users are simulated together, one step at a time.

    Args:
        num_users: $u$, >= 1.
        num_items: $n$, >= ``num_intents``; ``dataset.num_items`` equals it.
        num_intents: $k$, number of item blocks, >= 1.
        seed: random seed.
        min_length: shortest sequence, >= 3.
        max_length: longest sequence, >= ``min_length``.
        mean_extra_length: mean of the untruncated geometric part, > 0.
        follow_prob: chance of the sequential successor move, in [0, 1].
        second_intent_prob: chance a user mixes two intents, in [0, 1].
        switch_prob: per-step chance of using the second intent, in [0, 1].
        popularity_skew: $\gamma \ge 1$; larger is more skewed.

    Returns:
        A ``SequenceDataset`` named ``"synthetic"``.

    Raises:
        ValueError: for out-of-range arguments.

    Examples:
        >>> from s4rec_components import generate_synthetic
        >>> data = generate_synthetic(num_users=100, num_items=50, num_intents=4, seed=1)
        >>> len(data), data.num_items, int(data.lengths.min()) >= 5
        (100, 50, True)
    """
    for value, label, low in (
        (num_users, "num_users", 1),
        (num_intents, "num_intents", 1),
        (min_length, "min_length", MIN_SEQUENCE_LENGTH),
    ):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
    if not isinstance(num_items, int) or num_items < num_intents:
        raise ValueError(f"num_items must be an integer >= num_intents = {num_intents}, got {num_items!r}")
    if not isinstance(max_length, int) or max_length < min_length:
        raise ValueError(f"max_length must be an integer >= min_length = {min_length}, got {max_length!r}")
    if not mean_extra_length > 0:
        raise ValueError(f"mean_extra_length must be > 0, got {mean_extra_length!r}")
    for value, label in ((follow_prob, "follow_prob"), (second_intent_prob, "second_intent_prob"),
                         (switch_prob, "switch_prob")):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{label} must lie in [0, 1], got {value!r}")
    if not popularity_skew >= 1.0:
        raise ValueError(f"popularity_skew must be >= 1, got {popularity_skew!r}")

    g = torch.Generator().manual_seed(seed)
    u, k = num_users, num_intents
    # blocks: intent c owns items block_start[c] .. block_start[c] + block_size[c] - 1
    bounds = torch.div(torch.arange(k + 1) * num_items, k, rounding_mode="floor")
    block_start, block_size = bounds[:-1] + 1, bounds[1:] - bounds[:-1]

    # truncated geometric lengths by inverse CDF
    stop = 1.0 / (1.0 + mean_extra_length)  # success probability of the geometric
    span = max_length - min_length + 1
    top = 1.0 - (1.0 - stop) ** span
    v = torch.rand(u, generator=g, dtype=torch.float64) * top
    extra = torch.floor(torch.log1p(-v) / math.log1p(-stop)).long().clamp(0, span - 1)
    lengths = min_length + extra
    longest = int(lengths.max())

    main = torch.randint(0, k, (u,), generator=g)
    other = torch.randint(0, k, (u,), generator=g)
    two = torch.rand(u, generator=g) < second_intent_prob
    other = torch.where(two, other, main)

    out = torch.zeros(u, longest, dtype=torch.long)
    prev_item = torch.zeros(u, dtype=torch.long)
    prev_intent = torch.full((u,), -1, dtype=torch.long)
    for t in range(longest):  # loop over time steps; users are vectorised
        intent = torch.where(torch.rand(u, generator=g) < switch_prob, other, main)
        start, size = block_start[intent], block_size[intent]
        rank = torch.floor(size * torch.rand(u, generator=g) ** popularity_skew).long().clamp_max(size - 1)
        drawn = start + rank
        successor = start + (prev_item - start + 1) % size
        follow = (intent == prev_intent) & (torch.rand(u, generator=g) < follow_prob)
        item = torch.where(follow, successor, drawn)
        out[:, t] = item
        prev_item, prev_intent = item, intent

    keep = torch.arange(longest).unsqueeze(0) < lengths.unsqueeze(1)
    offsets = torch.zeros(u + 1, dtype=torch.long)
    torch.cumsum(lengths, 0, out=offsets[1:])
    return SequenceDataset(out[keep], offsets, num_items=num_items, name="synthetic")


# ============================================================================= download
def download_dataset(
    name: Literal["Beauty", "Sports", "Toys", "ML-1M"],
    root: str | Path,
    url: str | None = None,
    sha256: str | None = None,
) -> Path:
    """Return the path of a public dataset under ``root``, downloading it first if needed.

    * Beauty / Sports / Toys: the preprocessed one-line files of the public ICLRec repository
      (``Beauty.txt``, ``Sports_and_Outdoors.txt``, ``Toys_and_Games.txt``), checked against
      ``KNOWN_SHA256``.
    * ML-1M: GroupLens ``ml-1m.zip``; its ``ratings.dat`` (``user::item::rating::timestamp``) is
      converted to ``ml-1m.txt`` in the one-line format: each user's ratings sorted by timestamp
      (stable), users in ascending id order, items re-indexed from 1 in order of first occurrence,
      every user kept (ML-1M users have >= 20 ratings). The zip is kept beside it, so a second
      conversion needs no network. Its checksum is verified when ``sha256`` is given, else the
      computed one is logged.

    Files are written atomically (a temporary file in ``root`` renamed into place). When the file
    already exists it is returned without network access, after checking its checksum when one
    is known.

    Args:
        name: which dataset.
        root: folder to keep the files in (created when missing).
        url: where to download from instead of the public origin (a mirror). The built-in
            checksums apply only to the public origin; with a mirror, pass ``sha256``.
        sha256: expected SHA-256 of the downloaded file (for ML-1M: of the zip).

    Returns:
        Path of the one-line text file.

    Raises:
        ValueError: for an unknown ``name``.
        RuntimeError: if the download fails or a checksum does not match; the message says what
            failed and what to do (download by hand into ``root`` or pass ``--data PATH``).
    """
    check_choice(name, tuple(DATASET_FILES), "name")
    root = Path(root)
    target = root / DATASET_FILES[name]
    if name == "ML-1M":
        return _download_movielens(root, target, url or MOVIELENS_1M_URL, sha256)
    official = url is None
    source = url or ICLREC_DATA_URL + DATASET_FILES[name]
    expected = sha256 or (KNOWN_SHA256.get(name) if official else None)
    if target.exists():
        if expected is not None:
            _verify(target, expected, source, target)
        return target
    root.mkdir(parents=True, exist_ok=True)
    LOG.info("downloading %s from %s", name, source)
    _fetch(source, target, expected, hand_target=target)
    return target


def _download_movielens(root: Path, target: Path, url: str, sha256: str | None) -> Path:
    if target.exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    archive = root / MOVIELENS_1M_ZIP
    if archive.exists():
        if sha256 is not None:
            _verify(archive, sha256, url, archive)
    else:
        LOG.info("downloading ML-1M from %s", url)
        _fetch(url, archive, sha256, hand_target=archive)
    try:
        with zipfile.ZipFile(archive) as zf:
            raw = zf.read(MOVIELENS_RATINGS_MEMBER)
    except (zipfile.BadZipFile, KeyError) as err:
        raise RuntimeError(
            f"{archive} is not the GroupLens ml-1m.zip ({err}); delete it and download {url} by hand "
            f"into {root}, or pass --data PATH to a converted file"
        ) from None
    dataset = _convert_movielens(raw.decode("latin-1"), str(archive))
    dataset.save(target)
    LOG.info("wrote %s (%d users, %d items)", target, dataset.num_users, dataset.num_items)
    return target


def _convert_movielens(text: str, source: str) -> SequenceDataset:
    """``user::item::rating::timestamp`` lines -> chronological sequences (stable per user)."""
    per_user: dict[int, list[tuple[int, int]]] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if not line:
            continue
        fields = line.split("::")
        if len(fields) != 4:
            raise ValueError(f"{source}, ratings.dat line {number}: expected user::item::rating::timestamp")
        try:
            user, item, when = int(fields[0]), int(fields[1]), int(fields[3])
        except ValueError:
            raise ValueError(
                f"{source}, ratings.dat line {number}: non-integer field in {line!r}"
            ) from None
        per_user.setdefault(user, []).append((when, item))
    short = [u for u, rows in per_user.items() if len(rows) < MIN_SEQUENCE_LENGTH]
    if short:
        LOG.warning("%s: dropped %d users with fewer than %d ratings", source, len(short), MIN_SEQUENCE_LENGTH)
    dropped = set(short)
    users = sorted(u for u in per_user if u not in dropped)
    if not users:
        raise ValueError(f"{source}: no user has at least {MIN_SEQUENCE_LENGTH} ratings")
    sequences = [[item for _, item in sorted(per_user[u], key=lambda r: r[0])] for u in users]
    data = _reindexed(sequences, "ML-1M")
    data.user_ids = torch.tensor(users, dtype=torch.long)
    return data


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, expected: str, source: str, hand_target: Path) -> None:
    actual = _sha256(path)
    if actual != expected.lower():
        raise RuntimeError(
            f"checksum mismatch for {path}: expected sha256 {expected}, got {actual}. Delete the file "
            f"and download {source} by hand into {hand_target.parent} (as {hand_target.name}), "
            f"or pass --data PATH to a file you trust"
        )


def _fetch(url: str, target: Path, expected: str | None, hand_target: Path) -> None:
    """Download ``url`` to ``target`` through a temporary file; verify or log its SHA-256."""
    handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    temp = Path(temp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                    for chunk in iter(lambda: response.read(_CHUNK_BYTES), b""):
                        out.write(chunk)
                        digest.update(chunk)
            except (urllib.error.URLError, OSError, ValueError) as err:
                raise RuntimeError(
                    f"could not download {url} ({err}). Download it by hand into {hand_target.parent} "
                    f"(as {hand_target.name}), or pass --data PATH to a local copy"
                ) from err
        actual = digest.hexdigest()
        if expected is not None and actual != expected.lower():
            raise RuntimeError(
                f"checksum mismatch for {url}: expected sha256 {expected}, got {actual}; nothing was "
                f"written. Download it by hand into {hand_target.parent} (as {hand_target.name}) and "
                f"check it, or pass --data PATH to a file you trust"
            )
        if expected is None:
            LOG.info("sha256 of %s: %s (no known checksum to compare with)", url, actual)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def _atomic_write_bytes(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
        os.replace(temp_name, path)
    finally:
        Path(temp_name).unlink(missing_ok=True)
