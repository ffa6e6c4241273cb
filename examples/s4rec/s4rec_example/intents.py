"""ICLRec's per-epoch intents: k-means over the eval-mode representation of every training sequence."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from s4rec_components import KMeans

from .model import Intents, S4RecModel

__all__ = ["encode_sequences", "fit_intents", "intent_kmeans", "restore_intents"]


@torch.no_grad()
def encode_sequences(model: S4RecModel, inputs: Tensor, pooling: str, batch_size: int) -> Tensor:
    """``(u, d')`` eval-mode representations of ``inputs (u, l)`` (restores the training mode)."""
    was_training = model.training
    model.eval()
    try:
        chunks = [
            model.encoder.represent(inputs[start : start + batch_size], pooling=pooling)
            for start in range(0, inputs.shape[0], batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(chunks)


ICLREC_MAX_POINTS_PER_CENTROID = 4096  # faiss' default, which ICLRec keeps


def intent_kmeans(
    num_intents: int, *, num_iters: int, seed: int, num_redo: int = 1, warm_start: bool = False
) -> KMeans:
    """The unfitted k-means of ICLRec's intents (faiss' settings there; see :func:`fit_intents`)."""
    return KMeans(
        num_intents,
        num_iters=num_iters,
        num_redo=num_redo,
        seed=seed,
        max_points_per_centroid=ICLREC_MAX_POINTS_PER_CENTROID,
        warm_start=warm_start,
    )


def fit_intents(
    model: S4RecModel,
    inputs: Tensor,
    *,
    num_intents: int,
    num_iters: int,
    seed: int,
    batch_size: int,
    num_redo: int = 1,
    warm_start: bool = False,
    previous: Intents | None = None,
) -> Intents:
    """Fit this epoch's k-means (ICLRec: every epoch, seed fixed, 20 iterations, best of 5 restarts).

    With ``warm_start`` and the ``previous`` epoch's intents, the fit starts from their
    centroids, and each restart from where the one before ended: ICLRec keeps one
    ``faiss.Clustering`` for the whole run, which starts from the centroids it holds. Without,
    every fit starts from random points.

    Returns the fitted k-means (it assigns with the raw centroids, as ICLRec's faiss index does)
    and its L2-normalised centroids (what ICLRec's intent NCE uses as positives).
    """
    x = encode_sequences(model, inputs, model.intent_pooling, batch_size)
    k = min(num_intents, x.shape[0])
    kmeans = intent_kmeans(k, num_iters=num_iters, seed=seed, num_redo=num_redo, warm_start=warm_start)
    last = previous.kmeans if previous is not None else None
    if warm_start and isinstance(last, KMeans) and last.fitted and last.num_clusters == k:
        kmeans.centroids = last.centroids.detach().clone()
    kmeans = kmeans.to(x.device)
    kmeans.fit(x)
    return Intents(kmeans=kmeans, centroids=F.normalize(kmeans.centroids, dim=-1))


def restore_intents(centroids: Tensor, *, num_iters: int, seed: int, num_redo: int = 1) -> Intents:
    """A previous epoch's warm-start intents from their saved raw ``(k, d)`` centroids (resume)."""
    kmeans = intent_kmeans(centroids.shape[0], num_iters=num_iters, seed=seed, num_redo=num_redo, warm_start=True)
    kmeans.centroids = centroids
    return Intents(kmeans=kmeans, centroids=F.normalize(centroids, dim=-1))
