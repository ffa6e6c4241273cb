r"""Offline k-means in PyTorch, batched on the device, as faiss runs it for ICLRec's intents.

ICLRec (Chen et al., 2022), and after it ELCRec and ICSRec, cluster the representations of all
training sequences into $k$ intents once per epoch with ``faiss.Clustering`` (ICLRec:
``niter=20``, ``nredo=5``, ``seed`` = the run's seed, ``max_points_per_centroid=4096``,
``min_points_per_centroid=0``, not spherical, L2 index), then look up each batch's nearest
centroid. This module does the same in torch, without faiss:

- :func:`k_means` (named as scikit-learn's, since ``kmeans`` is this module): Lloyd's algorithm on $x \in \mathbb{R}^{n \times d}$, minimising the
  inertia $\sum_i \min_j \lVert x_i - c_j \rVert^2$, with faiss's initialisation
  ($k$ distinct random points), faiss's empty-cluster splitting, restarts, optional
  subsampling, and an exact data-parallel mode (``distributed=True``);
- :class:`KMeans`: the same as an ``nn.Module`` holding the centroids in a buffer (saved in
  ``state_dict``), with ``fit(x)`` and a sync-free, chunked ``assign(x)``.

ICLRec's use: once per epoch, ``fit`` on the eval-mode ``represent(ids, pooling="mean_all")``
of every training sequence (an encoder with ``padding_attention="iclrec"`` gives its padding
values); then, in each training step, ``assign`` the training-mode ``mean_all`` of the batch
(ICLRec queries with the same forward pass that feeds its next-item loss). The intents in its
loss are the L2-normalised centroids, while the search uses the raw ones:

>>> import torch
>>> import torch.nn.functional as F
>>> from s4rec_components import KMeans
>>> z_all = torch.randn(1000, 16)  # eval-mode mean over all positions of every sequence
>>> intents = KMeans(32, num_iters=20, seed=0).fit(z_all)
>>> z_batch = torch.randn(8, 16)  # this batch's sequence representations
>>> intent_ids = intents.assign(z_batch)
>>> prototypes = F.normalize(intents.centroids, dim=1)[intent_ids]
>>> intent_ids.shape, prototypes.shape
(torch.Size([8]), torch.Size([8, 16]))
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ._validation import (
    check_bool,
    check_float,
    check_generator,
    check_int,
    check_ndim,
    check_tensor,
    reads_values,
)
from .constants import loss_dtype

__all__ = ["KMeans", "KMeansResult", "k_means"]

SPLIT_PERTURBATION = 1.0 / 1024.0
"""Relative perturbation faiss applies when it splits a cluster to refill an empty one
(``EPS`` in faiss' ``Clustering.cpp``): coordinates scaled by ``1 +- EPS`` alternately."""
CHUNK_ELEMENTS = 1 << 24
"""Default size of one ``(rows, k)`` distance block: ``chunk_size = CHUNK_ELEMENTS // k`` rows
(64 MiB in float32)."""
_SEED_HIGH = 1 << 62
"""Upper bound (exclusive) of the seed drawn for the empty-cluster splits."""


class KMeansResult(NamedTuple):
    """What :func:`k_means` returns.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[0.0], [0.2], [9.8], [10.0]])
        >>> result = k_means(x, 2, generator=torch.Generator().manual_seed(0))
        >>> sorted(round(c, 4) for c in result.centroids.flatten().tolist())
        [0.1, 9.9]
        >>> result.assignments.tolist() == [result.assignments[0].item()] * 2 + [result.assignments[2].item()] * 2
        True
        >>> round(result.inertia.item(), 4)  # the sum of squared distances to the centres
        0.04
    """

    centroids: Tensor
    """``(k, d)`` cluster centres, in ``constants.loss_dtype(x.dtype)``."""
    assignments: Tensor
    """``(n,)`` long: index of each point's nearest centroid (of this process' points)."""
    inertia: Tensor
    """0-d: $\\sum_i \\lVert x_i - c_{a_i} \\rVert^2$ over all points (of all processes)."""


def _check_hyperparameters(
    num_clusters: object,
    num_iters: object,
    num_redo: object,
    max_points_per_centroid: object,
    chunk_size: object,
    distributed: object,
) -> tuple[int, int, int, int | None, int | None]:
    """The one check of the counts and the flag; returns the counts as Python ints
    ``(num_clusters, num_iters, num_redo, max_points_per_centroid, chunk_size)``."""
    counts = (
        check_int(num_clusters, "num_clusters", 1),
        check_int(num_iters, "num_iters", 0),
        check_int(num_redo, "num_redo", 1),
        None
        if max_points_per_centroid is None
        else check_int(max_points_per_centroid, "max_points_per_centroid", 1),
        None if chunk_size is None else check_int(chunk_size, "chunk_size", 1),
    )
    check_bool(distributed, "distributed")
    return counts


def _check_points(x: object, name: str = "x", layout: str = "(n, d)", centroids: Tensor | None = None) -> Tensor:
    """Shape and dtype of the points; with value checks on, one host read for their finiteness
    and size and, when given, the finiteness of ``centroids`` (which must share their device)."""
    x = check_tensor(x, name)
    check_ndim(x, 2, name, layout)
    check_float(x, name)
    if x.shape[1] == 0:
        raise ValueError(f"{name} must have d >= 1 columns, got shape {tuple(x.shape)}")
    if centroids is not None and x.device != centroids.device:
        raise ValueError(
            f"{name} must be on the centroids' device {centroids.device}, got {x.device} "
            f"(move the module with .to(device))"
        )
    if reads_values(x) and x.numel() > 0:  # one host read for every check
        stats = [x.detach().abs().max().double()]
        if centroids is not None:
            stats.append(torch.isfinite(centroids).all().double())
        largest, *centroids_finite = torch.stack(stats).tolist()
        if centroids_finite and not centroids_finite[0]:
            raise ValueError(
                "the centroids must be finite, got inf or nan (set or loaded by hand: fit gives finite "
                "centroids for finite x); every point would go to the non-finite one"
            )
        if not math.isfinite(largest):
            raise ValueError(f"{name} must be finite (no NaN or inf)")
        # squared distances sum d squares: past this size they overflow the compute dtype
        limit = math.sqrt(torch.finfo(loss_dtype(x.dtype)).max / (4 * x.shape[1]))
        if largest > limit:
            raise ValueError(
                f"{name} has entries up to {largest:.3g}; their squared distances overflow "
                f"{loss_dtype(x.dtype)} past {limit:.3g}: scale the points down or pass float64"
            )
    return x


def _chunk_rows(num_clusters: int, chunk_size: int | None) -> int:
    return chunk_size if chunk_size is not None else max(1, CHUNK_ELEMENTS // num_clusters)


def _nearest(x: Tensor, centroids: Tensor, chunk_rows: int) -> tuple[Tensor, Tensor]:
    """``(n,)`` index of the nearest centroid and ``(n,)`` squared distance to it.

    ``||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2`` one ``(chunk_rows, k)`` block at a time; no
    host reads.
    """
    c_sq = (centroids * centroids).sum(dim=1)  # (k,)
    index, distance = [], []
    for start in range(0, x.shape[0], chunk_rows):
        block = x[start : start + chunk_rows]
        scores = torch.addmm(c_sq, block, centroids.T, alpha=-2.0)  # (chunk, k)
        best, arg = scores.min(dim=1)
        index.append(arg)
        distance.append((best + (block * block).sum(dim=1)).clamp(min=0.0))
    if not index:
        return x.new_zeros(0, dtype=torch.long), x.new_zeros(0)
    return torch.cat(index), torch.cat(distance)


def _all_reduce(t: Tensor, use_distributed: bool) -> Tensor:
    if use_distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def _split_empty(
    centroids: Tensor, counts: Tensor, num_points: int, generator: torch.Generator
) -> None:
    """Refill empty clusters in place as faiss' ``split_clusters`` does.

    For each empty cluster ``i`` (in index order), a cluster ``j`` is picked by scanning
    ``j = 0, 1, ..., k - 1, 0, ...`` and stopping with probability
    ``(count_j - 1) / (n - k)``; ``c_i`` becomes a copy of ``c_j``, the two are pushed apart
    by scaling their even coordinates by ``1 + eps`` / ``1 - eps`` and their odd coordinates
    the other way (``eps = 1/1024``), and ``j``'s count is shared between them. Runs on the
    host with ``generator`` (a CPU generator seeded alike on every process).
    """
    host_counts = counts.detach().to("cpu", torch.float64)
    empty = (host_counts == 0).nonzero().flatten().tolist()
    if not empty:
        return
    k = host_counts.shape[0]
    denominator = float(max(num_points - k, 1))
    sign = torch.ones(centroids.shape[1], dtype=centroids.dtype, device=centroids.device)
    sign[1::2] = -1.0
    for i in empty:
        while True:
            p = (host_counts - 1.0) / denominator
            hits = (torch.rand(k, generator=generator, dtype=torch.float64) < p).nonzero()
            if hits.numel() > 0:
                j = int(hits[0, 0])
                break
        centroids[i] = centroids[j] * (1.0 + SPLIT_PERTURBATION * sign)
        centroids[j] = centroids[j] * (1.0 - SPLIT_PERTURBATION * sign)
        host_counts[i] = host_counts[j] / 2
        host_counts[j] -= host_counts[i]


def _draw_plan(
    num_points: int,
    sample_size: int,
    num_clusters: int,
    generator: torch.Generator | None,
    device: torch.device,
    use_distributed: bool,
) -> tuple[Tensor, Tensor, int]:
    """Global indices of the training sample and of the initial centroids, and a split seed.

    Drawn from ``generator`` on rank 0 and broadcast, so every process and the single-process
    run on the concatenated data use the same ones.
    """
    if not use_distributed or dist.get_rank() == 0:
        gen_device = generator.device if generator is not None else torch.device("cpu")
        perm = torch.randperm(num_points, generator=generator, device=gen_device)
        seed = torch.randint(0, _SEED_HIGH, (1,), generator=generator, device=gen_device)
        plan = torch.cat([perm[:sample_size], seed]).to(device)
    else:
        plan = torch.empty(sample_size + 1, dtype=torch.long, device=device)
    if use_distributed:
        dist.broadcast(plan, src=0)
    sample = plan[:sample_size]
    return sample, sample[:num_clusters], int(plan[-1])


def _gather_rows(
    x: Tensor, global_index: Tensor, offset: int, use_distributed: bool
) -> Tensor:
    """Rows ``global_index`` of the concatenation of every process' ``x`` (in that order)."""
    if not use_distributed:
        return x[global_index]
    local = global_index - offset
    mine = (local >= 0) & (local < x.shape[0])
    rows = x.new_zeros(global_index.shape[0], x.shape[1])
    rows[mine] = x[local[mine]]
    return _all_reduce(rows, True)


def _lloyd(
    x: Tensor,
    centroids: Tensor,
    num_iters: int,
    num_points: int,
    chunk_rows: int,
    split_generator: torch.Generator,
    use_distributed: bool,
) -> Tensor:
    """``num_iters`` rounds of assign / mean / split on ``x`` (this process' training rows)."""
    k, d = centroids.shape
    for _ in range(num_iters):
        index, _ = _nearest(x, centroids, chunk_rows)
        sums = _all_reduce(x.new_zeros(k, d).index_add_(0, index, x), use_distributed)
        counts = _all_reduce(
            x.new_zeros(k).index_add_(0, index, x.new_ones(x.shape[0])), use_distributed
        )
        centroids = sums / counts.clamp(min=1.0).unsqueeze(1)
        _split_empty(centroids, counts, num_points, split_generator)
    return centroids


def _kmeans_impl(
    x: Tensor,
    num_clusters: int,
    num_iters: int,
    num_redo: int,
    generator: torch.Generator | None,
    distributed: bool,
    chunk_size: int | None,
    max_points_per_centroid: int | None,
    init: Tensor | None,
) -> KMeansResult:
    use_distributed = distributed and dist.is_available() and dist.is_initialized()
    dtype = loss_dtype(x.dtype)
    x = x.to(dtype)
    chunk_rows = _chunk_rows(num_clusters, chunk_size)
    offset, num_points = 0, x.shape[0]
    if use_distributed:
        sizes = torch.zeros(dist.get_world_size(), dtype=torch.long, device=x.device)
        sizes[dist.get_rank()] = x.shape[0]
        _all_reduce(sizes, True)
        host_sizes = sizes.tolist()
        offset, num_points = sum(host_sizes[: dist.get_rank()]), sum(host_sizes)
    if num_points < num_clusters:
        raise ValueError(
            f"kmeans needs at least num_clusters={num_clusters} points, got {num_points}"
        )
    sample_size = num_points
    if max_points_per_centroid is not None:
        sample_size = min(num_points, num_clusters * max_points_per_centroid)

    best: tuple[Tensor, Tensor, Tensor] | None = None
    for _ in range(num_redo):
        sample, first, seed = _draw_plan(
            num_points, sample_size, num_clusters, generator, x.device, use_distributed
        )
        if sample_size == num_points:
            train = x
        elif use_distributed:
            local = sample - offset
            train = x[local[(local >= 0) & (local < x.shape[0])]]
        else:
            train = x[sample]
        if init is None:
            centroids = _gather_rows(x, first, offset, use_distributed)
        else:
            centroids = init.to(device=x.device, dtype=dtype).clone()
        split_generator = torch.Generator().manual_seed(seed)
        centroids = _lloyd(
            train, centroids, num_iters, sample_size, chunk_rows, split_generator,
            use_distributed,
        )
        if init is not None:  # faiss: the next restart continues from where this one ended
            init = centroids
        assignments, distance = _nearest(x, centroids, chunk_rows)
        inertia = _all_reduce(distance.sum(), use_distributed)
        if best is None or bool(inertia < best[2]):
            best = (centroids, assignments, inertia)
    assert best is not None  # num_redo >= 1
    return KMeansResult(*best)


def k_means(
    x: Tensor,
    num_clusters: int,
    *,
    num_iters: int = 20,
    num_redo: int = 1,
    generator: torch.Generator | None = None,
    distributed: bool = False,
    chunk_size: int | None = None,
    max_points_per_centroid: int | None = None,
    init: Tensor | None = None,
) -> KMeansResult:
    r"""Lloyd's k-means of $n$ points into $k$ clusters, as ``faiss.Clustering`` runs it.

    Minimises the inertia

    $$
    J(c, a) = \sum_{i=1}^{n} \lVert x_i - c_{a_i} \rVert^2
    $$

    by alternating the two steps of Lloyd's algorithm, each of which never increases $J$:

    $$
    a_i \leftarrow \arg\min_j \lVert x_i - c_j \rVert^2, \qquad
    c_j \leftarrow \frac{1}{|\{i : a_i = j\}|} \sum_{i : a_i = j} x_i .
    $$

    Faithful to faiss (ICLRec's clustering):

    - **Initialisation**: $k$ distinct points drawn uniformly (the first $k$ of a random
      permutation), or ``init``.
    - **Empty clusters** after an update are refilled as faiss' ``split_clusters`` does: a
      cluster $j$ chosen with probability about $(|C_j| - 1)/(n - k)$ is split in two by a
      symmetric relative perturbation of $1/1024$ (even coordinates $\times(1 \pm
      \epsilon)$, odd ones $\times(1 \mp \epsilon)$).
    - **Restarts**: ``num_redo`` runs from different random initialisations; the one with the
      lowest final inertia is kept (ICLRec uses ``nredo=5``). With ``init``, as in faiss when
      its ``Clustering`` already holds centroids, the first run starts from ``init`` and each
      later one from where the one before ended (``num_redo`` rounds of ``num_iters``
      iterations, the best snapshot kept).
    - **Subsampling**: with ``max_points_per_centroid=m``, at most $k m$ random points train
      the centroids (faiss' default 256, ICLRec's 4096); all points are assigned at the end.
      ``None`` trains on all points.
    - Not spherical (ICLRec normalises the centroids afterwards, for its loss only).
    - Differences: faiss seeds its split choices with a fixed 1234 and draws the
      initialisation and the sample from two permutations; here both come from
      ``generator``, and the restart kept is the one whose final inertia is lowest.

    Returned ``assignments`` and ``inertia`` are those of the final centroids (one assignment
    step after the last update), so ``assignments`` are exactly the nearest centroids.
    Distances are computed in blocks of ``chunk_size`` rows, so memory stays at
    $O(\text{chunk\_size} \cdot k + (n + k) d)$. Half-precision inputs are computed in float32.
    The centroid updates read the device once per iteration (to find empty clusters); this is
    offline clustering, not a training step.

    With ``distributed=True`` and an initialised process group, each process passes its own
    shard of the points: sums, counts and the inertia are all-reduced, and the initial points,
    sample and split decisions are drawn from ``generator`` on rank 0 and broadcast, so every
    process gets the same centroids, equal (up to float summation order) to the single-process
    result on the concatenation of the shards in rank order with rank 0's generator. Without a
    process group ``distributed=True`` runs on the local points alone.

    Args:
        x: the points (this process' shard when distributed).
        num_clusters: $k \ge 1$; at most the total number of points.
        num_iters: Lloyd iterations (faiss' ``niter``, ICLRec 20); 0 returns the initial
            centroids.
        num_redo: restarts (faiss' ``nredo``), >= 1.
        generator: random source of the initialisation, sample and splits (default: torch's
            global CPU generator). Only rank 0's is used when distributed.
        distributed: all-reduce over the default process group.
        chunk_size: rows per distance block; default ``2**24 // k``.
        max_points_per_centroid: cap on the training sample per centroid; ``None`` = no cap.
        init: initial centroids instead of random points (restarts then continue from one
            another, as above).

    Shape:
        - x: $(n, d)$, floating point.
        - init: $(k, d)$.
        - centroids: $(k, d)$, dtype ``constants.loss_dtype(x.dtype)``.
        - assignments: $(n,)$, long.
        - inertia: $()$.

    Returns:
        ``KMeansResult(centroids, assignments, inertia)``.

    Raises:
        TypeError: if ``x`` / ``init`` is not a floating-point tensor, a count is not an int
            or ``generator`` is not a ``torch.Generator``.
        ValueError: if ``x`` is not 2-D or has no columns, there are fewer points than
            ``num_clusters``, a count is out of range, ``init`` has the wrong shape, or (a
            value check) ``x`` / ``init`` holds NaN or inf or entries so large that squared
            distances overflow the compute dtype (about 1e18 for float32 at d = 64).

    Examples:
        >>> import torch
        >>> from s4rec_components import k_means
        >>> x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]])
        >>> g = torch.Generator().manual_seed(0)
        >>> sorted(k_means(x, 2, generator=g).centroids.tolist())  # a poor start: local optimum
        [[5.0, 0.0], [5.0, 1.0]]
        >>> result = k_means(x, 2, num_redo=5, generator=g)  # restarts keep the best
        >>> sorted(result.centroids.tolist())
        [[0.0, 0.5], [10.0, 0.5]]
        >>> bool(result.assignments[0] == result.assignments[1]), float(result.inertia)
        (True, 1.0)
    """
    num_clusters, num_iters, num_redo, max_points_per_centroid, chunk_size = _check_hyperparameters(
        num_clusters, num_iters, num_redo, max_points_per_centroid, chunk_size, distributed
    )
    x = _check_points(x)
    check_generator(generator)
    if init is not None:
        init = _check_points(init, "init")
        if tuple(init.shape) != (num_clusters, x.shape[1]):
            raise ValueError(
                f"init must have shape (k, d) = {(num_clusters, x.shape[1])}, got shape "
                f"{tuple(init.shape)}"
            )
    return _kmeans_impl(
        x, num_clusters, num_iters, num_redo, generator, distributed, chunk_size,
        max_points_per_centroid, init,
    )


class KMeans(nn.Module):
    r"""k-means intents as a module: ``fit`` on all sequences, ``assign`` per batch.

    ``fit(x)`` runs :func:`k_means` with a CPU generator seeded with ``seed`` (as faiss' fixed
    ``clus.seed`` in ICLRec, every fit draws the same initial indices) and keeps the centroids
    in the ``centroids`` buffer, so they are saved with ``state_dict`` and move with
    ``.to(device)``. ``assign(x)`` returns each row's nearest centroid, the L2 search ICLRec's
    ``KMeans.query`` runs, in blocks of ``chunk_size`` rows and without reading the device,
    so it can run inside a training step. Calling the module is ``assign``.

    Args:
        num_clusters: $k$, the number of intents (ICLRec: 256 on Beauty).
        num_iters: Lloyd iterations per fit (ICLRec 20).
        num_redo: restarts per fit, best inertia kept (ICLRec's faiss setting: 5).
        seed: seed of the generator each fit uses.
        max_points_per_centroid: training sample cap per centroid (ICLRec 4096); ``None``
            uses every point.
        chunk_size: rows per distance block; default ``2**24 // k``.
        distributed: fit on every process' shard jointly (see :func:`k_means`).
        warm_start: once fitted, start the next ``fit`` from the current centroids (passed
            as :func:`k_means`' ``init``) instead of random points. This is what ICLRec's
            per-epoch clustering does: it keeps one ``faiss.Clustering`` for the whole run, and
            faiss starts from the centroids it already holds, so from the second epoch on the
            intents drift from epoch to epoch instead of being re-partitioned.

    Shape:
        - fit input: $(n, d)$, floating point, $n \ge k$.
        - assign input: $(b, d)$, floating point; output $(b,)$, long.
        - centroids: $(k, d)$ after ``fit`` ($(k, 0)$ before).

    Raises:
        TypeError / ValueError: for bad hyper-parameters (at construction) or inputs (see
            :func:`k_means`); ``assign`` raises ``RuntimeError`` before the first ``fit`` and
            ``ValueError`` for a width or device other than the centroids', or (value checks)
            for points that are not finite or too large.

    Examples:
        >>> import torch
        >>> from s4rec_components import KMeans
        >>> x = torch.cat([torch.randn(50, 4) - 5, torch.randn(50, 4) + 5])
        >>> km = KMeans(2, seed=0).fit(x)
        >>> km.centroids.shape, km.assign(x[:3]).tolist() == [km.assign(x[:1]).item()] * 3
        (torch.Size([2, 4]), True)
        >>> copy = KMeans(2)
        >>> copy.load_state_dict(km.state_dict())
        <All keys matched successfully>
        >>> torch.equal(copy.assign(x), km.assign(x))
        True
    """

    centroids: Tensor
    inertia: Tensor

    def __init__(
        self,
        num_clusters: int,
        *,
        num_iters: int = 20,
        num_redo: int = 1,
        seed: int = 0,
        max_points_per_centroid: int | None = None,
        chunk_size: int | None = None,
        distributed: bool = False,
        warm_start: bool = False,
    ) -> None:
        super().__init__()
        num_clusters, num_iters, num_redo, max_points_per_centroid, chunk_size = _check_hyperparameters(
            num_clusters, num_iters, num_redo, max_points_per_centroid, chunk_size, distributed
        )
        seed = check_int(seed, "seed", 0, 2**64 - 1)  # torch.Generator.manual_seed's range
        check_bool(warm_start, "warm_start")
        self.warm_start = warm_start
        self.num_clusters = num_clusters
        self.num_iters = num_iters
        self.num_redo = num_redo
        self.seed = seed
        self.max_points_per_centroid = max_points_per_centroid
        self.chunk_size = chunk_size
        self.distributed = distributed
        self.register_buffer("centroids", torch.zeros(num_clusters, 0))
        self.register_buffer("inertia", torch.tensor(math.nan), persistent=False)

    def extra_repr(self) -> str:
        return (
            f"num_clusters={self.num_clusters}, num_iters={self.num_iters}, "
            f"num_redo={self.num_redo}, seed={self.seed}"
            + (", warm_start=True" if self.warm_start else "")
        )

    @property
    def fitted(self) -> bool:
        """Whether centroids are present (after ``fit`` or ``load_state_dict``)."""
        return self.centroids.shape[1] > 0

    @torch.no_grad()
    def fit(self, x: Tensor) -> KMeans:
        """Cluster ``x`` (detached) and store the centroids; returns ``self``.

        With ``warm_start=True`` and centroids of ``x``'s width already present, they are the
        starting point (:func:`k_means`' ``init``); otherwise random points of ``x`` are.
        Warm-start centroids with other than ``num_clusters`` rows (set or loaded by hand) are a
        ``ValueError``.

        Examples:
            >>> import torch
            >>> from s4rec_components import KMeans
            >>> KMeans(3).fit(torch.randn(20, 2)).centroids.shape
            torch.Size([3, 2])
        """
        x = _check_points(x)
        generator = torch.Generator().manual_seed(self.seed)
        init = None
        if self.warm_start and self.fitted and self.centroids.shape[1] == x.shape[1]:
            if self.centroids.shape[0] != self.num_clusters:  # set or loaded by hand
                raise ValueError(
                    f"warm start: the centroids have {self.centroids.shape[0]} rows, this KMeans has "
                    f"num_clusters = {self.num_clusters}"
                )
            init = self.centroids
        result = _kmeans_impl(
            x.detach(), self.num_clusters, self.num_iters, self.num_redo, generator,
            self.distributed, self.chunk_size, self.max_points_per_centroid, init,
        )
        self.centroids = result.centroids
        self.inertia = result.inertia
        return self

    @torch.no_grad()
    def assign(self, x: Tensor) -> Tensor:
        """Index of the nearest centroid (squared L2) of each row of ``x``.

        ``x`` and the centroids are compared in their promoted dtype (at least float32). With
        validation on, one host read checks that ``x`` is finite and small enough for squared
        distances in that dtype (as :func:`k_means` does) and that the centroids are finite
        (``ValueError`` otherwise); with it off, nothing is read.

        Examples:
            >>> import torch
            >>> from s4rec_components import KMeans
            >>> km = KMeans(2).fit(torch.tensor([[0.0], [1.0], [9.0], [10.0]]))
            >>> km.assign(torch.tensor([[0.2], [9.7]])).tolist() == km.assign(
            ...     torch.tensor([[0.0], [10.0]])).tolist()
            True
        """
        if not self.fitted:
            raise RuntimeError("KMeans.assign needs centroids: call fit(x) or load_state_dict first")
        x = _check_points(x, layout="(b, d)", centroids=self.centroids)
        if x.shape[1] != self.centroids.shape[1]:
            raise ValueError(
                f"x must have d = {self.centroids.shape[1]} columns like the centroids, got shape "
                f"{tuple(x.shape)}"
            )
        dtype = loss_dtype(x.dtype, self.centroids.dtype)
        chunk_rows = _chunk_rows(self.num_clusters, self.chunk_size)
        index, _ = _nearest(x.to(dtype), self.centroids.to(dtype), chunk_rows)
        return index

    def forward(self, x: Tensor) -> Tensor:
        """Same as :meth:`assign`."""
        return self.assign(x)

    def _load_from_state_dict(  # type: ignore[no-untyped-def]
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
        error_msgs,
    ) -> None:
        """Resize the ``(k, 0)`` placeholder to the saved centroids' width before loading."""
        saved = state_dict.get(prefix + "centroids")
        if (
            isinstance(saved, Tensor)
            and saved.ndim == 2
            and saved.shape[0] == self.num_clusters
            and tuple(saved.shape) != tuple(self.centroids.shape)
        ):
            self.centroids = torch.zeros(
                saved.shape, dtype=saved.dtype, device=self.centroids.device
            )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
