"""S4Rec composed from ``s4rec_components`` (paper Section 4, joint loss Eq. 18).

$$
\\mathcal{L} = \\mathcal{L}_{SR} + \\alpha \\mathcal{L}_{Clust} + \\beta_1 \\mathcal{L}_{SCL}
    + \\beta_2 \\mathcal{L}_{CKD} + \\lambda \\mathcal{L}_{Adv}
$$

One training step sends the original sequences and their two augmented views through the
encoder as a single ``(3b, l)`` batch, then:

* ``L_SR``: next-item loss at every real position of the original sequence, either the binary
  cross-entropy with one sampled negative of the public ICLRec code (``bce``) or the full
  softmax cross-entropy over all items (``ce``);
* ``L_Clust``: online clustering of the original sequence's representation ``z_u``
  (``OnlineIntentClustering``, Eq. 7-11);
* ``L_SCL``: InfoNCE between the two views, with the non-assigned prototypes as extra negatives
  for the intent-aware presets (``IntentInfoNCE``, Eq. 13-14);
* ``L_CKD``: KL from the assigned prototype to each view (Eq. 15-16, summed over the two views);
* ``L_Adv``: head/tail classifier behind a gradient reversal layer on ``z_u`` (Eq. 17).

Terms whose weight is 0 are not computed at all (``sasrec`` encodes only the original batch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s4rec_components import (
    HeadTailAdversary,
    IntentInfoNCE,
    OnlineIntentClustering,
    PrototypeDistillation,
    SASRecEncoder,
    SequenceAugmenter,
)

from config import TrainConfig

NEGATIVE_RESAMPLE_ROUNDS = 8  # redraws of negatives that hit the user's own items


def sample_negatives(
    shape: tuple[int, int], user_items: Tensor, num_items: int, generator: torch.Generator | None
) -> Tensor:
    """Uniform negatives in ``1..num_items`` avoiding each user's items, drawn on the device.

    Args:
        shape: ``(b, l)``, one negative per position.
        user_items: ``(b, h)`` every item of each user (0 = padding), as the public code's
            ``neg_sample(set(items))``.
        num_items: largest item id; padding 0 and the mask id ``num_items + 1`` are never drawn.
        generator: random source (on the same device as ``user_items``).

    Returns:
        ``(b, l)`` long. After ``NEGATIVE_RESAMPLE_ROUNDS`` redraws a collision may remain
        (probability ~ (h / n) ** 9, negligible for real data).
    """
    device = user_items.device
    owned = user_items.sort(dim=-1).values  # (b, h), padding zeros first; binary search below

    def owned_by_user(candidates: Tensor) -> Tensor:
        pos = torch.searchsorted(owned, candidates).clamp(max=owned.shape[-1] - 1)
        return owned.gather(-1, pos) == candidates

    neg = torch.randint(1, num_items + 1, shape, device=device, generator=generator)
    for _ in range(NEGATIVE_RESAMPLE_ROUNDS):
        hit = owned_by_user(neg)  # (b, l)
        redraw = torch.randint(1, num_items + 1, shape, device=device, generator=generator)
        neg = torch.where(hit, redraw, neg)
    return neg


class S4Rec(nn.Module):
    """The reference S4Rec model: an encoder plus the optional heads of its preset."""

    def __init__(self, num_items: int, config: TrainConfig) -> None:
        super().__init__()
        self.config = config
        self.num_items = num_items
        self.encoder = SASRecEncoder(
            num_items,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            num_heads=config.num_heads,
            max_len=config.max_len,
            dropout=config.dropout,
        )
        c = config
        use_views = c.beta1 > 0 or c.beta2 > 0
        self.use_clusters = c.alpha > 0 or c.beta2 > 0 or (c.beta1 > 0 and c.intent_negatives)
        self.use_adversary = c.lam > 0
        self.augmenter = SequenceAugmenter(num_items) if use_views else None
        self.clustering = (
            OnlineIntentClustering(
                c.hidden_size,
                num_prototypes=c.num_prototypes,
                temperature=c.cluster_temperature,
                epsilon=c.sinkhorn_epsilon,
                sinkhorn_iters=c.sinkhorn_iters,
                freeze_prototypes_steps=c.freeze_prototypes_steps,
            )
            if self.use_clusters
            else None
        )
        self.contrastive = (
            IntentInfoNCE(temperature=c.cl_temperature, similarity="cosine" if c.normalize_z else "dot")
            if c.beta1 > 0
            else None
        )
        self.distillation = (
            PrototypeDistillation(temperature=c.distill_temperature) if c.beta2 > 0 else None
        )
        self.adversary = (
            HeadTailAdversary(c.hidden_size, num_classes=2, scale=c.grl_scale) if self.use_adversary else None
        )

    # ------------------------------------------------------------------ losses
    def sr_loss(self, hidden: Tensor, targets: Tensor, negatives: Tensor | None) -> Tensor:
        """Next-item loss at every real position; ``hidden (b, l, d)``, ``targets (b, l)``."""
        real = targets > 0
        h = hidden[real]  # (m, d)
        pos = targets[real]
        if h.shape[0] == 0:
            return hidden.sum() * 0.0
        table = self.encoder.item_embeddings.weight
        if self.config.loss == "ce":
            logits = self.encoder.score_items(h)  # (m, n + 1)
            logits[:, 0] = float("-inf")
            return F.cross_entropy(logits.float(), pos)
        if negatives is None:
            raise ValueError("the bce loss needs one sampled negative per position")
        pos_logit = (h * table[pos]).sum(-1)
        neg_logit = (h * table[negatives[real]]).sum(-1)
        return -(F.logsigmoid(pos_logit) + F.logsigmoid(-neg_logit)).mean()

    def forward(
        self,
        inputs: Tensor,
        targets: Tensor,
        user_items: Tensor,
        head_labels: Tensor,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """One batch's weighted loss terms.

        Args:
            inputs: ``(b, l)`` left-padded training inputs.
            targets: ``(b, l)`` next items (0 where there is none).
            user_items: ``(b, h)`` all of each user's items (negatives avoid them).
            head_labels: ``(b,)`` long, 1 for head (long-history) users.
            generator: random source for negatives and augmentations.

        Returns:
            dict with ``"loss"`` (the weighted sum) and each unweighted term that enters it with a
            non-zero weight: ``"sr"``, ``"clust"``, ``"scl"``, ``"ckd"``, ``"adv"``.
        """
        c = self.config
        b = inputs.shape[0]
        batch = inputs
        if self.augmenter is not None:
            view1 = self.augmenter(inputs, generator=generator)
            view2 = self.augmenter(inputs, generator=generator)
            batch = torch.cat([inputs, view1, view2])
        hidden = self.encoder(batch)  # (b or 3b, l, d)
        h_orig = hidden[:b]
        negatives = None
        if c.loss == "bce":
            negatives = sample_negatives(tuple(inputs.shape), user_items, self.num_items, generator)
        terms: dict[str, Tensor] = {"sr": self.sr_loss(h_orig, targets, negatives)}
        total = terms["sr"]

        need_z = self.use_clusters or self.use_adversary
        z = self.encoder.represent(inputs, pooling=c.pooling, hidden=h_orig) if need_z else None
        prototypes = assignments = None
        if self.clustering is not None:
            out = self.clustering(z)
            prototypes, assignments = out.prototypes, out.assignments
            if c.alpha > 0:  # the sr+csd rows use the prototypes without training them by L_Clust
                terms["clust"] = out.loss
                total = total + c.alpha * out.loss
        if self.augmenter is not None:
            z1 = self.encoder.represent(batch[b : 2 * b], pooling=c.pooling, hidden=hidden[b : 2 * b])
            z2 = self.encoder.represent(batch[2 * b :], pooling=c.pooling, hidden=hidden[2 * b :])
            if self.contrastive is not None:
                if c.intent_negatives:
                    scl = self.contrastive(z1, z2, prototypes, assignments)
                else:
                    scl = self.contrastive(z1, z2)
                terms["scl"] = scl
                total = total + c.beta1 * scl
            if self.distillation is not None:
                s1, s2 = (F.normalize(z1, dim=-1), F.normalize(z2, dim=-1)) if c.normalize_z else (z1, z2)
                ckd = self.distillation(s1, prototypes, assignments) + self.distillation(
                    s2, prototypes, assignments
                )
                terms["ckd"] = ckd
                total = total + c.beta2 * ckd
        if self.adversary is not None:
            adv = self.adversary(F.normalize(z, dim=-1) if c.normalize_z else z, head_labels).loss
            terms["adv"] = adv
            total = total + c.lam * adv
        terms["loss"] = total
        return terms


def save_checkpoint(path: str | Path, model: S4Rec, extra: dict[str, Any] | None = None) -> None:
    """Write ``{"config", "num_items", "model", ...extra}`` with ``torch.save``."""
    payload = {"config": model.config.to_dict(), "num_items": model.num_items, "model": model.state_dict()}
    payload.update(extra or {})
    torch.save(payload, path)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> S4Rec:
    """Rebuild an ``S4Rec`` from a checkpoint written by ``save_checkpoint`` (eval mode)."""
    payload = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(payload, dict) or "config" not in payload or "model" not in payload:
        raise ValueError(
            f"{path} is not an S4Rec example checkpoint (expected keys 'config' and 'model'); "
            "for a checkpoint of the public ICLRec code use --iclrec-checkpoint"
        )
    model = S4Rec(int(payload["num_items"]), TrainConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["model"])
    return model.to(device).eval()
