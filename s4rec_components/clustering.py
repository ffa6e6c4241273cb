r"""Online intent clustering with trainable prototypes (S4Rec Sec. 4.1, Eq. 7-11; SwAV).

Sequence representations $z_u$ are scored against $k$ trainable prototypes
(intents) $\mu$; the soft assignment $p_u$ (Eq. 7) is trained by cross-entropy
(Eq. 8) towards an equipartitioned target $q_u$ computed on the batch by Sinkhorn-Knopp
(Eq. 9-11, ``s4rec_components.sinkhorn_knopp``). Clustering happens on the fly, batch by
batch, so the prototypes keep their identity from one step to the next.

Letter legend: ``b`` batch, ``d`` hidden size, ``k`` prototypes.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._validation import (
    check_bool,
    check_choice,
    check_divisor,
    check_float,
    check_int,
    check_ndim,
    check_nonempty,
    check_same_device,
    check_tensor,
    reads_values,
)
from .constants import loss_dtype, normalize_rows, scaled_sum
from .sinkhorn import _global_batch_size, _sinkhorn_impl, _use_distributed

__all__ = ["ClusteringOutput", "OnlineIntentClustering", "online_clustering"]

AssignFrom = Literal["targets", "probs"]
ASSIGN_SOURCES: tuple[str, ...] = ("targets", "probs")
"""Allowed values of ``assign_from``: hard assignments from the Sinkhorn targets or from p."""


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

    Examples:
        >>> import torch
        >>> c = OnlineIntentClustering(8, 3)(torch.randn(5, 8))
        >>> c.assignments.shape, c.prototypes.shape, c.probs.shape, c.targets.requires_grad
        (torch.Size([5]), torch.Size([3, 8]), torch.Size([5, 3]), False)
    """

    loss: Tensor
    assignments: Tensor
    prototypes: Tensor
    probs: Tensor
    targets: Tensor


def _check_hyperparameters(
    temperature: object,
    epsilon: object,
    num_iters: object,
    normalize: object,
    assign_from: object,
    distributed: object,
) -> tuple[float, float, int]:
    """The one check of the hyper-parameters; returns ``(temperature, epsilon, num_iters)``."""
    temperature = check_divisor(temperature, "temperature")
    epsilon = check_divisor(epsilon, "epsilon")
    rounds = check_int(num_iters, "num_iters", 1)
    check_bool(normalize, "normalize")
    check_choice(assign_from, ASSIGN_SOURCES, "assign_from")
    check_bool(distributed, "distributed")
    return temperature, epsilon, rounds


def _check_z(z: Tensor) -> None:
    """Shape / dtype checks of the representations (free)."""
    check_tensor(z, "z")
    check_ndim(z, 2, "z", "(b, d)")
    check_float(z, "z")
    check_nonempty(z, "z")


def _check_finite(x: Tensor, name: str, *others: tuple[Tensor, str]) -> None:
    """A value check, one host read for ``x`` and ``others``: only while validation is on."""
    if not reads_values(x):
        return
    finite = torch.isfinite(x).all()
    for other, _ in others:
        finite = finite & torch.isfinite(other).all()
    if bool(finite):
        return
    for tensor, label in ((x, name), *others):  # the error path may read more
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{label} must be finite, got a tensor holding inf or nan")


def _online_clustering_impl(
    z: Tensor,
    prototypes: Tensor,
    temperature: float,
    epsilon: float,
    num_iters: int,
    normalize: bool,
    assign_from: str,
    distributed: bool,
) -> ClusteringOutput:
    """The kernel of :func:`online_clustering`: trusts its inputs, reads nothing to the host."""
    dtype = loss_dtype(z.dtype, prototypes.dtype)
    mu = normalize_rows(prototypes.to(dtype))
    z = z.to(dtype)
    if normalize:
        z = normalize_rows(z)
    scores = z @ mu.T  # (b, k)
    log_probs = torch.log_softmax(scores / temperature, dim=1)
    use_distributed = _use_distributed(distributed)
    batch = _global_batch_size(z.shape[0], z.device, use_distributed)
    targets = _sinkhorn_impl(scores, num_iters, epsilon, use_distributed, batch).to(dtype)
    per_sample = -(targets * log_probs).sum(dim=1)
    if isinstance(batch, Tensor):
        # mean over ranks of the per-rank losses = the global-batch mean, and DDP's averaged
        # gradients equal the single-process ones even for unequal local batches.
        world = torch.distributed.get_world_size()
        loss = scaled_sum(per_sample, world / batch.to(dtype))
    else:
        loss = scaled_sum(per_sample, 1 / per_sample.shape[0])
    probs = log_probs.exp()
    source = targets if assign_from == "targets" else probs
    assignments = source.detach().argmax(dim=1)
    return ClusteringOutput(loss, assignments, mu.to(prototypes.dtype), probs, targets)


def online_clustering(
    z: Tensor,
    prototypes: Tensor,
    *,
    temperature: float = 0.1,
    epsilon: float = 0.05,
    num_iters: int = 3,
    normalize: bool = True,
    assign_from: AssignFrom = "targets",
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

    The targets $q$ carry no gradient (SwAV). Hard assignments are
    $h(u) = \arg\max_k q_u^k$ (or of $p_u$ with ``assign_from="probs"``).

    Dtypes: ``z`` and ``prototypes`` are cast to
    ``constants.loss_dtype(z.dtype, prototypes.dtype)`` (their promotion, at least ``float32``)
    before anything is computed, so mixed dtypes work and ``float16`` / ``bfloat16`` inputs are
    normalised, scored and soft-maxed in ``float32``. Zero rows are defined: a row of ``z`` or
    ``prototypes`` whose norm is at most $10^{-12}$ (e.g. mean pooling over an all-padding
    row) normalises to zero, scores 0 against every prototype (uniform $p$) and receives a
    zero gradient, finite in every dtype.

    Distributed (``distributed=True`` under an initialised process group): the Sinkhorn
    targets equipartition the global batch (all ranks must call together), and the loss is
    $\frac{W}{b_{global}} \sum_{u \in \text{rank}} \ell_u$, so the mean of the ranks'
    losses is the global-batch mean and DDP's gradient averaging reproduces the
    single-process gradient exactly, also for unequal local batches (for equal ones it is
    the local mean). The prototypes then stay identical across ranks.

    Validation: shapes, dtypes and hyper-parameters are checked on every call; the
    finiteness of ``z`` and ``prototypes`` is a value check (a host read) that runs only
    while value checks are on (``s4rec_components.set_validate_args``).

    Args:
        z: sequence representations.
        prototypes: prototype rows $\mu$ (normalised here; pass them detached to freeze).
        temperature: $\tau_1$ of Eq. 7. Must be >= ``MIN_DIVISOR`` (about 1.2e-38; scores are
            divided by it in float32).
        epsilon: Sinkhorn entropy weight $\epsilon$ of Eq. 9. Must be >= ``MIN_DIVISOR`` (about
            1.2e-38).
        num_iters: Sinkhorn normalisation rounds. Must be an ``int`` >= 1.
        normalize: L2-normalise ``z`` before scoring.
        assign_from: ``"targets"`` (argmax of q) or ``"probs"`` (argmax of p).
        distributed: equipartition over the global batch under ``torch.distributed``.

    Shape:
        - z: $(b, d)$, floating.
        - prototypes: $(k, d)$, floating.
        - output: see ``ClusteringOutput``; ``loss``, ``probs`` and ``targets`` are in
          ``loss_dtype(z.dtype, prototypes.dtype)``, ``prototypes`` in the dtype of the
          ``prototypes`` argument.

    Returns:
        A ``ClusteringOutput``.

    Raises:
        TypeError: if ``z`` or ``prototypes`` is not a floating tensor, a real
            hyper-parameter is not a real number, ``num_iters`` is not an ``int`` or a flag
            is not a ``bool``.
        ValueError: for bad shapes, ``z`` and ``prototypes`` on different devices, empty
            inputs, out-of-range or non-finite hyper-parameters, or (with value checks on)
            non-finite inputs.

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
    temperature, epsilon, num_iters = _check_hyperparameters(
        temperature, epsilon, num_iters, normalize, assign_from, distributed
    )
    _check_z(z)
    check_tensor(prototypes, "prototypes")
    check_ndim(prototypes, 2, "prototypes", "(k, d)")
    check_float(prototypes, "prototypes")
    check_nonempty(prototypes, "prototypes")
    if z.shape[1] != prototypes.shape[1]:
        raise ValueError(
            f"z and prototypes disagree on d: z has shape {tuple(z.shape)}, prototypes has "
            f"shape {tuple(prototypes.shape)}"
        )
    check_same_device((z, "z"), (prototypes, "prototypes"))
    _check_finite(z, "z")
    _check_finite(prototypes, "prototypes")
    return _online_clustering_impl(
        z, prototypes, temperature, epsilon, num_iters, normalize, assign_from, distributed
    )


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
    ``online_clustering`` for the function holding the math, the dtype rule (any floating
    ``z``; computed in the promotion of ``z`` and the prototypes, at least ``float32``), the
    definition for zero rows and the distributed mode. ``assign(z)`` gives the hard
    assignments of ``forward`` without gradient.

    ``freeze_prototypes_steps`` (SwAV's ``freeze_prototypes_niters``): while the step counter
    ``step`` (a buffer, saved in the state dict, incremented by every forward in training
    mode) is below it, the prototypes are used detached and get no gradient from any loss,
    including downstream uses of ``output.prototypes``. ``frozen`` reads a Python mirror of
    ``step`` (resynchronised by ``load_state_dict``), never the device; hyper-parameters are
    checked once here, so ``forward`` reads nothing back to the host while value checks are
    off.

    Args:
        hidden_size: dimension ``d`` of the representations. Must be >= 1.
        num_prototypes: number of intents ``k``. Must be >= 1. Batches smaller than ``k``
            trigger Sinkhorn's equipartition warning.
        temperature: $\tau_1$ of Eq. 7. Must be >= ``MIN_DIVISOR`` (about 1.2e-38; scores are
            divided by it in float32).
        epsilon: Sinkhorn entropy weight $\epsilon$ of Eq. 9. Must be >= ``MIN_DIVISOR`` (about
            1.2e-38).
        num_iters: Sinkhorn normalisation rounds. Must be an ``int`` >= 1.
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
        TypeError: if a count is not an ``int`` (a ``bool`` is refused), a real
            hyper-parameter is not a real number, a flag is not a ``bool``, or ``z`` is not a
            floating tensor.
        ValueError: if a hyper-parameter is out of range or not finite, or ``z`` is not
            $(b, d)$, is empty, is not on the prototypes' device or (with value checks on)
            holds a non-finite value, or (with value checks on) the prototypes hold one (a
            diverged run, an edited checkpoint).

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
        *,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        num_iters: int = 3,
        normalize: bool = True,
        freeze_prototypes_steps: int = 0,
        assign_from: AssignFrom = "targets",
        distributed: bool = False,
    ) -> None:
        super().__init__()
        hidden_size = check_int(hidden_size, "hidden_size", 1)
        num_prototypes = check_int(num_prototypes, "num_prototypes", 1)
        self.temperature, self.epsilon, self.num_iters = _check_hyperparameters(
            temperature, epsilon, num_iters, normalize, assign_from, distributed
        )
        freeze_prototypes_steps = check_int(freeze_prototypes_steps, "freeze_prototypes_steps", 0)
        self.hidden_size = hidden_size
        self.num_prototypes = num_prototypes
        self.normalize = normalize
        self.freeze_prototypes_steps = freeze_prototypes_steps
        self.assign_from: AssignFrom = assign_from
        self.distributed = distributed
        initial = F.normalize(torch.randn(num_prototypes, hidden_size), dim=1)
        self.prototypes = nn.Parameter(initial)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        # A host-side mirror of ``step``, so that ``frozen`` never reads the device. It saturates
        # at ``freeze_prototypes_steps``: past the freeze it no longer changes, so torch.compile,
        # which guards on the integer attributes a module reads, does not recompile every step.
        self._steps_taken = 0

    @property
    def frozen(self) -> bool:
        """Whether the prototypes are currently frozen (``step < freeze_prototypes_steps``).

        Read from a Python mirror of the ``step`` buffer (kept in sync by ``forward`` and
        ``load_state_dict``, and saturating at ``freeze_prototypes_steps``), never from the
        device. Under ``torch.compile`` the steps of a freeze window each recompile the
        forward (the mirror is a guarded integer); after the window, and with the default
        ``freeze_prototypes_steps=0``, nothing recompiles.
        """
        return self._steps_taken < self.freeze_prototypes_steps

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args)
        # Loading is not on the training path: one host read to resync the mirror.
        self._steps_taken = min(int(self.step.item()), self.freeze_prototypes_steps)

    def _check_input(self, z: Tensor) -> None:
        _check_z(z)
        if z.shape[1] != self.hidden_size:
            raise ValueError(
                f"z must have shape (b, d) with d = hidden_size = {self.hidden_size}, got shape "
                f"{tuple(z.shape)}"
            )
        check_same_device((z, "z"), (self.prototypes, "the prototypes (a parameter of this module)"))
        # and the prototypes: after a diverged run or from an edited checkpoint, every row would
        # silently go to prototype 0
        _check_finite(z, "z", (self.prototypes.detach(), "the prototypes (a parameter of this module)"))

    def _cluster(self, z: Tensor, prototypes: Tensor) -> ClusteringOutput:
        return _online_clustering_impl(
            z,
            prototypes,
            self.temperature,
            self.epsilon,
            self.num_iters,
            self.normalize,
            self.assign_from,
            self.distributed,
        )

    def forward(self, z: Tensor) -> ClusteringOutput:
        """Cluster a batch of representations; see the class docstring."""
        self._check_input(z)
        prototypes = self.prototypes.detach() if self.frozen else self.prototypes
        output = self._cluster(z, prototypes)
        if self.training:
            with torch.no_grad():
                self.step += 1
            if self._steps_taken < self.freeze_prototypes_steps:
                self._steps_taken += 1
        return output

    @torch.no_grad()
    def assign(self, z: Tensor) -> Tensor:
        """The hard intents ``forward`` gives for the batch ``z``, without gradient or step.

        With ``assign_from="targets"`` the assignments come from the Sinkhorn targets, which
        depend on the whole batch (and, with ``distributed=True``, on every rank's batch, so
        every rank must call it), exactly as in ``forward``.

        Args:
            z: the representations, $(b, d)$, any floating dtype.

        Returns:
            $(b,)$ ``torch.long`` in $[0, k)$.

        Raises:
            TypeError: if ``z`` is not a floating tensor.
            ValueError: if ``z`` is not $(b, d)$, is empty or (with value checks on) not
                finite, or (with value checks on) the prototypes are not finite.

        Examples:
            >>> import torch
            >>> from s4rec_components import OnlineIntentClustering
            >>> _ = torch.manual_seed(0)
            >>> clustering = OnlineIntentClustering(8, 4)
            >>> z = torch.randn(16, 8)
            >>> h = clustering.assign(z)
            >>> h.shape, h.dtype, bool(torch.equal(h, clustering(z).assignments))
            (torch.Size([16]), torch.int64, True)
        """
        self._check_input(z)
        return self._cluster(z, self.prototypes).assignments

    def extra_repr(self) -> str:
        return (
            f"hidden_size={self.hidden_size}, num_prototypes={self.num_prototypes}, "
            f"temperature={self.temperature}, epsilon={self.epsilon}, "
            f"num_iters={self.num_iters}, normalize={self.normalize}, "
            f"freeze_prototypes_steps={self.freeze_prototypes_steps}, "
            f"assign_from={self.assign_from!r}, distributed={self.distributed}"
        )
