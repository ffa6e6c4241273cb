"""The example's data layer: which file a run reads, the split, head labels and negatives."""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor

from s4rec_components import (
    DownloadError,
    LeaveOneOutSplit,
    Ragged,
    SequenceDataset,
    download_dataset,
    generate_synthetic,
    load_recbole_inter,
    load_sequences,
)

if TYPE_CHECKING:
    from s4rec_components.data.public import DatasetName

from .config import TrainConfig

__all__ = [
    "DATASET_NAMES",
    "MIN_TRAINING_LENGTH",
    "NegativeSampler",
    "TrainData",
    "data_fingerprint",
    "dataset_label",
    "head_labels",
    "load_dataset",
    "prepare",
    "resolve_data_path",
]

# Short names accepted by --data, and the names the public files carry.
DATASET_NAMES = ("Beauty", "Sports", "Toys", "ML-1M")
_FILE_STEMS = {"Beauty": "Beauty", "Sports": "Sports_and_Outdoors", "Toys": "Toys_and_Games", "ML-1M": "ml-1m"}
_LABELS = {stem.lower(): name for name, stem in _FILE_STEMS.items()}
NEGATIVE_RESAMPLE_ROUNDS = 8  # redraws of negatives that hit one of the user's own items
# Leave-one-out keeps a user's last two items for validation and test; the rest must hold an
# input and its next item for the user to add a training pair.
MIN_TRAINING_LENGTH = 4


def resolve_data_path(data: str, data_root: str | Path) -> Path | None:
    """The local file of ``--data`` when it is read as it is, or ``None`` when ``download_dataset``
    must supply (and check) it.

    A path to a file is the user's own data: read as it is. Beauty, Sports and Toys always go
    through ``download_dataset``, which checks a cached file against the public file's SHA-256 on
    every use (a cut-short or edited ``Beauty.txt`` in ``data_root`` is refused, never trained on
    under the dataset's name) and downloads a missing one. ``ml-1m.txt`` has no published
    checksum: one placed in ``data_root`` by hand (no checksum record beside it) is read as it
    is, and one that this library converted goes back to ``download_dataset``, which checks it
    and converts it again when an older version made it.

    Raises:
        FileNotFoundError: for a path that does not exist and is not a known dataset name.
    """
    path = Path(data)
    if path.is_file():
        return path
    if data == "ML-1M":
        candidate = Path(data_root) / f"{_FILE_STEMS[data]}.txt"
        by_hand = candidate.is_file() and not candidate.with_name(candidate.name + ".sha256").is_file()
        return candidate if by_hand else None
    if data in DATASET_NAMES:
        return None
    if path.exists():
        raise FileNotFoundError(f"--data {data!r} is not a file")
    raise FileNotFoundError(
        f"--data {data!r}: no such file (or pass one of {', '.join(DATASET_NAMES)}){_data_guess(data)}"
    )


def _data_guess(data: str) -> str:
    """A "did you mean" for a missing ``--data``: a close file in the path's folder, else a close dataset name."""
    path = Path(data)
    if path.parent != Path(".") or path.suffix:  # shaped like a path: look for a close name in its folder
        folder = path.parent
        try:
            files = sorted(entry.name for entry in folder.iterdir() if entry.is_file()) if folder.is_dir() else []
        except OSError:  # an unreadable folder gives no guess, not a second error
            files = []
        lowered = {name.lower(): name for name in files}
        close = difflib.get_close_matches(path.name.lower(), lowered, n=1)
        if close:
            return f"; did you mean {folder / lowered[close[0]]}?"
    names = {name.lower(): name for name in DATASET_NAMES}
    close = difflib.get_close_matches(path.stem.lower(), names, n=1)
    return f"; did you mean {names[close[0]]}?" if close else ""


def load_dataset(config: TrainConfig) -> SequenceDataset:
    """The dataset of ``config.data``: a file, a known dataset name (downloaded), or generated."""
    if config.data is None:
        return generate_synthetic(
            num_users=config.synthetic_users, num_items=config.synthetic_items, seed=config.seed
        )
    path = resolve_data_path(config.data, config.data_root)
    if path is None:
        # resolve_data_path returns None only for one of DATASET_NAMES
        try:
            path = Path(download_dataset(cast("DatasetName", config.data), root=config.data_root))
        except DownloadError as err:  # the library's advice is for Python code: add the flags that do it here
            first = str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else "no download"
            raise DownloadError(
                f"{first}. On the command line: --data-root DIR names the folder that holds the file "
                f"(looked in {Path(config.data_root).resolve()}), or --data PATH reads a file as it is."
            ) from err
    return load_recbole_inter(path) if path.suffix == ".inter" else load_sequences(path)


def dataset_label(data: str | None) -> str:
    """Short name of a run's data for file names and tables: Beauty, Sports, Toys, ... or generated."""
    if not data:
        return "generated"
    if data in DATASET_NAMES:
        return data
    stem = Path(data).stem
    return _LABELS.get(stem.lower(), stem)


def data_fingerprint(dataset: SequenceDataset) -> str:
    """SHA-256 of a dataset's content: ``num_items``, the user ids and every user's items in order.

    The ids and sequences as little-endian int64 (the same on every platform), not the bytes of
    the file they came from: ``sha256sum data.txt`` gives another value. A resumed run compares it
    with the one it recorded at its start (``data_content_sha256`` in ``results.json``), since the
    statistics alone miss, say, two items swapped; renumbered users count as other data too, since
    the per-user outputs (ranks, head/tail labels) follow the user order.
    """
    digest = hashlib.sha256(f"s4rec-data-v1 {dataset.num_items}\n".encode())
    for tensor in (dataset.user_ids, dataset.offsets, dataset.items):
        array = tensor.to(torch.int64).contiguous().numpy().astype("<i8", copy=False)
        digest.update(array.data)  # the array's own buffer, no copy
    return digest.hexdigest()


def head_labels(train_lengths: Tensor, quantile: float) -> Tensor:
    """``(u,)`` long: 1 for head users, whose training sequence is longer than the quantile.

    The default 0.8 makes the longest ~20% of histories the head (Pareto's 80/20, the usual
    cut in long-tail recommendation); ties at the cut go to the tail.
    """
    lengths = train_lengths.float()
    threshold = torch.quantile(lengths, quantile)
    return (lengths > threshold).long()


class NegativeSampler:
    """One uniform negative per position in ``1..n``, avoiding each user's items (ICLRec's ``neg_sample``).

    Drawn on the device with batched membership tests against the users' item rows
    (:meth:`Ragged.contains`), no per-sample Python loop and no host read. After
    ``NEGATIVE_RESAMPLE_ROUNDS`` redraws a collision may remain with probability about
    ``(h / n) ** 9`` for a user of ``h`` items (negligible on real data).

    Args:
        user_items: every item of every user (row ``u`` = user ``u``).
        num_items: ``n``; padding 0 and the mask id ``n + 1`` are never drawn.
    """

    def __init__(self, user_items: Ragged, num_items: int) -> None:
        self.user_items = user_items
        self.num_items = num_items
        self.keys = user_items.sorted_keys(num_items)

    def __call__(self, users: Tensor, length: int, generator: torch.Generator | None = None) -> Tensor:
        """``(b, length)`` negatives for the users ``users (b,)``."""
        shape = (users.shape[0], length)
        rows = users.unsqueeze(1).expand(shape)
        device = users.device
        neg = torch.randint(1, self.num_items + 1, shape, device=device, generator=generator)
        for _ in range(NEGATIVE_RESAMPLE_ROUNDS):
            hit = self.user_items.contains(rows, neg, keys=self.keys, num_values=self.num_items)
            redraw = torch.randint(1, self.num_items + 1, shape, device=device, generator=generator)
            neg = torch.where(hit, redraw, neg)
        return neg


@dataclass
class TrainData:
    """What the training loop reads: the split on the device, head labels and the negative sampler."""

    dataset: SequenceDataset
    split: LeaveOneOutSplit
    heads: Tensor
    sampler: NegativeSampler

    @property
    def num_items(self) -> int:
        return self.split.num_items

    @property
    def num_users(self) -> int:
        return self.split.num_users


def prepare(dataset: SequenceDataset, config: TrainConfig, device: torch.device) -> TrainData:
    """Split ``dataset`` for ``config`` and move what training needs to ``device``."""
    split = dataset.split(max_len=config.max_len).to(device)
    heads = head_labels(split.train_lengths, config.head_quantile).to(device)
    sampler = NegativeSampler(split.user_items, split.num_items)
    return TrainData(dataset=dataset, split=split, heads=heads, sampler=sampler)
