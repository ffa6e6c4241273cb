r"""Online intent clustering with trainable prototypes (S4Rec Sec. 4.1, Eq. 7-11; SwAV).

Sequence representations $z_u$ are scored against $k$ trainable prototypes
(intents) $\mu$; the soft assignment $p_u$ (Eq. 7) is trained by cross-entropy
(Eq. 8) towards an equipartitioned target $q_u$ computed on the batch by Sinkhorn-Knopp
(Eq. 9-11, ``s4rec_components.sinkhorn_knopp``). Clustering happens on the fly, batch by
batch, so the prototypes keep their identity from one step to the next.

Letter legend: ``b`` batch, ``d`` hidden size, ``k`` prototypes.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._validation import (
    check_choice,
    check_float,
    check_int,
    check_ndim,
    check_nonempty,
    check_positive,
    check_tensor,
)
from .sinkhorn import sinkhorn_knopp

__all__ = ["ClusteringOutput", "OnlineIntentClustering", "online_clustering"]

ASSIGN_SOURCES = ("targets", "probs")
"""Allowed values of ``assign_from``: hard assignments from the Sinkhorn targets or from p."""
MIN_COMPUTE_DTYPE = torch.float32
"""Scores are soft-maxed in at least this precision (half inputs are upcast, float64 kept)."""


class ClusteringOutput(NamedTuple):
    """What ``OnlineIntentClustering`` returns.

    Attributes:
        loss: 0-d, $\\mathcal{L}_{Clust}$ (Eq. 8) averaged over the batch.
        assignments: $(b,)$ long, the hard intent $h(u)$ of each sequence.
        prototypes: $(k, d)$, the L2-normalised prototypes $\\mu$ used in the
            scores; they carry gradient (unless frozen) so that downstream losses (intent
            negatives of Eq. 14, the distillation teacher of Eq. 15) train them too.
        probs: $(b, k)$, the soft assignments $p_u$ (Eq. 7).
        targets: $(b, k)$, the Sinkhorn targets $q_u$ (Eq. 9-11), rows sum to 1,
            no gradient.
    """

    loss: Tensor
    assignments: Tensor
    prototypes: Tensor
    probs: Tensor
    targets: Tensor



def _check_hyperparameters(temperature: float, epsilon: float, sinkhorn_iters: int) -> None:
    check_positive(temperature, "temperature")
    check_positive(epsilon, "epsilon")
    check_int(sinkhorn_iters, "sinkhorn_iters", 1)


def online_clustering(
    z: Tensor,
    prototypes: Tensor,
    temperature: float = 0.1,
    epsilon: float = 0.05,
    sinkhorn_iters: int = 3,
    normalize: bool = True,
    assign_from: Literal["targets", "probs"] = "targets",
    distributed: bool = False,
) -> ClusteringOutput:
    r"""Clustering loss of a batch against prototypes (S4Rec Eq. 7-11), the math of the module.

    With $\hat\mu_k = \mu_k / \lVert \mu_k \rVert$ and, when ``normalize``,
    $\hat z_u = z_u / \lVert z_u \rVert$ (otherwise $\hat z_u = z_u$):

    $$
    s_{uk} = \hat z_u \hat\mu_k^\top, \qquad
    p_u^k = \frac{\exp(s_{uk} / \tau_1)}{\sum_{k'} \exp(s_{uk'} / \tau_1)}, \qquad
    q = \operatorname{SinkhornKnopp}(s; \epsilon), \qquad
    \mathcal{L}_{Clust} = \frac{1}{b} \sum_u -\sum_k q_u^k \log p_u^k
    $$

    The targets $q$ carry no gradient (SwAV); $\log p$ is computed with
    ``log_softmax`` in at least float32. Hard assignments are
    $h(u) = \arg\max_k q_u^k$ (or of $p_u$ with ``assign_from="probs"``).

    Args:
        z: sequence representations.
        prototypes: prototype rows $\mu$ (normalised here; pass them detached to freeze).
        temperature: $\tau_1$ of Eq. 7. Must be > 0.
        epsilon: Sinkhorn entropy weight $\epsilon$ of Eq. 9. Must be > 0.
        sinkhorn_iters: Sinkhorn normalisation rounds. Must be >= 1.
        normalize: L2-normalise ``z`` before scoring.
        assign_from: ``"targets"`` (argmax of q) or ``"probs"`` (argmax of p).
        distributed: equipartition over the global batch under ``torch.distributed``.

    Shape:
        - z: $(b, d)$, floating.
        - prototypes: $(k, d)$, floating.
        - output: see ``ClusteringOutput``; ``loss`` and ``probs`` are in
          ``promote(z.dtype, float32)``, ``targets`` in the same dtype.

    Returns:
        A ``ClusteringOutput``.

    Raises:
        TypeError: if ``z`` or ``prototypes`` is not a floating tensor.
        ValueError: for bad shapes, empty or non-finite inputs, or bad hyper-parameters.

    Examples:
        >>> import torch
        >>> from s4rec_components.clustering import online_clustering
        >>> _ = torch.manual_seed(0)
        >>> out = online_clustering(torch.randn(16, 8), torch.randn(4, 8))
        >>> out.loss.shape, out.assignments.shape, out.probs.shape, out.targets.shape
        (torch.Size([]), torch.Size([16]), torch.Size([16, 4]), torch.Size([16, 4]))
        >>> bool(torch.allclose(out.targets.sum(1), torch.ones(16)))
        True
    """
    check_ndim(z, 2, "z", "(b, d)")
    check_float(z, "z")
    check_nonempty(z, "z")
    check_ndim(prototypes, 2, "prototypes", "(k, d)")
    check_float(prototypes, "prototypes")
    check_nonempty(prototypes, "prototypes")
    if z.shape[1] != prototypes.shape[1]:
        raise ValueError(
            f"z and prototypes disagree on d: z has shape {tuple(z.shape)}, prototypes has "
            f"shape {tuple(prototypes.shape)}"
        )
    _check_hyperparameters(temperature, epsilon, sinkhorn_iters)
    check_choice(assign_from, ASSIGN_SOURCES, "assign_from")

    mu = F.normalize(prototypes, dim=1)
    if normalize:
        z = F.normalize(z, dim=1)
    scores = z @ mu.T  # (b, k)
    compute_dtype = torch.promote_types(scores.dtype, MIN_COMPUTE_DTYPE)
    log_probs = torch.log_softmax(scores.to(compute_dtype) / temperature, dim=1)
    targets = sinkhorn_knopp(scores, sinkhorn_iters, epsilon, distributed).to(compute_dtype)
    loss = -(targets * log_probs).sum(dim=1).mean()
    probs = log_probs.exp()
    source = targets if assign_from == "targets" else probs
    assignments = source.detach().argmax(dim=1)
    return ClusteringOutput(loss, assignments, mu, probs, targets)


class OnlineIntentClustering(nn.Module):
    r"""Online intent clustering on trainable prototypes (S4Rec Sec. 4.1, Eq. 7-11; SwAV).

    Holds $k$ trainable prototypes $\mu \in \mathbb{R}^{k \times d}$ (intents) and,
    for a batch of sequence representations $z$, computes the soft assignments
    $p_u$ (Eq. 7), the equipartitioned Sinkhorn targets $q_u$ (Eq. 9-11) and the
    clustering loss (Eq. 8)

    $$
    \mathcal{L}_{Clust} = \frac{1}{b} \sum_u -\sum_k q_u^k \log p_u^k, \qquad
    p_u^k = \operatorname{softmax}_k(\hat z_u \hat\mu_k^\top / \tau_1)
    $$

    where $\hat\mu$ are the L2-normalised prototype rows (as in SwAV) and
    $\hat z_u$ the normalised representations when ``normalize=True``. The loss trains
    both $z$ (the encoder) and $\mu$; $q$ is a constant. See
    ``online_clustering`` for the function holding the math.

    ``freeze_prototypes_steps`` (SwAV's ``freeze_prototypes_niters``): while the step counter
    ``step`` (a buffer, saved in the state dict, incremented by every forward in training
    mode) is below it, the prototypes are used detached and get no gradient from any loss,
    including downstream uses of ``output.prototypes``.

    Args:
        hidden_size: dimension ``d`` of the representations. Must be >= 1.
        num_prototypes: number of intents ``k``. Must be >= 1. Batches smaller than ``k``
            trigger Sinkhorn's equipartition warning.
        temperature: $\tau_1$ of Eq. 7. Must be > 0.
        epsilon: Sinkhorn entropy weight $\epsilon$ of Eq. 9. Must be > 0.
        sinkhorn_iters: Sinkhorn normalisation rounds. Must be >= 1.
        normalize: L2-normalise the representations before scoring.
        freeze_prototypes_steps: number of first training steps with frozen prototypes, >= 0.
        assign_from: hard assignments $h(u)$ from ``"targets"`` (argmax of q) or
            ``"probs"`` (argmax of p).
        distributed: equipartition over the global batch under ``torch.distributed``.

    Shape:
        - z: $(b, d)$, floating.
        - output: ``ClusteringOutput`` with loss $()$, assignments $(b,)$,
          prototypes $(k, d)$, probs and targets $(b, k)$.

    Raises:
        TypeError: if an integer argument is not an int, or ``z`` is not a floating tensor.
        ValueError: if a hyper-parameter is out of range, or ``z`` is not $(b, d)$,
            is empty or holds a non-finite value.

    Examples:
        >>> import torch
        >>> from s4rec_components import OnlineIntentClustering
        >>> _ = torch.manual_seed(0)
        >>> clustering = OnlineIntentClustering(hidden_size=8, num_prototypes=4)
        >>> out = clustering(torch.randn(16, 8, requires_grad=True))
        >>> out.loss.backward()
        >>> out.assignments.shape, out.prototypes.shape, clustering.prototypes.grad is not None
        (torch.Size([16]), torch.Size([4, 8]), True)
        >>> int(clustering.step)
        1
    """

    step: Tensor

    def __init__(
        self,
        hidden_size: int,
        num_prototypes: int = 128,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iters: int = 3,
        normalize: bool = True,
        freeze_prototypes_steps: int = 0,
        assign_from: Literal["targets", "probs"] = "targets",
        distributed: bool = False,
    ) -> None:
        super().__init__()
        check_int(hidden_size, "hidden_size", 1)
        check_int(num_prototypes, "num_prototypes", 1)
        _check_hyperparameters(temperature, epsilon, sinkhorn_iters)
        check_int(freeze_prototypes_steps, "freeze_prototypes_steps", 0)
        check_choice(assign_from, ASSIGN_SOURCES, "assign_from")
        self.hidden_size = hidden_size
        self.num_prototypes = num_prototypes
        self.temperature = float(temperature)
        self.epsilon = float(epsilon)
        self.sinkhorn_iters = sinkhorn_iters
        self.normalize = bool(normalize)
        self.freeze_prototypes_steps = freeze_prototypes_steps
        self.assign_from = assign_from
        self.distributed = bool(distributed)
        initial = F.normalize(torch.randn(num_prototypes, hidden_size), dim=1)
        self.prototypes = nn.Parameter(initial)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    @property
    def frozen(self) -> bool:
        """Whether the prototypes are currently frozen (``step < freeze_prototypes_steps``)."""
        return int(self.step) < self.freeze_prototypes_steps

    def forward(self, z: Tensor) -> ClusteringOutput:
        """Cluster a batch of representations; see the class docstring."""
        check_tensor(z, "z")
        check_ndim(z, 2, "z", "(b, d)")
        if z.shape[1] != self.hidden_size:
            raise ValueError(
                f"z must have shape (b, d) with d = hidden_size = {self.hidden_size}, got shape "
                f"{tuple(z.shape)}"
            )
        prototypes = self.prototypes.detach() if self.frozen else self.prototypes
        output = online_clustering(
            z,
            prototypes,
            temperature=self.temperature,
            epsilon=self.epsilon,
            sinkhorn_iters=self.sinkhorn_iters,
            normalize=self.normalize,
            assign_from=self.assign_from,
            distributed=self.distributed,
        )
        if self.training:
            self.step += 1
        return output

    def extra_repr(self) -> str:
        return (
            f"hidden_size={self.hidden_size}, num_prototypes={self.num_prototypes}, "
            f"temperature={self.temperature}, epsilon={self.epsilon}, "
            f"sinkhorn_iters={self.sinkhorn_iters}, normalize={self.normalize}, "
            f"freeze_prototypes_steps={self.freeze_prototypes_steps}, "
            f"assign_from={self.assign_from!r}"
        )
