"""Sequential-recommendation datasets: the dataset and its split, readers, synthetic data, downloads.

Every loader returns a :class:`SequenceDataset`: one chronological item sequence per user, item
ids ``1..n`` (0 is padding everywhere in this library), stored flat.

* ``dataset``: :class:`SequenceDataset` and the leave-one-out :class:`LeaveOneOutSplit`;
* ``readers``: :func:`load_sequences` (ICLRec's one-line format) and
  :func:`load_recbole_inter` (RecBole ``.inter``);
* ``synthetic``: :func:`generate_synthetic`;
* ``public``: :func:`download_dataset` with checksums, and the MovieLens-1M conversion.

Examples:
    >>> from s4rec_components.data import generate_synthetic
    >>> split = generate_synthetic(num_users=20, num_items=30, num_intents=3).split(10)
    >>> split.train_inputs.shape, split.user_items.num_rows
    (torch.Size([20, 10]), 20)
"""

from __future__ import annotations

from .dataset import MIN_SEQUENCE_LENGTH, SPLITS, LeaveOneOutSplit, SequenceDataset
from .public import (
    DATASET_FILES,
    KNOWN_MD5,
    KNOWN_SHA256,
    MAX_DOWNLOAD_BYTES,
    MAX_UNPACKED_BYTES,
    MOVIELENS_MIN_COUNT,
    DownloadError,
    download_dataset,
)
from .readers import load_recbole_inter, load_sequences
from .synthetic import generate_synthetic

__all__ = [
    "DATASET_FILES",
    "KNOWN_MD5",
    "KNOWN_SHA256",
    "MAX_DOWNLOAD_BYTES",
    "MAX_UNPACKED_BYTES",
    "MIN_SEQUENCE_LENGTH",
    "MOVIELENS_MIN_COUNT",
    "SPLITS",
    "DownloadError",
    "LeaveOneOutSplit",
    "SequenceDataset",
    "download_dataset",
    "generate_synthetic",
    "load_recbole_inter",
    "load_sequences",
]
