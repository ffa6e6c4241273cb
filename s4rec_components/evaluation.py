r"""Full-ranking evaluation: the rank of the held-out item among all items, HR@k and NDCG@k.

S4Rec Section 5.1.2 (and S3-Rec / CoSeRec / ICLRec) rank each user's held-out item against the
whole catalogue, items the user already interacted with excluded, and report

$$
\mathrm{HR@}k = \frac{1}{|U|} \sum_u \mathbb{1}[r_u < k], \qquad
\mathrm{NDCG@}k = \frac{1}{|U|} \sum_u \frac{\mathbb{1}[r_u < k]}{\log_2(r_u + 2)},
$$

where $r_u$ is the 0-based rank of the target (one relevant item, so the ideal DCG is 1).

The public ICLRec code does not exclude the history but sets its scores to 0
(``rating_pred[train_matrix > 0] = 0``); ``history_value=0.0`` reproduces that (and
``ignore_ids=()`` on scores of all ``n + 2`` rows of its item table, which it ranks too).

How the ranking is computed, and why it costs no more than a hand-written loop. The ``(b, n)``
score block is read twice (three times on the CPU if there are ties), by two comparisons with
the target's score (``>`` and ``==``) written into one reused boolean buffer and counted per
row; nothing else touches the block, and it is never modified. The counts are native int64 sums
of the buffer read as words (in blocks, so the byte lanes never carry; exact), instead of a
bool-to-int64 sum, which casts the mask first and costs more than the comparison itself. The
columns that are not ordinary candidates (the ignored ids, each user's history) are few; they
are corrected afterwards from their gathered scores, on flat ``(row, item)`` pairs (CSR), never
on a ``(b, longest history)`` padding, so a batch is a handful of large kernels whatever the
history lengths, as in the plain ``matmul`` / ``-inf`` scatter / ``(scores > target).sum(1)``
loop. Ties with the target are rare: on the CPU the ``==`` count says whether a batch has any,
and only then does a third pass count the tied columns with a lower id (the tie-break), through
the same buffer. On other devices (GPUs), where reading that answer back stalls the stream, the
second pass counts the lower-id ties directly, the NaN-target checks are read back once after
the last batch, and CPU inputs are page-locked once and copied without waiting: the ranking
adds no host synchronisation inside the batch loop (``score_fn`` may have its own).

Examples:
    >>> import torch
    >>> scores = torch.tensor([[9.0, 1.0, 4.0, 3.0]])
    >>> rank_targets(scores, torch.tensor([3]), ignore_ids=(0, 0))  # item 2 beats item 3
    tensor([1])
"""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from ._validation import (
    as_int,
    check_bool,
    check_float,
    check_int,
    check_integer,
    check_ndim,
    check_nonempty,
    check_real,
    check_same_size,
    check_tensor,
    validate_args_enabled,
)
from .constants import PADDING_ID
from .ragged import Ragged

__all__ = [
    "DEFAULT_KS",
    "DEFAULT_MEMORY_BUDGET",
    "RankingResult",
    "evaluate_ranking",
    "rank_targets",
    "ranking_metrics",
]

DEFAULT_KS: tuple[int, ...] = (5, 10, 20)
"""Cut-offs reported by default; the paper uses 5 and 20, ICLRec also 10."""

DEFAULT_MEMORY_BUDGET: int = 256 * 2**20
"""Bytes that one batch's ``(b, n)`` score block and the ranking's bool blocks may take
(256 MiB) when ``evaluate_ranking`` is given no ``memory_budget``."""

_NAN_TARGET_MESSAGE = "scores are NaN at some targets; the model's output is not rankable"
_TIE_BYTES_PER_SCORE = 1
"""The ranking's temporary beside the reused bool buffer: one more bool per score while ties are
broken by item id."""

_WORDS_PER_BLOCK = 255
"""int64 words of a boolean buffer summed at once: each of a word's 8 byte lanes then counts at
most 255 ones, so the lanes never carry into each other."""

_EVEN_BYTES = 0x00FF00FF00FF00FF
_EVEN_SHORTS = 0x0000FFFF0000FFFF
_LOW_WORD = 0x00000000FFFFFFFF

History = Ragged | Tensor
"""A user history: CSR rows (:class:`~s4rec_components.ragged.Ragged`) or a padded ``(u, h)``
tensor whose ``PADDING_ID`` (0) entries are padding."""


# ------------------------------------------------------------------------------ argument checks
def _check_ignore_ids(ignore_ids: object) -> tuple[int, ...]:
    """A sequence of int-likes (never bools or a string); returned as a tuple of Python ints
    in the given order."""
    if isinstance(ignore_ids, (str, bytes, Tensor)) or not isinstance(ignore_ids, Sequence):
        raise TypeError(f"ignore_ids must be a sequence of ints, got {type(ignore_ids).__name__}")
    return tuple(as_int(value, "ignore_ids entries") for value in ignore_ids)


def _check_ks(ks: object) -> tuple[int, ...]:
    """A non-empty sequence of distinct ints >= 1."""
    if isinstance(ks, (str, bytes, Tensor)) or not isinstance(ks, Sequence):
        raise TypeError(f"ks must be a sequence of ints, got {type(ks).__name__}")
    out = tuple(check_int(k, "ks", 1) for k in ks)
    if not out:
        raise ValueError("ks must be a non-empty sequence of cut-offs >= 1, got ()")
    if len(set(out)) != len(out):
        raise ValueError(f"ks must not repeat a cut-off, got {out}")
    return out


def _check_history_value(history_value: object) -> float | None:
    return None if history_value is None else check_real(history_value, "history_value")


def _check_history(history: object, rows: int, name: str, owner: str) -> None:
    """Structure of a history: a Ragged with ``rows`` rows or an integer ``(rows, h)`` tensor."""
    if isinstance(history, Ragged):
        if history.num_rows != rows:
            raise ValueError(
                f"{name} must have one row per {owner} row: {owner} has {rows} rows, "
                f"{name} has {history.num_rows}"
            )
        return
    if not isinstance(history, Tensor):
        raise TypeError(f"{name} must be a Ragged, an integer (u, h) tensor or None, got {type(history).__name__}")
    check_ndim(history, 2, name, "(u, h)")
    check_integer(history, name)
    if history.shape[0] != rows:
        raise ValueError(
            f"{owner} and {name} disagree: {owner} has {rows} rows, {name} has shape {tuple(history.shape)}"
        )


def _history_values(history: History) -> Tensor:
    return history.values if isinstance(history, Ragged) else history


def _check_history_range(history: History, n: int, name: str) -> None:
    """Value check: every history id is a column of the scores (0 = padding)."""
    values = _history_values(history)
    if values.numel() == 0:
        return
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= n:
        raise ValueError(f"{name} must hold item ids in [0, {n - 1}], got values in [{low}, {high}]")


def _check_targets_range(targets: Tensor, n: int | None, ignored: Tensor) -> None:
    """Value check: targets are columns (``n`` known) and never ignored ids."""
    low, high = int(targets.min()), int(targets.max())
    top = "n - 1" if n is None else str(n - 1)
    if low < 0 or (n is not None and high >= n):
        raise ValueError(f"targets must be item ids in [0, {top}] (columns of scores), got values in [{low}, {high}]")
    if ignored.numel() and bool(torch.isin(targets, ignored.to(targets.device)).any()):
        raise ValueError(f"targets must not be ignored ids {ignored.tolist()} (padding / mask), got one of them")


def _ignored_columns(ignore_ids: tuple[int, ...], n: int | None, device: torch.device) -> Tensor:
    """The distinct ignored ids that are columns ``0..n-1``, sorted: repeats count once."""
    ids = sorted({i for i in ignore_ids if i >= 0 and (n is None or i < n)})
    return torch.tensor(ids, dtype=torch.long, device=device)


# ------------------------------------------------------------------------------ the ranking kernel
@dataclass(frozen=True)
class _Pairs:
    """One batch's history as flat ``(row, item)`` pairs; ``valid`` marks each distinct real entry."""

    rows: Tensor
    items: Tensor
    valid: Tensor


@dataclass(frozen=True)
class _History:
    """Rows ``start..stop-1`` of a history, prepared once: sorted keys ``row * (n + 1) + item``.

    Entries that are padding, ignored ids or repeats of an earlier entry of the same row are
    marked invalid (a repeated item counts once). Sorting keeps every row's entries in its own
    ``offsets`` range, so a batch of rows is a slice: no per-batch ``repeat_interleave`` (a
    parallel kernel whatever its size), sort or padding.
    """

    keys: Tensor
    valid: Tensor
    offsets: list[int]
    n: int

    @classmethod
    def build(cls, history: Ragged, start: int, stop: int, n: int, ignored: Tensor, device: torch.device) -> _History:
        rows, items = history.flat_pairs(start, stop)
        keys = (rows.to(device) * (n + 1) + items.to(device)).sort().values
        items = keys % (n + 1)
        valid = items != PADDING_ID
        if ignored.numel():
            valid &= ~torch.isin(items, ignored)
        valid[1:] &= keys[1:] != keys[:-1]
        offsets = history.offsets[start : stop + 1]
        return cls(keys, valid, (offsets - offsets[0]).tolist(), n)

    def pairs(self, start: int, stop: int) -> _Pairs:
        """Rows ``start..stop-1`` (counted within this object), rows renumbered from 0."""
        lo, hi = self.offsets[start], self.offsets[stop]
        keys = self.keys[lo:hi]
        return _Pairs(keys // (self.n + 1) - start, keys % (self.n + 1), self.valid[lo:hi])


def _word_blocks(words: int) -> tuple[int, int]:
    """``(blocks, words per block)``: the fewest blocks of at most ``_WORDS_PER_BLOCK`` int64
    words that hold ``words`` words, each as short as that allows (the least padding)."""
    blocks = max(1, -(-words // _WORDS_PER_BLOCK))
    return blocks, -(-words // blocks)


def _buffer_width(n: int) -> int:
    """Bytes per row of :func:`_count_buffer` for ``n`` columns: at most ``7 + 8 * blocks``
    more than ``n`` (a few bytes, never a whole block)."""
    blocks, per_block = _word_blocks(-(-n // 8))
    return 8 * blocks * per_block


def _count_buffer(rows: int, n: int, device: torch.device) -> Tensor:
    """A reusable ``(rows, w)`` bool buffer for :func:`_count`: ``n`` columns padded with False
    to the width ``w`` of :func:`_buffer_width`, whole blocks of :func:`_word_blocks`."""
    buffer = torch.empty((rows, _buffer_width(n)), dtype=torch.bool, device=device)
    buffer[:, n:] = False
    return buffer


def _count(compare: Callable[..., Tensor], scores: Tensor, threshold: Tensor, buffer: Tensor) -> Tensor:
    """``(b,)`` int32 ``compare(scores, threshold).sum(1)``, in one pass over a reused buffer.

    The comparison is written into ``buffer`` (``b`` rows), read back as int64 words and summed
    in blocks of ``_WORDS_PER_BLOCK`` words: a native int64 reduction, no cast of the mask and
    no new ``(b, n)`` tensor. Each byte lane of a block's sum holds the number of ones in that
    lane (at most 255, so lanes never carry); the lanes are then added up with shifts and masks
    on the small ``(b, blocks)`` sums. Exact for any ``n``. (``(scores > t).sum(1)`` instead casts the whole mask to int64 first, which costs
    more than the comparison.)
    """
    b, n = scores.shape
    rows = buffer[:b]
    compare(scores, threshold, out=rows[:, :n])
    return _count_ones(rows)


def _count_ones(rows: Tensor) -> Tensor:
    """``(b,)`` int32 number of True per row of a ``(b, w)`` bool buffer of :func:`_count_buffer`
    (its padding columns False): the word sums of :func:`_count`, no host sync."""
    b = rows.shape[0]
    blocks, per_block = _word_blocks(rows.shape[1] // 8)
    words = rows.view(torch.int64).view(b, blocks, per_block).sum(dim=2)  # (b, blocks)
    # add up each word's 8 byte lanes in place (SWAR): pairs into 16-bit lanes, then 32, then 64
    words = (words & _EVEN_BYTES) + ((words >> 8) & _EVEN_BYTES)
    words = (words & _EVEN_SHORTS) + ((words >> 16) & _EVEN_SHORTS)
    words = (words & _LOW_WORD) + ((words >> 32) & _LOW_WORD)
    return words.sum(dim=1, dtype=torch.int32)


def _counts_densely(device: torch.device) -> bool:
    """Count the lower-id ties over the whole block without first reading back whether there
    are any (GPUs: no host sync), rather than only when the ``==`` count finds some (CPU)."""
    return device.type != "cpu"


def _beaten(values: Tensor, ids: Tensor, bar: Tensor, own: Tensor) -> Tensor:
    """Does a column with score ``values`` and id ``ids`` rank before a target (``bar``, ``own``)?"""
    return (values > bar) | ((values == bar) & (ids < own))


def _rank_impl(
    scores: Tensor,
    targets: Tensor,
    pairs: _Pairs | None,
    ignored: Tensor,
    history_value: float | None,
    buffer: Tensor | None = None,
    nan_flags: list[Tensor] | None = None,
    dense: bool | None = None,
) -> Tensor:
    """Ranks of validated input (targets long on the scores' device); see :func:`rank_targets`.

    ``nan_flags``: if given, the NaN-target check appends a ``()`` bool device tensor to it
    instead of reading it back (the caller checks them all at once: one sync, not one per batch).
    ``dense``: count the ties with a lower id over the whole block unconditionally (default off
    the CPU, where a host read-back stalls the stream) instead of first counting all ties and
    reading back whether there are any (on the CPU the cheaper way: ties are rare).
    """
    b, n = scores.shape
    if dense is None:
        dense = _counts_densely(scores.device)
    own = targets.unsqueeze(1)  # (b, 1)
    own_score = scores.gather(1, own).squeeze(1)  # (b,)
    bar = own_score
    replaced = None
    # (with history_value=None a target in its own history needs no care: a column never
    # beats itself, so the history correction below leaves the target a candidate)
    if pairs is not None and history_value is not None:
        replaced = torch.tensor(history_value, dtype=scores.dtype, device=scores.device)
        is_target = (pairs.items == targets[pairs.rows]) & pairs.valid
        hits = torch.zeros(b, dtype=torch.int32, device=scores.device)
        in_history = hits.index_add_(0, pairs.rows, is_target.int()) > 0
        bar = torch.where(in_history, replaced, own_score)  # ICLRec: the target scores 0 too
    if validate_args_enabled():
        if nan_flags is not None:
            nan_flags.append(torch.isnan(bar).any())
        elif bool(torch.isnan(bar).any()):
            raise ValueError(_NAN_TARGET_MESSAGE)

    threshold = bar.unsqueeze(1)
    if buffer is None:
        buffer = _count_buffer(b, n, scores.device)
    rank = _count(torch.gt, scores, threshold, buffer)  # strictly higher
    tie_pass = dense
    if not dense:  # the CPU reads back whether any column ties with a target: ties are rare
        equal = _count(torch.eq, scores, threshold, buffer)
        equal -= (own_score == bar).int()  # the target's own column
        tie_pass = bool((equal > 0).any())
    if tie_pass:  # ties with a lower id rank before the target: one more pass, no host sync
        ties = buffer[:b, :n]
        torch.eq(scores, threshold, out=ties)
        ties &= torch.arange(n, device=scores.device) < own  # one more (b, n) bool block
        rank += _count_ones(buffer[:b])

    # the few columns that are not ordinary candidates
    if ignored.numel():
        rank -= _beaten(scores[:, ignored], ignored, threshold, own).sum(dim=1, dtype=torch.int32)
    if pairs is not None:
        rows, items = pairs.rows, pairs.items
        row_bar, row_own = bar[rows], targets[rows]
        correction = (_beaten(scores[rows, items], items, row_bar, row_own) & pairs.valid).int()
        if replaced is not None:
            correction -= (_beaten(replaced, items, row_bar, row_own) & pairs.valid).int()
        rank.index_add_(0, rows, correction, alpha=-1)
    return rank.long()


def rank_targets(
    scores: Tensor,
    targets: Tensor,
    *,
    exclude: History | None = None,
    ignore_ids: Sequence[int] = (PADDING_ID,),
    history_value: float | None = None,
) -> Tensor:
    r"""0-based rank of each target item among all candidate items (full ranking).

    With candidate set $C_b$ and scores $s_{b,j}$, the rank of target $t$ is

    $$
    r_b = \#\{j \in C_b : s_{b,j} > s_{b,t}\} + \#\{j \in C_b : j < t,\ s_{b,j} = s_{b,t}\},
    $$

    i.e. ties are broken pessimistically by item index, deterministically. Batched over rows on
    the scores' device; the scores are read, never modified.

    * Columns in ``ignore_ids`` (padding 0, and the mask id when the caller passes it) are never
      candidates. An id given twice counts once; ids outside ``0..n-1`` are skipped, so a mask
      id the scorer has no column for is harmless.
    * With ``history_value=None`` the ids in ``exclude`` (the user's history; 0 entries are
      padding, repeats count once) are removed from the candidates: the paper's "history items
      excluded". The target itself is never removed, even when it also occurs in the history (a
      repeated purchase): it keeps its own score and is ranked against the other non-history
      items.
    * With ``history_value`` set (ICLRec's code: ``0.0``) the history items stay candidates with
      their score replaced by that value (cast to the scores' dtype, as the public code's float32
      array does). This mode reproduces the public code's history exactly, so a target that is
      also a history item gets ``history_value`` too, as it does there. (That code also ranks
      every row of its item table, the padding row 0 and the mask row ``n + 1`` included: for
      its exact ranking, score all ``n + 2`` rows and pass ``ignore_ids=()``.)

    Args:
        scores: ``(b, n)`` float scores of the items ``0..n-1`` (column = item id). A NaN at a
            target is rejected; NaN elsewhere never ranks above the target.
        targets: ``(b,)`` integer target ids in ``0..n-1``, none of them in ``ignore_ids``.
        exclude: each row's history: a :class:`~s4rec_components.ragged.Ragged` with ``b`` rows,
            or a padded ``(b, h)`` integer tensor (0 = padding); ``None`` for none.
        ignore_ids: item ids that are never ranked.
        history_value: ``None`` to exclude the history, or the score given to history items.

    Shape:
        - scores: $(b, n)$.
        - targets: $(b,)$.
        - exclude: $(b, h)$ or ``b`` ragged rows.
        - output: $(b,)$ long, on the scores' device, in ``0..n-1``.

    Returns:
        The ``(b,)`` long tensor of ranks.

    Raises:
        TypeError: on a non-float ``scores``, non-integer ``targets`` / ``exclude``, non-int
            ``ignore_ids`` or a non-real ``history_value``.
        ValueError: on wrong shapes or mismatched batch sizes; while value checks are on
            (:func:`~s4rec_components.set_validate_args`), also on ids out of range, a target
            in ``ignore_ids`` or a NaN target score.

    Examples:
        >>> import torch
        >>> from s4rec_components import rank_targets
        >>> scores = torch.tensor([[9.0, 0.5, 0.9, 0.7, 0.9]])
        >>> rank_targets(scores, torch.tensor([3]))  # items 2 and 4 score higher; 0 is ignored
        tensor([2])
        >>> rank_targets(scores, torch.tensor([3]), exclude=torch.tensor([[2, 0]]))
        tensor([1])
        >>> rank_targets(scores, torch.tensor([4]))  # tie with item 2, which has the lower id
        tensor([1])
    """
    check_ndim(scores, 2, "scores", "(b, n)")
    check_float(scores, "scores")
    check_nonempty(scores, "scores")
    check_ndim(targets, 1, "targets", "(b,)")
    check_integer(targets, "targets")
    check_same_size(scores, targets, (0, 0), ("scores", "targets"))
    ids = _check_ignore_ids(ignore_ids)
    value = _check_history_value(history_value)
    b, n = scores.shape
    if exclude is not None:
        _check_history(exclude, b, "exclude", "scores")
    ignored = _ignored_columns(ids, n, scores.device)
    if validate_args_enabled():
        _check_targets_range(targets, n, ignored)
        if exclude is not None:
            _check_history_range(exclude, n, "exclude")
    pairs = None
    if exclude is not None:
        ragged = exclude if isinstance(exclude, Ragged) else Ragged.from_padded(exclude)
        pairs = _History.build(ragged, 0, b, n, ignored, scores.device).pairs(0, b)
    return _rank_impl(scores, targets.to(device=scores.device, dtype=torch.long), pairs, ignored, value)


# ------------------------------------------------------------------------------ metrics
def _rank_counts(ranks: Tensor, top: int) -> Tensor:
    """``(top + 1,)`` int64: how many ranks equal ``0..top-1``, then the number of ranks.

    ``top`` need not reach the largest cut-off: a rank that no target can have needs no bin
    (the callers pass ``min(max(ks), bound on the ranks)``, so a huge ``k`` costs nothing).
    """
    counts = torch.zeros(top + 1, dtype=torch.long, device=ranks.device)
    counts.index_add_(0, ranks.long().clamp(max=top), torch.ones_like(ranks, dtype=torch.long))
    counts[top] = ranks.numel()  # the bin of ranks >= top becomes the user count
    return counts


def _metrics_from_counts(counts: Sequence[int], ks: tuple[int, ...]) -> dict[str, float]:
    """HR@k / NDCG@k from ``counts`` of ranks ``0..top-1`` and the user count (last entry).

    Sums of integers and one correctly rounded ``math.fsum`` per cut-off: the result depends on
    the multiset of ranks only, never on their order or on how they were split across
    processes.
    """
    bins, total = counts[:-1], counts[-1]
    out: dict[str, float] = {}
    for k in ks:
        hits = sum(bins[:k])
        gain = math.fsum(c / math.log2(r + 2) for r, c in enumerate(bins[:k]))
        out[f"HR@{k}"] = hits / total
        out[f"NDCG@{k}"] = gain / total
    return out


def ranking_metrics(ranks: Tensor, *, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    r"""HR@k and NDCG@k from 0-based target ranks (one relevant item per user).

    $$
    \mathrm{HR@}k = \operatorname{mean}_u \mathbb{1}[r_u < k], \qquad
    \mathrm{NDCG@}k = \operatorname{mean}_u \frac{\mathbb{1}[r_u < k]}{\log_2(r_u + 2)} .
    $$

    Computed from the count of users at each rank below ``max(ks)`` with exact integer sums and
    a correctly rounded float sum, so the value depends only on the multiset of ranks (sharded
    evaluation gives exactly the single-process numbers).

    Args:
        ranks: ``(u,)`` non-negative integer ranks (from ``rank_targets``).
        ks: distinct cut-offs, each >= 1.

    Shape:
        - ranks: $(u,)$.

    Returns:
        ``{"HR@5": ..., "NDCG@5": ..., "HR@10": ..., ...}`` as Python floats, in the order of
        ``ks`` with HR before NDCG.

    Raises:
        TypeError: if ``ranks`` is not an integer tensor or a cut-off is not an int.
        ValueError: if ``ranks`` is not 1-D or empty, a cut-off is < 1 or repeated, or (value
            check) a rank is negative.

    Examples:
        >>> import torch
        >>> from s4rec_components import ranking_metrics
        >>> ranking_metrics(torch.tensor([0, 1, 30]), ks=(1, 5))
        {'HR@1': 0.3333333333333333, 'NDCG@1': 0.3333333333333333,
         'HR@5': 0.6666666666666666, 'NDCG@5': 0.5436432511904858}
    """
    check_ndim(ranks, 1, "ranks", "(u,)")
    check_integer(ranks, "ranks")
    check_nonempty(ranks, "ranks")
    cutoffs = _check_ks(ks)
    low, high = (int(v) for v in torch.aminmax(ranks))  # read once: the counts are read anyway
    if validate_args_enabled() and low < 0:
        raise ValueError(f"ranks must be >= 0, got a minimum of {low}")
    top = min(max(cutoffs), high + 1)  # no bins beyond the largest rank, however large k is
    return _metrics_from_counts(_rank_counts(ranks, top).tolist(), cutoffs)


@dataclass
class RankingResult:
    """Outcome of ``evaluate_ranking``: the metrics and every user's rank.

    Attributes:
        metrics: ``{"HR@5": ..., "NDCG@5": ..., ...}`` over all users.
        ranks: ``(u,)`` long 0-based rank of each user's target, on the CPU, in user order
            (under ``distributed=True`` gathered from every process, the same on each).
        ks: the cut-offs of ``metrics``.

    Examples:
        >>> import torch
        >>> from s4rec_components import RankingResult, ranking_metrics
        >>> ranks = torch.tensor([0, 7, 2, 40])
        >>> result = RankingResult(ranking_metrics(ranks, ks=(5,)), ranks, (5,))
        >>> result.subset(torch.tensor([True, False, True, False]))
        {'HR@5': 1.0, 'NDCG@5': 0.75}
    """

    metrics: dict[str, float]
    ranks: Tensor
    ks: tuple[int, ...] = field(default=DEFAULT_KS)

    def subset(self, mask: Tensor) -> dict[str, float]:
        """Metrics over the users where the ``(u,)`` boolean ``mask`` is true (e.g. head users).

        Examples:
            >>> import torch
            >>> from s4rec_components import RankingResult, ranking_metrics
            >>> ranks = torch.tensor([0, 2, 6, 40])
            >>> result = RankingResult(ranking_metrics(ranks, ks=(1, 5)), ranks, (1, 5))
            >>> result.subset(torch.tensor([True, True, False, False]))  # users 0 and 1 only
            {'HR@1': 0.5, 'NDCG@1': 0.5, 'HR@5': 1.0, 'NDCG@5': 0.75}
        """
        check_ndim(mask, 1, "mask", "(u,)")
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a boolean tensor, got dtype {mask.dtype}")
        check_same_size(mask, self.ranks, (0, 0), ("mask", "ranks"))
        chosen = self.ranks[mask.cpu()]
        if chosen.numel() == 0:
            raise ValueError("mask selects no user; metrics of an empty group are undefined")
        return ranking_metrics(chosen, ks=self.ks)

    def per_user(self, lengths: Tensor | None = None) -> dict[str, Tensor]:
        """Per-user columns: ``rank``, ``length`` (when given, e.g. ``split.lengths``) and each
        ``HR@k`` / ``NDCG@k`` contribution, all ``(u,)`` CPU tensors (for head/tail studies).

        Examples:
            >>> import torch
            >>> from s4rec_components import RankingResult, ranking_metrics
            >>> ranks = torch.tensor([0, 2, 6])
            >>> result = RankingResult(ranking_metrics(ranks, ks=(5,)), ranks, (5,))
            >>> columns = result.per_user(lengths=torch.tensor([3, 8, 4]))
            >>> {name: column.tolist() for name, column in columns.items()}
            {'rank': [0, 2, 6], 'length': [3, 8, 4], 'HR@5': [1.0, 1.0, 0.0], 'NDCG@5': [1.0, 0.5, 0.0]}
        """
        r = self.ranks.to(torch.float64)
        out: dict[str, Tensor] = {"rank": self.ranks}
        if lengths is not None:
            check_ndim(lengths, 1, "lengths", "(u,)")
            check_same_size(lengths, self.ranks, (0, 0), ("lengths", "ranks"))
            out["length"] = lengths.cpu()
        for k in self.ks:
            hit = r < k
            out[f"HR@{k}"] = hit.to(torch.float64)
            out[f"NDCG@{k}"] = torch.where(hit, 1.0 / torch.log2(r + 2.0), torch.zeros_like(r))
        return out


# ------------------------------------------------------------------------------ the driver
def _shard(users: int, distributed: bool) -> tuple[int, int, int]:
    """``(start, stop, world_size)``: this process's contiguous block of users."""
    if not (distributed and dist.is_available() and dist.is_initialized()):
        return 0, users, 1
    world, me = dist.get_world_size(), dist.get_rank()
    return me * users // world, (me + 1) * users // world, world


def _progress(total: int, enabled: bool) -> Any:
    """A tqdm bar over users when asked, installed and stderr is a terminal; else ``None``."""
    if not enabled or not sys.stderr.isatty():
        return None
    try:
        tqdm = importlib.import_module("tqdm.auto").tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="ranking", unit="user", leave=False, dynamic_ncols=True)


def _rows(count: int) -> str:
    return f"{count} row" + ("" if count == 1 else "s")


def evaluate_ranking(
    score_fn: Callable[[Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    *,
    history: History | None = None,
    batch_size: int = 1024,
    ignore_ids: Sequence[int] = (PADDING_ID,),
    history_value: float | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
    ks: Sequence[int] = DEFAULT_KS,
    memory_budget: int | None = None,
    distributed: bool = False,
) -> RankingResult:
    r"""Full-ranking HR@k / NDCG@k of a scorer over many users, batch by batch.

    For every batch of users, ``score_fn(inputs[batch])`` gives ``(b, n)`` scores of the items
    ``0..n-1`` (call it under the model's ``eval()`` mode yourself); the targets are ranked as
    :func:`rank_targets` does, on that device, and :func:`ranking_metrics` averages over all
    users. Runs under ``torch.no_grad()``.

    **Memory.** A users x items matrix is never built. A batch holds at most ``batch_size``
    users and, whatever ``batch_size`` says, no more than ``memory_budget`` bytes of scores
    plus the ranking's bool blocks, two bytes per score (at least one user per batch). The
    first call of ``score_fn`` scores one user to learn ``n``; the rest go in batches of that
    size. Peak memory is the model, the inputs, the history and one batch's block: for 1M items
    and the default 256 MiB budget, about 44 users per batch.

    **Several processes.** With ``distributed=True`` and an initialised default process group
    (``torch.distributed``), every process must pass the same ``inputs``, ``targets`` and
    ``history`` (all users). Process ``r`` of ``W`` scores only its contiguous block of users
    ``[r u / W, (r + 1) u / W)``; the counts of users at each rank below ``max(ks)`` and the
    number of users are summed over the processes (one ``all_reduce``), so HR / NDCG are sums
    over all users divided by the global count, exactly the single-process numbers (not an
    average of per-process means). Every process also receives every user's rank (one
    ``all_gather`` of ``u`` int64 values), so :attr:`RankingResult.ranks` is the same full
    ``(u,)`` tensor everywhere; write results from rank 0 only. The collectives run on
    ``device`` (a CUDA device under ``nccl``). Without a process group the flag is ignored. A
    NaN target score in any process's block makes every process raise the same ``ValueError``
    after the reduction (none is left waiting in a collective). Likewise an exception (any
    ``Exception``: not a ``KeyboardInterrupt``) raised on one process only while it ranks its
    users, by ``score_fn``, a check of its output or anything else, is re-raised there after one
    small reduction, and every other process raises a ``RuntimeError`` that points to it.

    Args:
        score_fn: maps ``(b, l)`` inputs to ``(b, n)`` float scores of the items ``0..n-1``.
        inputs: ``(u, l)`` integer model inputs (e.g. ``split.inputs("test")``).
        targets: ``(u,)`` held-out items.
        history: items to exclude per user: a :class:`~s4rec_components.ragged.Ragged` with
            ``u`` rows (e.g. ``split.history("test")``), a padded ``(u, h)`` tensor (0 =
            padding), or ``None``.
        batch_size: most users per call of ``score_fn``, >= 1.
        ignore_ids: ids never ranked (padding 0, and the mask id if the scorer has its column).
        history_value: see :func:`rank_targets` (``0.0`` = ICLRec's code).
        device: where to score and rank; default the device of ``inputs``.
        progress: show a tqdm bar (only if tqdm is installed and stderr is a terminal).
        ks: distinct cut-offs, each >= 1.
        memory_budget: bytes for one batch's score block and its bool blocks; default
            :data:`DEFAULT_MEMORY_BUDGET` (256 MiB).
        distributed: shard the users over the processes of the default process group.

    Shape:
        - inputs: $(u, l)$; targets: $(u,)$; history: $(u, h)$ or ``u`` ragged rows.

    Returns:
        A ``RankingResult`` whose ``ranks`` are on the CPU, in user order.

    Raises:
        TypeError: on non-integer inputs / targets / history, a non-float score or a bad type
            of a hyper-parameter.
        ValueError: on mismatched sizes, a bad ``batch_size`` / ``memory_budget`` / ``ks``, a
            ``score_fn`` output that is not ``(b, n)`` with one ``n``, and (value checks) ids
            out of range, targets in ``ignore_ids`` or NaN target scores.
        RuntimeError: with ``distributed=True``, on every process but the one that failed, when
            one process raised while ranking its users.

    Examples:
        >>> import torch
        >>> from s4rec_components import evaluate_ranking
        >>> table = torch.eye(4)  # item i "predicts" item i
        >>> score_fn = lambda x: table[x[:, -1]]
        >>> inputs = torch.tensor([[1, 2], [2, 3]])
        >>> result = evaluate_ranking(score_fn, inputs, torch.tensor([2, 1]), ks=(1,))
        >>> result.ranks.tolist(), result.metrics
        ([0, 1], {'HR@1': 0.5, 'NDCG@1': 0.5})
    """
    if not callable(score_fn):
        raise TypeError(f"score_fn must be callable, got {type(score_fn).__name__}")
    check_ndim(inputs, 2, "inputs", "(u, l)")
    check_integer(inputs, "inputs")
    check_ndim(targets, 1, "targets", "(u,)")
    check_integer(targets, "targets")
    check_same_size(inputs, targets, (0, 0), ("inputs", "targets"))
    check_nonempty(targets, "targets")
    if history is not None:
        _check_history(history, inputs.shape[0], "history", "inputs")
    batch = check_int(batch_size, "batch_size", 1)
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else check_int(memory_budget, "memory_budget", 1)
    ids = _check_ignore_ids(ignore_ids)
    value = _check_history_value(history_value)
    cutoffs = _check_ks(ks)
    check_bool(progress, "progress")
    check_bool(distributed, "distributed")
    if isinstance(device, bool) or not (device is None or isinstance(device, (str, int, torch.device))):
        raise TypeError(f"device must be a torch.device, a str such as 'cuda:0', an int or None, got {device!r}")
    where = torch.device(device) if device is not None else inputs.device
    if validate_args_enabled():
        _check_targets_range(targets, None, _ignored_columns(ids, None, targets.device))
    request = _Request(score_fn, inputs, targets, history, batch, budget, ids, value, where, progress)
    return _evaluate_impl(request, cutoffs, distributed)


@dataclass(frozen=True)
class _Request:
    """The checked arguments of one :func:`evaluate_ranking` call."""

    score_fn: Callable[[Tensor], Tensor]
    inputs: Tensor
    targets: Tensor
    history: History | None
    batch_size: int
    budget: int
    ignore_ids: tuple[int, ...]
    history_value: float | None
    device: torch.device
    progress: bool


def _evaluate_impl(request: _Request, ks: tuple[int, ...], distributed: bool) -> RankingResult:
    users, device = request.inputs.shape[0], request.device
    start, stop, world = _shard(users, distributed)
    failure: Exception | None = None  # raised on this process only: the others must learn of it
    try:  # all of this process's own work, so that a failure in any of it reaches the others
        shard = _rank_shard(request, start, stop, collect_nan=world > 1)
        # bins up to this process's own n: every rank is below it, so the bins past it are 0
        local_counts = _rank_counts(shard.ranks, max(1, min(max(ks), shard.columns)))
    except Exception as error:  # noqa: BLE001 - re-raised below, after the peers are told
        if world == 1:
            raise
        failure = error
    if world == 1:
        if shard.nan_flags and bool(torch.stack(shard.nan_flags).any()):
            raise ValueError(_NAN_TARGET_MESSAGE)
        return RankingResult(_metrics_from_counts(local_counts.tolist(), ks), shard.ranks.cpu(), ks)
    # Several processes. The first reduction agrees on n (a process without users never learnt
    # it) and on whether any process failed, so that all raise instead of some waiting below.
    agreed = torch.tensor([shard.columns if failure is None else -1, failure is not None],
                          dtype=torch.long, device=device)
    dist.all_reduce(agreed, op=dist.ReduceOp.MAX)
    columns, anyone_failed = agreed.tolist()
    if failure is not None:
        raise failure
    if anyone_failed:
        raise RuntimeError(
            "evaluate_ranking failed on another process (its own error says why); this process "
            "stopped with it instead of waiting in the reduction"
        )
    top = max(1, min(max(ks), columns))
    counts = torch.zeros(top + 2, dtype=torch.long, device=device)  # bins, user count, NaN slot
    local_top = local_counts.numel() - 1
    counts[:local_top] = local_counts[:local_top].to(device)
    counts[top] = local_counts[local_top].to(device)
    # the last slot counts the processes that met a NaN target, so that all of them raise
    # together after the reduction instead of one raising while the others wait in it
    if shard.nan_flags:
        counts[top + 1] = torch.stack(shard.nan_flags).any().to(device=device, dtype=torch.long)
    dist.all_reduce(counts, op=dist.ReduceOp.SUM)
    processes_with_nan = int(counts[top + 1])
    if processes_with_nan:
        raise ValueError(f"{_NAN_TARGET_MESSAGE} (on {processes_with_nan} of {world} processes)")
    ranks = _gather_ranks(shard.ranks.to(device), users, world)
    return RankingResult(_metrics_from_counts(counts[: top + 1].tolist(), ks), ranks.cpu(), ks)


@dataclass
class _Shard:
    """One process's part of a ranking: its users' ranks, in order, and what it learnt."""

    ranks: Tensor  # (stop - start,) int64
    columns: int  # n, the number of score columns (-1: this process scored nobody)
    nan_flags: list[Tensor]  # ``()`` bool device tensors, one per batch, read back by the caller


def _rank_shard(request: _Request, start: int, stop: int, *, collect_nan: bool) -> _Shard:
    """Rank users ``start..stop-1`` in batches sized to the budget (no collective inside)."""
    score_fn, inputs, targets, history = request.score_fn, request.inputs, request.targets, request.history
    batch_size, budget, ignore_ids = request.batch_size, request.budget, request.ignore_ids
    history_value, device, progress = request.history_value, request.device, request.progress
    ragged: Ragged | None = None
    offset = 0  # the row of user ``start`` in ``ragged``
    if isinstance(history, Ragged):
        ragged, offset = history, start
    elif history is not None:
        ragged = Ragged.from_padded(history[start:stop])
    prepared: _History | None = None
    parts: list[Tensor] = []
    n = -1
    ignored = torch.empty(0, dtype=torch.long, device=device)
    buffer = torch.empty(0, dtype=torch.bool, device=device)
    nan_flags: list[Tensor] = []  # one per batch, read back once at the end
    dense = False
    shard_inputs, shard_targets = inputs[start:stop], targets[start:stop].to(device=device, dtype=torch.long)
    copy_async = device.type == "cuda" and shard_inputs.device.type == "cpu"
    if copy_async:  # page-locked once, so that no batch's copy to the GPU waits for the stream
        shard_inputs = shard_inputs.pin_memory()
    rows_per_batch = 1  # the first batch is one user: it tells n, which sizes the rest
    position = start
    bar = _progress(stop - start, progress)
    try:
        with torch.no_grad():
            while position < stop:
                end = min(stop, position + rows_per_batch)
                batch = shard_inputs[position - start : end - start]
                scores = score_fn(batch.to(device, non_blocking=copy_async))
                check_tensor(scores, "score_fn output")
                check_ndim(scores, 2, "score_fn output", "(b, n)")
                check_float(scores, "score_fn output")
                if scores.shape[0] != end - position:
                    raise ValueError(
                        f"score_fn must return one row per input row: got {_rows(scores.shape[0])} for "
                        + (f"input row {position}" if end - position == 1
                           else f"the {end - position} input rows {position}..{end - 1}")
                        + " (the first batch is one row, the later ones larger)"
                    )
                if n < 0:
                    n = scores.shape[1]
                    check_nonempty(scores, "score_fn output")
                    ignored = _ignored_columns(ignore_ids, n, scores.device)
                    if validate_args_enabled():
                        _check_targets_range(targets, n, ignored)
                        if history is not None:
                            _check_history_range(history, n, "history")
                    dense = _counts_densely(scores.device)
                    row_bytes = n * (scores.element_size() + _TIE_BYTES_PER_SCORE) + _buffer_width(n)
                    rows_per_batch = max(1, min(batch_size, budget // row_bytes))
                    buffer = _count_buffer(rows_per_batch, n, scores.device)
                    if ragged is not None:
                        prepared = _History.build(ragged, offset, offset + stop - start, n, ignored, scores.device)
                elif scores.shape[1] != n:
                    raise ValueError(
                        f"score_fn must return the same number of item columns for every batch: got {n} "
                        f"then {scores.shape[1]}"
                    )
                pairs = None if prepared is None else prepared.pairs(position - start, end - start)
                batch_targets = shard_targets[position - start : end - start].to(scores.device)
                parts.append(  # the NaN checks are read back once at the end where a read costs a
                    # sync, or folded into the reduction when other processes must learn of them too
                    _rank_impl(scores, batch_targets, pairs, ignored, history_value, buffer[: end - position],
                               nan_flags if dense or collect_nan else None, dense)
                )
                del scores  # free this block before the next one is computed: one block at a time
                if bar is not None:
                    bar.update(end - position)
                position = end
    finally:
        if bar is not None:
            bar.close()
    ranks = torch.cat(parts) if parts else torch.empty(0, dtype=torch.long, device=device)
    return _Shard(ranks, n, nan_flags)


def _gather_ranks(local: Tensor, users: int, world: int) -> Tensor:
    """Every process's contiguous block of ranks, concatenated in user order (padded all_gather)."""
    sizes = [(r + 1) * users // world - r * users // world for r in range(world)]
    longest = max(sizes)
    padded = torch.zeros(longest, dtype=torch.long, device=local.device)
    padded[: local.numel()] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)])
