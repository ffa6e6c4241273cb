r"""The dataset of user sequences and its leave-one-out split (S4Rec Section 5.1.2).

``SequenceDataset`` holds one chronological item sequence per user, stored flat (CSR), with
item ids ``1..n`` (0 is padding everywhere in this library). ``SequenceDataset.split`` builds the
leave-one-out protocol of S4Rec and of the S3-Rec / CoSeRec / ICLRec line of work: for a user
with items $(s_1, \dots, s_T)$,

$$
\text{train} = (s_1, \dots, s_{T-2}), \qquad
\text{valid target} = s_{T-1}, \qquad \text{test target} = s_T .
$$

Memory is proportional to the number of interactions $m$: model inputs are $(u, l)$ with the
model length $l$, and histories are :class:`~s4rec_components.ragged.Ragged` rows, never
users x longest history.

Examples:
    >>> from s4rec_components.data import SequenceDataset
    >>> split = SequenceDataset.from_sequences([[1, 2, 3, 4], [2, 3, 4]]).split(3)
    >>> split.test_inputs.tolist(), split.test_history.tolist()
    ([[1, 2, 3], [0, 2, 3]], [[1, 2, 3], [2, 3]])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from .._validation import as_int, check_choice, check_int, check_integer, check_ndim, validate_args_enabled
from ..constants import PADDING_ID
from ..ragged import Ragged, RowIndexError, _checked_lists
from ._files import atomic_write_bytes, item_ids_path, write_item_ids

__all__ = ["MIN_SEQUENCE_LENGTH", "SPLITS", "LeaveOneOutSplit", "SequenceDataset"]

MIN_SEQUENCE_LENGTH = 3
"""Fewest items a user needs: one to train on, one validation and one test target."""

SPLITS = ("valid", "test")
"""The evaluation splits of :class:`LeaveOneOutSplit`."""

Split = Literal["valid", "test"]


class SequenceDataset:
    r"""Chronological item sequences of many users, stored flat.

    The sequences are concatenated into one long tensor ``items`` with ``offsets`` marking where
    each user starts: user ``u`` owns ``items[offsets[u]:offsets[u + 1]]``. Item ids are
    ``1..num_items`` (0 is padding and never appears), and every user has at least
    ``MIN_SEQUENCE_LENGTH = 3`` items so that ``split`` can hold out two of them.

    **Raw ids.** ``item_ids[i - 1]`` is the raw id (as text) of internal item ``i``, as it was in
    the source file; ``None`` means the internal ids are the raw ids (a file whose ids are
    exactly ``1..n``, such as ICLRec's ``data/*.txt``). :meth:`item_index` maps raw ids to
    internal ones. :meth:`save` writes the mapping beside the file, and
    :func:`~s4rec_components.data.load_sequences` reads it back.

    Args:
        items: ``(m,)`` integer tensor, all sequences concatenated, ids in ``1..num_items``.
        offsets: ``(u + 1,)`` integer tensor, non-decreasing, ``offsets[0] = 0`` and
            ``offsets[-1] = m``.
        user_ids: ``(u,)`` the users' original ids (defaults to ``1..u``).
        num_items: $n$, the largest item id the model must score; defaults to
            ``len(item_ids)`` when given, else ``items.max()``, and may be larger (ids that
            never occur).
        name: a label for logs and results.
        item_ids: raw id of every internal item ``1..n`` (``n = num_items`` entries, distinct
            strings), or ``None``.

    Shape:
        - items: $(m,)$ with $m = \sum_u T_u$ interactions.
        - offsets: $(u + 1,)$.
        - lengths: $(u,)$, $T_u$.

    Raises:
        TypeError: if a tensor argument is not an integer tensor, or ``item_ids`` is not a list
            of strings.
        ValueError: on inconsistent offsets, ids out of range, a user with fewer than 3 items,
            or ``item_ids`` of the wrong length or with repeats.

    Examples:
        >>> import torch
        >>> from s4rec_components import SequenceDataset
        >>> data = SequenceDataset(torch.tensor([1, 2, 3, 4, 2, 3, 5]), torch.tensor([0, 4, 7]))
        >>> len(data), data.num_items, data.lengths.tolist()
        (2, 5, [4, 3])
        >>> data.sequence(1).tolist()
        [2, 3, 5]
        >>> raw = SequenceDataset.from_sequences([[1, 2, 3]], item_ids=["17", "4", "1099511627776"])
        >>> raw.num_items, raw.item_index()["1099511627776"]
        (3, 3)
    """

    def __init__(
        self,
        items: Tensor,
        offsets: Tensor,
        user_ids: Tensor | None = None,
        *,
        num_items: int | None = None,
        name: str = "dataset",
        item_ids: list[str] | None = None,
    ) -> None:
        check_ndim(items, 1, "items", "(m,)")
        check_integer(items, "items")
        check_ndim(offsets, 1, "offsets", "(u + 1,)")
        check_integer(offsets, "offsets")
        if offsets.numel() < 2:
            raise ValueError(
                f"offsets must hold at least one user (shape (u + 1,)), got {tuple(offsets.shape)}"
            )
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        items = items.to(torch.long).cpu()
        offsets = offsets.to(torch.long).cpu()
        if user_ids is None:
            user_ids = torch.arange(1, offsets.numel())
        check_ndim(user_ids, 1, "user_ids", "(u,)")
        check_integer(user_ids, "user_ids")
        if user_ids.numel() != offsets.numel() - 1:
            raise ValueError(
                f"user_ids must have one entry per user ({offsets.numel() - 1}), got shape {tuple(user_ids.shape)}"
            )
        counted_from_item_ids = num_items is None and item_ids is not None
        if item_ids is not None:
            item_ids = _checked_item_ids(item_ids)
            if num_items is None:
                num_items = len(item_ids)
        if num_items is not None:
            num_items = check_int(num_items, "num_items", 1)
            if item_ids is not None and len(item_ids) != num_items:
                raise ValueError(
                    f"item_ids must have num_items = {num_items} entries (one per internal item), "
                    f"got {len(item_ids)}"
                )
        lengths = offsets[1:] - offsets[:-1]
        if validate_args_enabled() or num_items is None:
            if int(offsets[0]) != 0 or int(offsets[-1]) != items.numel():
                raise ValueError(
                    f"offsets must start at 0 and end at len(items) = {items.numel()}, "
                    f"got {int(offsets[0])} and {int(offsets[-1])}"
                )
            if int(lengths.min()) < MIN_SEQUENCE_LENGTH:
                user = int(torch.nonzero(lengths < MIN_SEQUENCE_LENGTH)[0])
                raise ValueError(
                    f"every user needs >= {MIN_SEQUENCE_LENGTH} items for the leave-one-out split; "
                    f"user index {user} has {int(lengths[user])}"
                )
            low, largest = int(items.min()), int(items.max())
            if low < 1:
                raise ValueError(f"items must be ids >= 1 (0 is padding), got a minimum of {low}")
            if num_items is None:
                num_items = largest
            if num_items < largest and counted_from_item_ids:
                raise ValueError(
                    f"item_ids must have one raw id per internal item 1..n, so at least the largest "
                    f"item id {largest} entries, got {num_items}"
                )
            if num_items < largest:
                raise ValueError(f"num_items must be >= the largest item id {largest}, got {num_items}")
        self.items = items
        self.offsets = offsets
        self.user_ids = user_ids.to(torch.long).cpu()
        self.lengths = lengths
        self.num_items: int = num_items if num_items is not None else int(items.max())
        self.name = name
        self.item_ids = item_ids

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_sequences(
        cls,
        sequences: Sequence[Sequence[int]],
        user_ids: Sequence[int] | None = None,
        *,
        num_items: int | None = None,
        name: str = "dataset",
        item_ids: list[str] | None = None,
    ) -> SequenceDataset:
        """Build from Python lists (one list of internal item ids per user); for small data.

        The ids are taken as they are (``1..num_items``); raw ids from a file are re-indexed by
        the loaders (:func:`~s4rec_components.data.load_sequences`). Entries must be ints
        (numpy integers and 0-d integer tensors too): floats and bools are refused, never
        truncated.

        Raises:
            TypeError: if ``sequences`` is not a sequence of sequences of ints, or ``user_ids``
                not a sequence of ints.
            ValueError: if ``sequences`` is empty, and as the constructor.

        Examples:
            >>> from s4rec_components import SequenceDataset
            >>> data = SequenceDataset.from_sequences([[1, 2, 3], [3, 4, 2, 1]], [10, 20], name="toy")
            >>> data
            SequenceDataset(name='toy', users=2, items=4, interactions=7)
            >>> data.user_ids.tolist(), data.offsets.tolist()
            ([10, 20], [0, 3, 7])
        """
        flat, offsets = _checked_lists(sequences, "sequences")
        if offsets.numel() == 1:
            raise ValueError("sequences must hold at least one user's items, got an empty sequence")
        users = None
        if user_ids is not None:
            given: object = user_ids
            if isinstance(given, (str, bytes)) or not isinstance(given, (Sequence, Tensor)):
                raise TypeError(f"user_ids must be a sequence of ints, got {type(given).__name__}")
            users = torch.tensor([as_int(v, "user_ids entries") for v in user_ids], dtype=torch.long)
        return cls(flat, offsets, users, num_items=num_items, name=name, item_ids=item_ids)

    # ------------------------------------------------------------------ basic access
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
        """The ``(T_u,)`` item sequence of the user at index ``user`` (0-based, file order;
        negative counts from the end, as for a list).

        Raises:
            TypeError: if ``user`` is not an int (bools and floats refused).
            RowIndexError: (an ``IndexError`` and a ``ValueError``) if ``user`` is out of range.

        Examples:
            >>> from s4rec_components import SequenceDataset
            >>> data = SequenceDataset.from_sequences([[1, 2, 3], [4, 5, 6, 1]])
            >>> data.sequence(0).tolist(), data.sequence(-1).tolist()
            ([1, 2, 3], [4, 5, 6, 1])
        """
        i, u = as_int(user, "user"), self.num_users
        if not -u <= i < u:
            raise RowIndexError(f"user {i} is out of range for {u} users (valid: -{u} .. {u - 1})")
        i %= u
        return self.items[int(self.offsets[i]) : int(self.offsets[i + 1])]

    def item_index(self) -> dict[str, int]:
        """``{raw id: internal id}`` for every item ``1..num_items``.

        With ``item_ids is None`` the raw ids are the internal ones, written as decimal text.
        To go the other way, internal ``i`` has raw id ``item_ids[i - 1]``.

        Examples:
            >>> from s4rec_components import SequenceDataset
            >>> data = SequenceDataset.from_sequences([[1, 2, 2]], item_ids=["b7", "a1"])
            >>> data.item_index()
            {'b7': 1, 'a1': 2}
        """
        if self.item_ids is None:
            return {str(i): i for i in range(1, self.num_items + 1)}
        return {raw: i for i, raw in enumerate(self.item_ids, start=1)}

    def statistics(self) -> dict[str, float | int | str]:
        r"""Summary numbers: users, items (largest id), distinct items, interactions, lengths, sparsity.

        ``sparsity`` is $1 - m / (u \cdot n)$, the share of empty user-item cells;
        ``median_length`` is the usual median (the mean of the two middle lengths when the number
        of users is even, as ``statistics.median``).

        Examples:
            >>> from s4rec_components import SequenceDataset
            >>> SequenceDataset.from_sequences([[1, 2, 3], [3, 4, 2, 1]], name="toy").statistics()
            {'name': 'toy', 'users': 2, 'items': 4, 'distinct_items': 4, 'interactions': 7,
             'avg_length': 3.5, 'min_length': 3, 'max_length': 4, 'median_length': 3.5, 'sparsity': 0.125}
        """
        users, items, m = self.num_users, self.num_items, self.num_interactions
        lengths = self.lengths.double()
        ordered = lengths.sort().values
        return {
            "name": self.name,
            "users": users,
            "items": items,
            "distinct_items": int(torch.unique(self.items).numel()),
            "interactions": m,
            "avg_length": float(lengths.mean()),
            "min_length": int(self.lengths.min()),
            "max_length": int(self.lengths.max()),
            "median_length": float(ordered[(users - 1) // 2] + ordered[users // 2]) / 2,
            "sparsity": 1.0 - m / (users * items),
        }

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the one-line-per-user format (``user_id item item ...``) atomically; return the path.

        The file holds internal ids. When ``item_ids`` is set, the raw ids go to the sidecar
        ``<path>.item_ids.json`` (with the SHA-256 of the file it belongs to), which
        :func:`~s4rec_components.data.load_sequences` reads back; a stale sidecar of an earlier
        save is removed otherwise.

        Raises:
            ValueError: if a user id is below 1 or repeats (the file could not be read back);
                nothing is written then.

        Examples:
            >>> import pathlib, tempfile
            >>> from s4rec_components import SequenceDataset, load_sequences
            >>> data = SequenceDataset.from_sequences([[1, 2, 3], [3, 1, 2]], item_ids=["17", "4", "99"])
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     path = data.save(pathlib.Path(folder) / "toy.txt")  # internal ids + sidecar
            ...     print(path.read_text().splitlines(), load_sequences(path).item_ids)
            ['1 1 2 3', '2 3 1 2'] ['17', '4', '99']
        """
        path = Path(path)
        users = self.user_ids.tolist()
        if min(users) < 1:  # what load_sequences would refuse to read back
            raise ValueError(f"user_ids must be ids >= 1 to be saved (the file format's rule), got {min(users)}")
        seen: set[int] = set()
        for user in users:
            if user in seen:
                raise ValueError(f"user_ids must be distinct to be saved (the file format's rule), got {user} twice")
            seen.add(user)
        bounds = self.offsets.tolist()
        flat = self.items.tolist()
        lines = [
            " ".join(map(str, [user, *flat[bounds[u] : bounds[u + 1]]]))
            for u, user in enumerate(users)
        ]
        atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("ascii"))
        if self.item_ids is not None:
            write_item_ids(path, self.item_ids)
        else:
            item_ids_path(path).unlink(missing_ok=True)
        return path

    # ------------------------------------------------------------------ the split
    def split(self, max_len: int = 50) -> LeaveOneOutSplit:
        r"""The leave-one-out split of every user (see :class:`LeaveOneOutSplit`).

        Time and memory are $O(m + u \cdot l)$ for $m$ interactions, $u$ users and
        $l$ = ``max_len``.

        Args:
            max_len: $l$, the model's input length; inputs keep their last ``max_len``
                items, left-padded with 0. Must be >= 1.

        Returns:
            A ``LeaveOneOutSplit`` on the CPU.

        Raises:
            TypeError: if ``max_len`` is not an int.
            ValueError: if ``max_len < 1``.

        Examples:
            >>> from s4rec_components import SequenceDataset
            >>> split = SequenceDataset.from_sequences([[1, 2, 3, 4, 5]]).split(max_len=3)
            >>> split.train_inputs.tolist(), split.train_targets.tolist()
            ([[0, 1, 2]], [[0, 2, 3]])
            >>> split.test_inputs.tolist(), split.test_targets.tolist()
            ([[2, 3, 4]], [5])
        """
        max_len = check_int(max_len, "max_len", 1)
        return _split_impl(self.items, self.offsets, self.num_items, max_len)


def _split_impl(items: Tensor, offsets: Tensor, num_items: int, max_len: int) -> LeaveOneOutSplit:
    """The split of validated flat sequences (every user has >= 3 items)."""
    starts, ends = offsets[:-1], offsets[1:]
    n = ends - starts
    users, m = n.numel(), items.numel()
    # how many items of its own sequence each interaction is from the end (1 = the last one)
    row = torch.repeat_interleave(torch.arange(users), n, output_size=m)
    from_end = ends[row] - torch.arange(m)
    step = torch.arange(users + 1)
    return LeaveOneOutSplit(
        train_inputs=_window(items, starts, n - 3, max_len),
        train_targets=_window(items, starts + 1, n - 3, max_len),
        valid_inputs=_window(items, starts, n - 2, max_len),
        valid_targets=items[starts + n - 2],
        test_inputs=_window(items, starts, n - 1, max_len),
        test_targets=items[starts + n - 1],
        valid_history=Ragged(items[from_end > 2], offsets - 2 * step),
        test_history=Ragged(items[from_end > 1], offsets - step),
        user_items=Ragged(items.clone(), offsets.clone()),
        lengths=n.clone(),
        num_items=num_items,
        max_len=max_len,
    )


def _window(items: Tensor, starts: Tensor, counts: Tensor, width: int) -> Tensor:
    """``(u, width)``: the last ``min(count, width)`` items from ``starts``, left-padded with 0."""
    cols = torch.arange(width, device=items.device)
    position = counts.unsqueeze(1) - width + cols  # index inside the user's slice
    index = (starts.unsqueeze(1) + position).clamp_min(0)
    return items.take(index).masked_fill_(position < 0, PADDING_ID)


@dataclass
class LeaveOneOutSplit:
    r"""Leave-one-out split of every user, built once (S4Rec Section 5.1.2).

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
    every item the user interacted with before the target, as
    :class:`~s4rec_components.ragged.Ragged` rows (memory $O(m)$, never users x longest
    history; ``pad_rows`` pads the rows of one batch), and feed the "exclude already-seen
    items" rule of the full-ranking evaluation.

    Attributes:
        train_inputs: ``(u, l)`` long.
        train_targets: ``(u, l)`` long.
        valid_inputs: ``(u, l)`` long.
        valid_targets: ``(u,)`` long.
        test_inputs: ``(u, l)`` long.
        test_targets: ``(u,)`` long.
        valid_history: ``Ragged`` with ``u`` rows, row ``u`` = $s_{1..T-2}$.
        test_history: ``Ragged``, row ``u`` = $s_{1..T-1}$.
        user_items: ``Ragged``, row ``u`` = the whole sequence $s_{1..T}$ (to draw negatives
            outside it, with ``Ragged.contains``).
        lengths: ``(u,)`` long, $T_u$.
        num_items: largest item id $n$.
        max_len: $l$.

    Shape:
        - inputs: $(u, l)$; targets: $(u,)$; histories: $u$ rows, $\sum_u (T_u - 2)$ and
          $\sum_u (T_u - 1)$ values.

    Examples:
        >>> from s4rec_components import SequenceDataset
        >>> split = SequenceDataset.from_sequences([[4, 5, 6], [1, 2, 3, 4]]).split(max_len=2)
        >>> split.valid_inputs.tolist(), split.valid_targets.tolist()
        ([[0, 4], [1, 2]], [5, 3])
        >>> split.history("test").tolist()
        [[4, 5], [1, 2, 3]]
    """

    train_inputs: Tensor
    train_targets: Tensor
    valid_inputs: Tensor
    valid_targets: Tensor
    test_inputs: Tensor
    test_targets: Tensor
    valid_history: Ragged
    test_history: Ragged
    user_items: Ragged
    lengths: Tensor
    num_items: int
    max_len: int

    def __post_init__(self) -> None:
        """Structure only (types, shapes, row counts): built by hand, a split must still fit."""
        self.num_items = check_int(self.num_items, "num_items", 1)
        self.max_len = check_int(self.max_len, "max_len", 1)
        check_ndim(self.lengths, 1, "lengths", "(u,)")
        check_integer(self.lengths, "lengths")
        users = self.lengths.shape[0]
        layout = f"(u, l) = ({users}, {self.max_len})"
        for name in ("train_inputs", "train_targets", "valid_inputs", "test_inputs"):
            value = getattr(self, name)
            check_ndim(value, 2, name, layout)
            check_integer(value, name)
            if tuple(value.shape) != (users, self.max_len):
                raise ValueError(f"{name} must have shape {layout}, got shape {tuple(value.shape)}")
        for name in ("valid_targets", "test_targets"):
            value = getattr(self, name)
            check_ndim(value, 1, name, f"(u,) = ({users},)")
            check_integer(value, name)
            if value.shape[0] != users:
                raise ValueError(f"{name} must have shape ({users},), got shape {tuple(value.shape)}")
        for name in ("valid_history", "test_history", "user_items"):
            value = getattr(self, name)
            if not isinstance(value, Ragged):
                raise TypeError(f"{name} must be a Ragged, got {type(value).__name__}")
            if value.num_rows != users:
                raise ValueError(f"{name} must have one row per user ({users}), got {value.num_rows}")

    @property
    def num_users(self) -> int:
        """Number of users."""
        return self.lengths.numel()

    @property
    def train_lengths(self) -> Tensor:
        r"""``(u,)`` length of each training sequence, $T_u - 2$."""
        return self.lengths - 2

    @property
    def device(self) -> torch.device:
        """Where the tensors live."""
        return self.lengths.device

    def to(self, device: torch.device | str) -> LeaveOneOutSplit:
        """A copy with every tensor (and ``Ragged``) moved to ``device``.

        Examples:
            >>> from s4rec_components import SequenceDataset
            >>> split = SequenceDataset.from_sequences([[1, 2, 3, 4]]).split(max_len=2)
            >>> moved = split.to("cpu")
            >>> moved.device, moved.test_history.device, moved.test_inputs.tolist()
            (device(type='cpu'), device(type='cpu'), [[2, 3]])
        """
        moved: dict[str, Tensor | Ragged] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, (Tensor, Ragged)):
                moved[field.name] = value.to(device)
        return dataclasses.replace(self, **moved)  # type: ignore[arg-type]

    def inputs(self, split: Split) -> Tensor:
        """``(u, l)`` model inputs of the ``"valid"`` or ``"test"`` split.

        Examples:
            >>> from s4rec_components import SequenceDataset
            >>> split = SequenceDataset.from_sequences([[1, 2, 3, 4], [5, 6, 7]]).split(max_len=3)
            >>> split.inputs("valid").tolist(), split.inputs("test").tolist()
            ([[0, 1, 2], [0, 0, 5]], [[1, 2, 3], [0, 5, 6]])
        """
        check_choice(split, SPLITS, "split")
        return self.valid_inputs if split == "valid" else self.test_inputs

    def targets(self, split: Split) -> Tensor:
        """``(u,)`` held-out items of the ``"valid"`` or ``"test"`` split.

        Examples:
            >>> from s4rec_components import SequenceDataset
            >>> split = SequenceDataset.from_sequences([[1, 2, 3, 4], [5, 6, 7]]).split(max_len=3)
            >>> split.targets("valid").tolist(), split.targets("test").tolist()
            ([3, 6], [4, 7])
        """
        check_choice(split, SPLITS, "split")
        return self.valid_targets if split == "valid" else self.test_targets

    def history(self, split: Split) -> Ragged:
        """Every item before the target of the ``"valid"`` or ``"test"`` split, one row per user.

        Examples:
            >>> from s4rec_components import SequenceDataset
            >>> split = SequenceDataset.from_sequences([[1, 2, 3, 4], [5, 6, 7]]).split(max_len=2)
            >>> split.history("valid").tolist(), split.history("test").tolist()
            ([[1, 2], [5]], [[1, 2, 3], [5, 6]])
        """
        check_choice(split, SPLITS, "split")
        return self.valid_history if split == "valid" else self.test_history


def _checked_item_ids(item_ids: object) -> list[str]:
    """``item_ids`` as a list of distinct strings, or ``TypeError`` / ``ValueError``."""
    if not isinstance(item_ids, (list, tuple)):
        raise TypeError(f"item_ids must be a list of str or None, got {type(item_ids).__name__}")
    out = list(item_ids)
    for position, raw in enumerate(out):
        if not isinstance(raw, str):
            raise TypeError(
                f"item_ids must be a list of str, got {type(raw).__name__} {raw!r} at position {position}"
            )
    if len(set(out)) != len(out):
        seen: set[str] = set()
        for raw in out:
            if raw in seen:
                raise ValueError(f"item_ids must be distinct (one raw id per internal item), {raw!r} repeats")
            seen.add(raw)
    return out
