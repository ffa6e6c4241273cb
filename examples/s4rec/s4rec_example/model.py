r"""S4Rec (and the baselines it is compared with) composed from ``s4rec_components``.

Joint loss (S4Rec Eq. 18, plus ICLRec's k-means intent term for the ``iclrec`` preset):

$$
\mathcal{L} = \mathcal{L}_{SR} + \beta_1 \mathcal{L}_{SCL} + w_{int} \mathcal{L}_{Intent}
    + \alpha \mathcal{L}_{Clust} + \beta_2 \mathcal{L}_{CKD} + \lambda \mathcal{L}_{Adv}
$$

One step encodes the original sequences and, when a self-supervised term needs them, their two
augmented views in one ``(3b, l)`` batch, then

* ``sr``: next-item loss at every real position of the original sequence: BCE with one sampled
  negative per position (ICLRec), or the full softmax cross-entropy (``ce``), both the library's
  row-weighted losses (``sampled_bce``, the fused ``linear_cross_entropy``), so that a step
  reads nothing from a GPU;
* ``scl`` (beta1): NT-Xent between the two views (ICLRec's instance NCE; S4Rec Eq. 13), with
  the non-assigned prototypes as extra negatives when ``cl_intent_negatives`` (Eq. 14);
* ``intent`` (intent_weight): ICLRec's intent NCE: each view against the L2-normalised k-means
  centroid of its sequence's intent, averaged over the two views;
* ``clust`` (alpha): online Sinkhorn clustering of the original sequence's ``z_u`` (Eq. 7-11);
* ``ckd`` (beta2): KL from the assigned prototype to each view, summed over the views (Eq. 16);
* ``adv`` (lam): head/tail classifier behind gradient reversal on ``z_u`` (Eq. 17).

Terms whose weight is 0 are not computed (``sasrec`` encodes only the original batch).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s4rec_components import (
    PADDING_ID,
    HeadTailAdversary,
    IntentInfoNCE,
    KMeans,
    OnlineIntentClustering,
    Pooling,
    PrototypeDistillation,
    SASRecEncoder,
    SequenceAugmenter,
    linear_cross_entropy,
    sampled_bce,
)

from .config import TrainConfig

__all__ = ["Intents", "S4RecModel", "build_model"]


def _world_size() -> int:
    """The number of processes of the default group (1 without one)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return int(dist.get_world_size())
    return 1


class Intents(NamedTuple):
    """ICLRec's intents of one epoch: a fitted k-means and its L2-normalised centroids.

    Attributes:
        kmeans: the fitted k-means; ``assign(x) -> (b,) long`` gives the nearest raw centroid.
        centroids: ``(k, d)`` L2-normalised centroids, the positives of the intent NCE.
    """

    kmeans: KMeans
    centroids: Tensor


class S4RecModel(nn.Module):
    """An encoder plus the self-supervised heads its weights switch on; see the module docstring.

    Every setting is an explicit argument; :func:`build_model` fills them from a
    :class:`~s4rec_example.config.TrainConfig`.

    Args:
        encoder: the sequence encoder (item table of ``n + 2`` rows).
        loss: ``"bce"`` (one sampled negative per position) or ``"ce"`` (full softmax).
        augmenter: makes the two views; required when a view-based term has a weight > 0.
        contrastive: the NT-Xent module shared by ``scl`` and ``intent`` (temperature, similarity).
        clustering: the online clustering head (prototypes); required by Eq. 14, 16 and ``alpha``.
        distillation: the prototype distillation; required when ``beta2 > 0``.
        adversary: the head/tail classifier with gradient reversal; required when ``lam > 0``.
        beta1, intent_weight, alpha, beta2, lam: the loss weights.
        view_pooling: representation of a view for ``scl`` and ``ckd``.
        cl_scale: factor on ``scl`` (1 = NT-Xent mean over 2b rows; 2 = both directions summed).
        cl_intent_negatives: add the non-assigned prototypes as negatives (Eq. 14).
        cl_intent_negative_scale: factor on those prototypes (unit vectors) in the contrastive term
            only, so that under the dot product they can weigh as much as the in-batch views.
        intent_pooling: representation for the k-means intents and the intent NCE.
        intent_denoise: rows of the same intent are not each other's negatives (ICLRec ``--de_noise``).
        separate_intent_views: encode the views again for the intent term (as ICLRec's Hybrid mode).
        z_pooling: representation ``z_u`` of the original sequence (clustering, adversary).
        normalize_z: L2-normalise the distillation students and the adversary input.
        ce_rows: which rows the ``ce`` loss scores: ``"real"`` (the real positions, picked by a
            boolean index that reads the device), ``"all"`` (every position, weighted; reads
            nothing: sync-free on a GPU) or ``"auto"`` (real on the CPU, all elsewhere).
        distributed: under ``torch.distributed`` (W > 1 processes, each wrapped in
            ``DistributedDataParallel``), scale each rank's SR loss so that DDP's average of the
            rank gradients is the gradient of the mean over the real positions of ALL ranks; see
            :meth:`sr_loss`. Without a process group of more than one process it changes nothing.
    """

    def __init__(
        self,
        encoder: SASRecEncoder,
        *,
        loss: Literal["bce", "ce"] = "bce",
        augmenter: SequenceAugmenter | None = None,
        contrastive: IntentInfoNCE | None = None,
        clustering: OnlineIntentClustering | None = None,
        distillation: PrototypeDistillation | None = None,
        adversary: HeadTailAdversary | None = None,
        beta1: float = 0.0,
        intent_weight: float = 0.0,
        alpha: float = 0.0,
        beta2: float = 0.0,
        lam: float = 0.0,
        view_pooling: Pooling = "flatten",
        cl_scale: float = 1.0,
        cl_intent_negatives: bool = False,
        cl_intent_negative_scale: float = 1.0,
        intent_pooling: Pooling = "mean_all",
        intent_denoise: bool = False,
        separate_intent_views: bool = True,
        z_pooling: Pooling = "mean",
        normalize_z: bool = True,
        ce_rows: Literal["auto", "real", "all"] = "auto",
        distributed: bool = False,
    ) -> None:
        super().__init__()
        if loss not in ("bce", "ce"):
            raise ValueError(f"loss must be 'bce' or 'ce', got {loss!r}")
        if ce_rows not in ("auto", "real", "all"):
            raise ValueError(f"ce_rows must be 'auto', 'real' or 'all', got {ce_rows!r}")
        needs = {
            "augmenter": (beta1 > 0 or intent_weight > 0 or beta2 > 0, augmenter),
            "contrastive": (beta1 > 0 or intent_weight > 0, contrastive),
            "clustering": (alpha > 0 or beta2 > 0 or (beta1 > 0 and cl_intent_negatives), clustering),
            "distillation": (beta2 > 0, distillation),
            "adversary": (lam > 0, adversary),
        }
        for name, (needed, module) in needs.items():
            if needed and module is None:
                raise ValueError(f"{name} is required by the loss weights given")
        if (beta2 > 0 or (beta1 > 0 and cl_intent_negatives)) and view_pooling == "flatten":
            raise ValueError("prototype terms need d-dimensional views: view_pooling must not be 'flatten'")
        self.encoder = encoder
        self.loss = loss
        self.augmenter = augmenter
        self.contrastive = contrastive
        self.clustering = clustering
        self.distillation = distillation
        self.adversary = adversary
        self.beta1, self.intent_weight, self.alpha, self.beta2, self.lam = beta1, intent_weight, alpha, beta2, lam
        self.view_pooling = view_pooling
        self.cl_scale = cl_scale
        self.cl_intent_negatives = cl_intent_negatives
        self.cl_intent_negative_scale = cl_intent_negative_scale
        self.intent_pooling = intent_pooling
        self.intent_denoise = intent_denoise
        self.separate_intent_views = separate_intent_views
        self.z_pooling = z_pooling
        self.normalize_z = normalize_z
        self.ce_rows = ce_rows
        self.distributed = distributed

    # ------------------------------------------------------------------ properties
    @property
    def num_items(self) -> int:
        return self.encoder.num_items

    @property
    def uses_views(self) -> bool:
        return self.beta1 > 0 or self.intent_weight > 0 or self.beta2 > 0

    @property
    def uses_intents(self) -> bool:
        """Whether the step needs this epoch's k-means :class:`Intents`."""
        return self.intent_weight > 0

    # ------------------------------------------------------------------ losses
    def sr_loss(self, hidden: Tensor, targets: Tensor, negatives: Tensor | None) -> Tensor:
        r"""Next-item loss averaged over the real positions (``targets != 0``).

        In one process: the mean over the $m$ real positions of the batch. With
        ``distributed=True`` and W > 1 processes, rank r holding $m_r$ real positions returns

        $$
        \mathcal{L}_r = \frac{W}{\sum_s m_s} \sum_{i \in r} \ell_i
                      = \bar\ell_r \cdot \frac{W\, m_r}{\sum_s m_s},
        $$

        so that DDP's average $\frac1W \sum_r \nabla \mathcal{L}_r$ is the gradient of the mean
        over all $\sum_s m_s$ positions, as one process on the whole batch (the plain rank means
        would weigh the positions of a rank with fewer of them more). The global count is one
        ``all_reduce`` on the device (nothing read to the host); the mean over ranks of the
        returned values is the global mean.

        Args:
            hidden: ``(b, l, d)`` encoder output of the original sequences.
            targets: ``(b, l)`` next items, 0 where there is none.
            negatives: ``(b, l)`` one sampled negative per position (``bce`` only).
        """
        real = targets != PADDING_ID
        mean = self._sr_mean(hidden, targets, negatives, real)
        world = _world_size() if self.distributed else 1
        if world == 1:
            return mean
        import torch.distributed as dist

        local = real.sum().to(mean.dtype)
        total = local.clone()
        dist.all_reduce(total)  # a constant: the count carries no gradient
        return mean * (world * local / total.clamp(min=1))

    def _sr_mean(self, hidden: Tensor, targets: Tensor, negatives: Tensor | None, real: Tensor) -> Tensor:
        """This process's SR loss, the mean over its real positions (0 when it has none)."""
        if self.loss == "ce":
            return self._ce_loss(hidden, targets, real)
        if negatives is None:
            raise ValueError("the bce loss needs one sampled negative per position")
        return sampled_bce(
            hidden.reshape(-1, hidden.shape[-1]),
            self._item_table(hidden.device),
            targets.reshape(-1),
            negatives.reshape(-1),
            weights=real.reshape(-1).to(hidden.dtype),
        )

    def _ce_loss(self, hidden: Tensor, targets: Tensor, real: Tensor) -> Tensor:
        """Softmax cross-entropy over items 1..n, averaged over the real positions.

        ``ce_rows="real"`` scores the m real positions only (a boolean index: a host read, free
        on the CPU, a sync on a GPU); ``"all"`` scores all b*l rows and weighs each by whether it
        is real (nothing read from the device; the padding rows cost compute: about 8x the rows
        on Beauty). ``"auto"`` takes ``"real"`` on the CPU and ``"all"`` elsewhere.
        """
        rows = self.ce_rows if self.ce_rows != "auto" else ("real" if hidden.device.type == "cpu" else "all")
        # ids 0..n: the padding column 0 is left out of the softmax, the mask id n + 1 is not scored;
        # the library's fused loss never builds the whole (rows, n) logits (its chunk_size=None
        # picks cache-sized chunks on the CPU, large ones on a GPU)
        table = self._item_table(hidden.device)
        if rows == "real":
            return linear_cross_entropy(hidden[real], table, targets[real], chunk_size=None)
        weights = real.reshape(-1).to(hidden.dtype)
        return linear_cross_entropy(
            hidden.reshape(-1, hidden.shape[-1]), table, targets.reshape(-1), weights=weights, chunk_size=None
        )

    def _item_table(self, device: torch.device) -> Tensor:
        """The output item vectors of ids 0..n, ``(n + 1, d)`` (gradients reach the tied table)."""
        return self.encoder.embed_items(torch.arange(self.num_items + 1, device=device))

    def _pool(self, ids: Tensor, hidden: Tensor, pooling: Pooling) -> Tensor:
        return self.encoder.represent(ids, pooling=pooling, hidden=hidden)

    def make_views(self, inputs: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """The two augmented ``(b, l)`` views of ``inputs`` that :meth:`forward` contrasts."""
        if self.augmenter is None:
            raise ValueError("this model has no augmenter: its loss weights use no views")
        return self.augmenter(inputs, generator=generator), self.augmenter(inputs, generator=generator)

    def forward(
        self,
        inputs: Tensor,
        targets: Tensor,
        negatives: Tensor | None = None,
        head_labels: Tensor | None = None,
        intents: Intents | None = None,
        generator: torch.Generator | None = None,
        views: tuple[Tensor, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """One batch's loss terms.

        Args:
            inputs: ``(b, l)`` left-padded training inputs.
            targets: ``(b, l)`` next items (0 where there is none).
            negatives: ``(b, l)`` sampled negatives (``bce``).
            head_labels: ``(b,)`` long, 1 for head users (adversary).
            intents: this epoch's k-means intents (``intent_weight > 0``).
            generator: random source of the augmentations.
            views: the two ``(b, l)`` augmented views, drawn beforehand by :meth:`make_views`;
                ``None`` draws them here from ``generator``. Drawing them outside lets
                ``torch.compile`` trace the rest of the step as one graph (a random draw from an
                explicit ``torch.Generator`` breaks the graph); the same generator state gives
                the same views either way.

        Returns:
            ``"loss"`` (the weighted sum) and every unweighted term with a non-zero weight:
            ``"sr"``, ``"scl"``, ``"intent"``, ``"clust"``, ``"ckd"``, ``"adv"``.
        """
        b = inputs.shape[0]
        batch = inputs
        if not self.uses_views:
            if views is not None:
                raise ValueError("views were given, but this model's loss weights use no views")
        elif views is None:
            views = self.make_views(inputs, generator)
        elif len(views) != 2 or any(v.shape != inputs.shape for v in views):
            raise ValueError(
                f"views must be two tensors of the inputs' shape {tuple(inputs.shape)}, "
                f"got shapes {[tuple(v.shape) for v in views]}"
            )
        if views is not None:
            batch = torch.cat([inputs, *views])
        hidden = self.encoder(batch)  # (b or 3b, l, d)
        # split, not three slices: each slice's backward would allocate a zero (3b, l, d) tensor
        parts: tuple[Tensor, ...] = hidden.split(b) if views is not None else (hidden,)
        h_orig = parts[0]
        terms: dict[str, Tensor] = {"sr": self.sr_loss(h_orig, targets, negatives)}
        total = terms["sr"]

        prototypes = assignments = z = None
        if self.clustering is not None or self.adversary is not None:
            z = self._pool(inputs, h_orig, self.z_pooling)
        if self.clustering is not None:
            out = self.clustering(z)
            prototypes, assignments = out.prototypes, out.assignments
            if self.alpha > 0:  # the sr+csd rows use the prototypes without training them by L_Clust
                terms["clust"] = out.loss
                total = total + self.alpha * out.loss

        if views is not None:
            v1, v2 = views
            hv1, hv2 = parts[1], parts[2]
            if self.beta1 > 0 or self.beta2 > 0:
                z1, z2 = self._pool(v1, hv1, self.view_pooling), self._pool(v2, hv2, self.view_pooling)
            if self.beta1 > 0:
                assert self.contrastive is not None
                if self.cl_intent_negatives:
                    assert prototypes is not None
                    scl = self.contrastive(z1, z2, prototypes * self.cl_intent_negative_scale, assignments)
                else:
                    scl = self.contrastive(z1, z2)
                terms["scl"] = self.cl_scale * scl
                total = total + self.beta1 * terms["scl"]
            if self.intent_weight > 0 and intents is not None:
                terms["intent"] = self._intent_loss(inputs, h_orig, v1, v2, hv1, hv2, intents)
                total = total + self.intent_weight * terms["intent"]
            if self.beta2 > 0:
                assert self.distillation is not None and prototypes is not None and assignments is not None
                s1, s2 = (F.normalize(z1, dim=-1), F.normalize(z2, dim=-1)) if self.normalize_z else (z1, z2)
                ckd = self.distillation(s1, prototypes, assignments) + self.distillation(s2, prototypes, assignments)
                terms["ckd"] = ckd
                total = total + self.beta2 * ckd
        if self.adversary is not None and self.lam > 0:
            if head_labels is None:
                raise ValueError("the adversary needs head_labels")
            assert z is not None
            adv = self.adversary(F.normalize(z, dim=-1) if self.normalize_z else z, head_labels).loss
            terms["adv"] = adv
            total = total + self.lam * adv
        terms["loss"] = total
        return terms

    def _intent_loss(
        self, inputs: Tensor, h_orig: Tensor, v1: Tensor, v2: Tensor, hv1: Tensor, hv2: Tensor, intents: Intents
    ) -> Tensor:
        """ICLRec's intent NCE (``PCLoss`` of its Hybrid mode), averaged over the two views.

        The intent of a sequence is the nearest k-means centroid of its training-mode
        representation (ICLRec queries the rec task's output, dropout on, detached).
        """
        assert self.contrastive is not None
        query = self._pool(inputs, h_orig, self.intent_pooling).detach()
        intent = intents.kmeans.assign(query)
        positives = intents.centroids[intent]
        if self.separate_intent_views:  # ICLRec's Hybrid mode encodes the views a second time
            hv1, hv2 = self.encoder(torch.cat([v1, v2])).split(v1.shape[0])
        r1, r2 = self._pool(v1, hv1, self.intent_pooling), self._pool(v2, hv2, self.intent_pooling)
        groups = intent if self.intent_denoise else None
        one = self.contrastive(r1, positives, groups=groups)
        two = self.contrastive(r2, positives, groups=groups)
        mean: Tensor = (one + two) / 2
        return mean


def build_model(config: TrainConfig, num_items: int, *, distributed: bool = False) -> S4RecModel:
    """The model of ``config`` for a catalogue of ``num_items`` items (the ONE builder).

    ``distributed=True`` (under ``torchrun``) makes the contrastive negatives and the Sinkhorn
    marginals span every process's batch, and scales the SR loss so that DDP's averaged
    gradient is that of the mean over every process's real positions.
    """
    c = config
    encoder = SASRecEncoder(
        num_items,
        hidden_size=c.hidden_size,
        num_layers=c.num_layers,
        num_heads=c.num_heads,
        max_len=c.max_len,
        dropout=c.dropout,
        compute_path=c.compute_path,
        padding_attention=c.padding_attention,
    )
    augmenter = None
    if c.uses_views:
        augmenter = SequenceAugmenter(
            num_items,
            operations=tuple(c.augment_operations),
            mask_ratio=c.mask_ratio,
            crop_ratio=c.crop_ratio,
            reorder_ratio=c.reorder_ratio,
            insert_ratio=c.insert_ratio,
            mask_id=PADDING_ID if c.mask_id == "padding" else None,
        )
    contrastive = None
    if c.beta1 > 0 or c.intent_weight > 0:
        contrastive = IntentInfoNCE(
            temperature=c.cl_temperature,
            similarity=c.cl_similarity,
            gather_distributed=distributed,
            positive_in_denominator=c.cl_positive_in_denominator,
        )
    clustering = None
    if c.uses_prototypes:
        clustering = OnlineIntentClustering(
            c.hidden_size,
            c.num_prototypes,
            temperature=c.cluster_temperature,
            epsilon=c.sinkhorn_epsilon,
            num_iters=c.sinkhorn_iters,
            freeze_prototypes_steps=c.freeze_prototypes_steps,
            assign_from=c.assign_from,
            distributed=distributed,
        )
    distillation = None
    if c.beta2 > 0:
        distillation = PrototypeDistillation(temperature=c.distill_temperature, detach_teacher=c.detach_teacher)
    adversary = HeadTailAdversary(c.hidden_size, 2, scale=c.grl_scale) if c.lam > 0 else None
    return S4RecModel(
        encoder,
        loss=c.loss,
        augmenter=augmenter,
        contrastive=contrastive,
        clustering=clustering,
        distillation=distillation,
        adversary=adversary,
        beta1=c.beta1,
        intent_weight=c.intent_weight,
        alpha=c.alpha,
        beta2=c.beta2,
        lam=c.lam,
        view_pooling=c.view_pooling,
        cl_scale=2.0 if c.cl_reduction == "two-way" else 1.0,
        cl_intent_negatives=c.cl_intent_negatives,
        cl_intent_negative_scale=c.cl_intent_negative_scale,
        intent_pooling=c.intent_pooling,
        intent_denoise=c.intent_denoise,
        separate_intent_views=c.intent_views == "separate",
        z_pooling=c.z_pooling,
        normalize_z=c.normalize_z,
        distributed=distributed,
    )
