"""ICLRec's per-epoch intents: k-means over the eval-mode representation of every training sequence."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .model import Intents, S4RecModel

__all__ = ["encode_sequences", "fit_intents"]


@torch.no_grad()
def encode_sequences(model: S4RecModel, inputs: Tensor, pooling: str, batch_size: int) -> Tensor:
    """``(u, d')`` eval-mode representations of ``inputs (u, l)`` (restores the training mode)."""
    was_training = model.training
    model.eval()
    try:
        chunks = [
            model.encoder.represent(inputs[start : start + batch_size], pooling=pooling)  # type: ignore[arg-type]
            for start in range(0, inputs.shape[0], batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(chunks)


def fit_intents(
    model: S4RecModel, inputs: Tensor, *, num_intents: int, num_iters: int, seed: int, batch_size: int
) -> Intents:
    """Fit this epoch's k-means (ICLRec: every epoch, seed fixed, 20 iterations).

    Returns the fitted k-means (it assigns with the raw centroids, as ICLRec's faiss index does)
    and its L2-normalised centroids (what ICLRec's intent NCE uses as positives).
    """
    try:
        from s4rec_components import KMeans
    except ImportError:  # until the library's KMeans lands (requests-D1.md)
        KMeans = _FallbackKMeans  # noqa: N806

    x = encode_sequences(model, inputs, model.intent_pooling, batch_size)
    kmeans = KMeans(min(num_intents, x.shape[0]), num_iters=num_iters, seed=seed).to(x.device)
    kmeans.fit(x)
    return Intents(kmeans=kmeans, centroids=F.normalize(kmeans.centroids, dim=-1))


class _FallbackKMeans(torch.nn.Module):
    """Temporary stand-in for ``s4rec_components.KMeans`` (Lloyd's algorithm, random init)."""

    def __init__(self, num_clusters: int, *, num_iters: int = 20, seed: int = 0) -> None:
        super().__init__()
        self.num_clusters, self.num_iters, self.seed = num_clusters, num_iters, seed
        self.register_buffer("centroids", torch.zeros(0))

    @torch.no_grad()
    def fit(self, x: Tensor) -> _FallbackKMeans:
        g = torch.Generator(device=x.device).manual_seed(self.seed)
        c = x[torch.randperm(x.shape[0], device=x.device, generator=g)[: self.num_clusters]].clone()
        for _ in range(self.num_iters):
            a = torch.cdist(x, c).argmin(1)
            sums = torch.zeros_like(c).index_add_(0, a, x)
            counts = torch.bincount(a, minlength=c.shape[0]).unsqueeze(1).to(x.dtype)
            c = torch.where(counts > 0, sums / counts.clamp(min=1), c)
        self.centroids = c
        return self

    @torch.no_grad()
    def assign(self, x: Tensor) -> Tensor:
        return torch.cdist(x, self.centroids).argmin(1)
