r"""Full-ranking evaluation: the rank of the held-out item among all items, HR@k and NDCG@k.

S4Rec Section 5.1.2 (and S3-Rec / CoSeRec / ICLRec) rank each user's held-out item against the
whole catalogue, items the user already interacted with excluded, and report

$$
\mathrm{HR@}k = \frac{1}{|U|} \sum_u \mathbb{1}[r_u < k], \qquad
\mathrm{NDCG@}k = \frac{1}{|U|} \sum_u \frac{\mathbb{1}[r_u < k]}{\log_2(r_u + 2)},
$$

where $r_u$ is the 0-based rank of the target (one relevant item, so the ideal DCG is 1).

The public ICLRec code does not exclude the history but sets its scores to 0
(``rating_pred[train_matrix > 0] = 0``); ``history_value=0.0`` reproduces that.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ._validation import (
    check_float,
    check_integer,
    check_ndim,
    check_nonempty,
    check_same_size,
)

PADDING_ID = 0
"""Item id 0 pads histories; it is never treated as a history item."""

DEFAULT_KS = (5, 10, 20)
"""Cut-offs reported by default; the paper uses 5 and 20, ICLRec also 10."""


def _ignored_ids(ignore_ids: Sequence[int], num_columns: int) -> list[int]:
    ids = [int(i) for i in ignore_ids]
    return [i for i in ids if 0 <= i < num_columns]


def rank_targets(
    scores: Tensor,
    targets: Tensor,
    exclude: Tensor | None = None,
    ignore_ids: Sequence[int] = (0,),
    history_value: float | None = None,
) -> Tensor:
    r"""0-based rank of each target item among all candidate items (full ranking).

    With candidate set $C_b$ and scores $s_{b,j}$, the rank of target $t$ is

    $$
    r_b = \#\{j \in C_b : s_{b,j} > s_{b,t}\} + \#\{j \in C_b : j < t,\ s_{b,j} = s_{b,t}\},
    $$

    i.e. ties are broken pessimistically by item index, deterministically. Batched over rows on
    the scores' device: two passes over the ``(b, n)`` scores, then corrections on the few
    ignored and history columns.

    * Columns in ``ignore_ids`` (padding 0, and the mask id when the caller passes it) are never
      candidates. Ids outside ``0..n-1`` are skipped, so a mask id the scorer has no column for is
      harmless.
    * With ``history_value=None`` the ids in ``exclude`` (the user's history; 0 entries are
      padding and ignored) are removed from the candidates: the paper's "history items excluded".
      The target itself is never removed, even when it also occurs in the history (a repeated
      purchase): it keeps its own score and is ranked against the other non-history items.
    * With ``history_value`` set (ICLRec's code: ``0.0``) the history items stay candidates with
      their score replaced by that value. This mode reproduces the public code exactly, so a target
      that is also a history item gets ``history_value`` too, as it does there.

    Args:
        scores: ``(b, n)`` float scores of the items ``0..n-1`` (column = item id). A NaN at a
            target is rejected; NaN elsewhere never ranks above the target.
        targets: ``(b,)`` integer target ids in ``0..n-1``, none of them in ``ignore_ids``.
        exclude: ``(b, h)`` integer ids of each row's history (0 = padding), or ``None``.
        ignore_ids: item ids that are never ranked.
        history_value: ``None`` to exclude the history, or the score given to history items.

    Shape:
        - scores: $(b, n)$.
        - targets: $(b,)$.
        - exclude: $(b, h)$.
        - output: $(b,)$ long, on the scores' device, in ``0..n-1``.

    Returns:
        The ``(b,)`` long tensor of ranks.

    Raises:
        TypeError: on a non-float ``scores`` or non-integer ``targets`` / ``exclude``.
        ValueError: on wrong shapes, mismatched batch sizes, ids out of range, a target in
            ``ignore_ids`` or a NaN target score.

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
    b, n = scores.shape
    low, high = int(targets.min()), int(targets.max())
    if low < 0 or high >= n:
        raise ValueError(
            f"targets must be item ids in [0, {n - 1}] (columns of scores), got values in [{low}, {high}]"
        )
    ignored = _ignored_ids(ignore_ids, n)
    if ignored and bool(torch.isin(targets, torch.tensor(ignored, device=targets.device)).any()):
        raise ValueError(f"targets must not be ignored ids {ignored} (padding / mask), got one of them")
    device = scores.device
    targets = targets.to(device=device, dtype=torch.long)
    own = targets.unsqueeze(1)  # (b, 1)
    target_score = scores.gather(1, own).squeeze(1)  # (b,)
    if bool(torch.isnan(target_score).any()):
        raise ValueError("scores are NaN at some targets; the model's output is not rankable")

    history, kept = None, None
    if exclude is not None:
        check_ndim(exclude, 2, "exclude", "(b, h)")
        check_integer(exclude, "exclude")
        check_same_size(scores, exclude, (0, 0), ("scores", "exclude"))
        if exclude.numel() > 0:
            lo, hi = int(exclude.min()), int(exclude.max())
            if lo < 0 or hi >= n:
                raise ValueError(f"exclude must hold item ids in [0, {n - 1}], got values in [{lo}, {hi}]")
            history, kept = _distinct_history(exclude.to(device=device, dtype=torch.long), ignored)
            if history_value is None:
                kept &= history != own  # the target stays a candidate
            else:
                target_in_history = (kept & (history == own)).any(dim=1)
                target_score = torch.where(
                    target_in_history, torch.full_like(target_score, float(history_value)), target_score
                )
    bar = target_score.unsqueeze(1)  # (b, 1)

    def beaten(values: Tensor, ids: Tensor) -> Tensor:
        """Does a column of score ``values`` and id ``ids`` rank before the target?"""
        return (values > bar) | ((values == bar) & (ids < own))

    # every column, original scores: strictly higher, plus equal ones with a smaller id
    # (int32 sums of the bool masks are about twice as fast as the default int64 ones)
    rank = (scores > bar).sum(dim=1, dtype=torch.int32).long()
    target_ties = (scores.gather(1, own) == bar).squeeze(1).int()  # 0 only in the quirk mode
    equal = (scores == bar).sum(dim=1, dtype=torch.int32) - target_ties
    tied = torch.nonzero(equal > 0).squeeze(1)  # rows with ties besides the target: exact count
    if tied.numel() > 0:
        columns = torch.arange(n, device=device).unsqueeze(0)
        before = (scores[tied] == bar[tied]) & (columns < own[tied])
        rank = rank.index_add(0, tied, before.sum(dim=1))
    # then correct the few columns that are not ordinary candidates
    if ignored:
        ids = torch.tensor(ignored, device=device).unsqueeze(0)
        rank = rank - beaten(scores[:, ignored], ids).sum(dim=1)
    if history is not None:
        counted = beaten(scores.gather(1, history), history) & kept
        rank = rank - counted.sum(dim=1)
        if history_value is not None:
            replaced = beaten(torch.full_like(bar, float(history_value)), history) & kept
            rank = rank + replaced.sum(dim=1)
    return rank


def _distinct_history(history: Tensor, ignored: list[int]) -> tuple[Tensor, Tensor]:
    """Sorted ``(b, h)`` history and a mask of its distinct entries that are not padding / ignored."""
    history = history.sort(dim=1).values
    kept = history != PADDING_ID
    if ignored:
        kept &= ~torch.isin(history, torch.tensor(ignored, device=history.device))
    kept[:, 1:] &= history[:, 1:] != history[:, :-1]
    return history, kept


def ranking_metrics(ranks: Tensor, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    r"""HR@k and NDCG@k from 0-based target ranks (one relevant item per user).

    $$
    \mathrm{HR@}k = \operatorname{mean}_u \mathbb{1}[r_u < k], \qquad
    \mathrm{NDCG@}k = \operatorname{mean}_u \frac{\mathbb{1}[r_u < k]}{\log_2(r_u + 2)} .
    $$

    Args:
        ranks: ``(u,)`` non-negative integer ranks (from ``rank_targets``).
        ks: cut-offs, each >= 1.

    Shape:
        - ranks: $(u,)$.

    Returns:
        ``{"HR@5": ..., "NDCG@5": ..., "HR@10": ..., ...}`` as Python floats, in the order of
        ``ks`` with HR before NDCG; computed in float64.

    Raises:
        TypeError: if ``ranks`` is not an integer tensor.
        ValueError: if ``ranks`` is not 1-D, empty or negative, or a cut-off is < 1.

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
    if int(ranks.min()) < 0:
        raise ValueError(f"ranks must be >= 0, got a minimum of {int(ranks.min())}")
    ks = tuple(ks)
    if not ks or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty sequence of integers >= 1, got {ks!r}")
    r = ranks.to(torch.float64)
    gain = 1.0 / torch.log2(r + 2.0)
    out: dict[str, float] = {}
    for k in ks:
        hit = r < k
        out[f"HR@{k}"] = float(hit.to(torch.float64).mean())
        out[f"NDCG@{k}"] = float(torch.where(hit, gain, torch.zeros_like(gain)).mean())
    return out


@dataclass
class RankingResult:
    """Outcome of ``evaluate_ranking``: the metrics and every user's rank.

    Attributes:
        metrics: ``{"HR@5": ..., "NDCG@5": ..., ...}`` over all users.
        ranks: ``(u,)`` long 0-based rank of each user's target, on the CPU.
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
        """Metrics over the users where the ``(u,)`` boolean ``mask`` is true (e.g. head users)."""
        check_ndim(mask, 1, "mask", "(u,)")
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a boolean tensor, got dtype {mask.dtype}")
        check_same_size(mask, self.ranks, (0, 0), ("mask", "ranks"))
        chosen = self.ranks[mask.cpu()]
        if chosen.numel() == 0:
            raise ValueError("mask selects no user; metrics of an empty group are undefined")
        return ranking_metrics(chosen, self.ks)

    def per_user(self, lengths: Tensor | None = None) -> dict[str, Tensor]:
        """Per-user columns: ``rank``, ``length`` (when given, e.g. ``split.lengths``) and each
        ``HR@k`` / ``NDCG@k`` contribution, all ``(u,)`` CPU tensors (for head/tail studies)."""
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


def evaluate_ranking(
    score_fn: Callable[[Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    history: Tensor | None,
    batch_size: int = 1024,
    ignore_ids: Sequence[int] = (0,),
    history_value: float | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
    ks: Sequence[int] = DEFAULT_KS,
) -> RankingResult:
    r"""Full-ranking HR@k / NDCG@k of a scorer over many users, batch by batch.

    For every batch, ``score_fn(inputs[batch])`` gives ``(b, n)`` scores of the items ``0..n-1``
    (call it under the model's ``eval()`` mode yourself); ``rank_targets`` ranks the targets
    on that device, and ``ranking_metrics`` averages over all users. Runs under
    ``torch.no_grad()``.

    Args:
        score_fn: maps ``(b, l)`` item ids to ``(b, n)`` float scores.
        inputs: ``(u, l)`` model inputs (e.g. ``split.inputs("test")``).
        targets: ``(u,)`` held-out items.
        history: ``(u, h)`` items to exclude (0 = padding), or ``None``.
        batch_size: users per call of ``score_fn``, >= 1.
        ignore_ids: ids never ranked (padding 0, and the mask id if the scorer has its column).
        history_value: see ``rank_targets`` (``0.0`` = ICLRec's code).
        device: where to score; default the device of ``inputs``.
        progress: show a tqdm bar (only if tqdm is installed; silently none otherwise).
        ks: cut-offs.

    Shape:
        - inputs: $(u, l)$; targets: $(u,)$; history: $(u, h)$.

    Returns:
        A ``RankingResult`` whose ``ranks`` are on the CPU.

    Raises:
        TypeError: on non-integer inputs / targets / history or a non-float score.
        ValueError: on mismatched sizes, a bad ``batch_size``, or a ``score_fn`` output that is
            not ``(b, n)``.

    Examples:
        >>> import torch
        >>> from s4rec_components import evaluate_ranking
        >>> table = torch.eye(4)  # item i "predicts" item i
        >>> score_fn = lambda x: table[x[:, -1]]
        >>> inputs = torch.tensor([[1, 2], [2, 3]])
        >>> result = evaluate_ranking(score_fn, inputs, torch.tensor([2, 1]), None, ks=(1,))
        >>> result.ranks.tolist(), result.metrics
        ([0, 1], {'HR@1': 0.5, 'NDCG@1': 0.5})
    """
    check_ndim(inputs, 2, "inputs", "(u, l)")
    check_integer(inputs, "inputs")
    check_ndim(targets, 1, "targets", "(u,)")
    check_integer(targets, "targets")
    check_same_size(inputs, targets, (0, 0), ("inputs", "targets"))
    check_nonempty(targets, "targets")
    if history is not None:
        check_ndim(history, 2, "history", "(u, h)")
        check_integer(history, "history")
        check_same_size(inputs, history, (0, 0), ("inputs", "history"))
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    device = torch.device(device) if device is not None else inputs.device
    users = inputs.shape[0]
    starts = range(0, users, batch_size)
    batches = _maybe_progress(starts, math.ceil(users / batch_size), progress)
    ranks = []
    with torch.no_grad():
        for start in batches:
            stop = start + batch_size
            scores = score_fn(inputs[start:stop].to(device))
            check_ndim(scores, 2, "score_fn output", "(b, n)")
            if scores.shape[0] != min(stop, users) - start:
                raise ValueError(
                    f"score_fn must return one row per input row: got {scores.shape[0]} rows "
                    f"for {min(stop, users) - start} inputs"
                )
            batch_history = None if history is None else history[start:stop]
            ranks.append(
                rank_targets(scores, targets[start:stop], batch_history, ignore_ids, history_value).cpu()
            )
    all_ranks = torch.cat(ranks)
    ks = tuple(ks)
    return RankingResult(ranking_metrics(all_ranks, ks), all_ranks, ks)


def _maybe_progress(iterable, total: int, enabled: bool):
    """Wrap in a tqdm bar when asked and installed (tqdm is an optional dependency)."""
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc="ranking", leave=False, dynamic_ncols=True)
