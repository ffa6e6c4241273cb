"""ICLRec's per-epoch intents: k-means over the eval-mode representation of every training sequence."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from s4rec_components import KMeans, Pooling

from .config import TrainConfig
from .model import Intents, S4RecModel

__all__ = ["encode_sequences", "fit_intents", "intent_centroid_shape"]


@torch.no_grad()
def encode_sequences(model: S4RecModel, inputs: Tensor, pooling: Pooling, batch_size: int) -> Tensor:
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


def intent_centroid_shape(config: TrainConfig, num_sequences: int) -> tuple[int, int]:
    """``(k, d')`` of the centroids :func:`fit_intents` gives for ``num_sequences`` training
    sequences: ``k = min(num_intents, num_sequences)``; ``d' = l * d`` for ``flatten`` pooling,
    ``d`` otherwise."""
    width = config.hidden_size * (config.max_len if config.intent_pooling == "flatten" else 1)
    return min(config.num_intents, num_sequences), width


def fit_intents(
    model: S4RecModel,
    inputs: Tensor,
    *,
    num_intents: int,
    num_iters: int,
    seed: int,
    batch_size: int,
    num_redo: int = 1,
    init: Tensor | None = None,
) -> Intents:
    """Fit this epoch's k-means (ICLRec: every epoch, seed fixed, 20 iterations, best of 5 restarts).

    ``init``: raw ``(k, d)`` centroids to start from, e.g. the last epoch's (ICLRec keeps one
    ``faiss.Clustering`` for the whole run, which starts from the centroids it holds; each
    restart then continues from the one before). ``None``: random points of this epoch's
    representations.

    Returns the fitted k-means (it assigns with the raw centroids, as ICLRec's faiss index does)
    and its L2-normalised centroids (what ICLRec's intent NCE uses as positives).
    """
    x = encode_sequences(model, inputs, model.intent_pooling, batch_size)
    kmeans = KMeans(
        min(num_intents, x.shape[0]),
        num_iters=num_iters,
        num_redo=num_redo,
        seed=seed,
        max_points_per_centroid=ICLREC_MAX_POINTS_PER_CENTROID,
        warm_start=init is not None,
    )
    if init is not None:
        kmeans.centroids = init.detach().clone()
    kmeans = kmeans.to(x.device)
    kmeans.fit(x)
    return Intents(kmeans=kmeans, centroids=F.normalize(kmeans.centroids, dim=-1))
