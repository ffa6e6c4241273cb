"""Every setting of a run, and the presets that fill them in.

Configuration lives here, in the example, never in the library: the library's constructors
take explicit keyword arguments and :func:`s4rec_example.model.build_model` unpacks this
dataclass into them.

The base of every preset is the public ICLRec code's Beauty recipe (``src/scripts/run_beauty.sh``
of salesforce/ICLRec): a 1-layer, 2-head SASRec with d = 64 and dropout 0.5, batch 256, Adam
1e-3, up to 300 epochs with patience 40 on valid NDCG@20, BCE with one negative per position,
and views made by ONE of crop (0.2) / mask (0.7, written as id 0) / reorder (0.2). The s4rec
family (the last five presets) trains at the S4Rec paper's batch of 512 (its Section 5.1.4); the
epoch cap follows the batch, so that every preset may take as many Adam steps as ICLRec's 300
epochs at 256 (600 epochs at 512).

Presets (weights of Eq. 18 of the S4Rec paper plus ICLRec's k-means intent term):

=================  =====  ======  ======  =====  =====  ===========================================
preset             beta1  intent  alpha   beta2  lam    view representation / notes
=================  =====  ======  ======  =====  =====  ===========================================
``sasrec``         -      -       -       -      -      SR only (ICLRec's SASRec)
``cl4srec``        0.1    -       -       -      -      ICLRec's CL4SRec ("InstanceCL"): flatten
``iclrec``         0.1    0.1     -       -      -      ICLRec "Hybrid", k-means K = 256 per epoch,
                                                         warm-started from the last epoch's centroids
``sr+csd``         0.1    -       0       0.1    -      Table 3 "SR+CSD" (Eq. 14 + Eq. 16)
``sr+csd+gr``      0.1    -       0       0.1    1.0    Table 3 "SR+CSD+GR"
``s4rec-no-csd``   -      -       0.01    -      1.0    Table 3 "S4Rec w/o CSD"
``s4rec-no-gr``    0.1    -       0.01    0.1    -      Table 3 "S4Rec w/o GR"
``s4rec``          0.1    -       0.01    0.1    1.0    S4Rec: Eq. 7-11, 14, 16, 17 on the base
=================  =====  ======  ======  =====  =====  ===========================================
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from s4rec_components import POOLINGS, Pooling
from s4rec_components.clustering import ASSIGN_SOURCES, AssignFrom

__all__ = [
    "AUGMENT_OPERATIONS",
    "CHOICES",
    "CL_REDUCTIONS",
    "PADDING_ATTENTIONS",
    "POOLINGS",
    "PRESETS",
    "TrainConfig",
    "inert_settings",
    "preset_table",
]

ZPooling = Literal["mean", "mean_all", "last"]
PaddingAttention = Literal["masked", "iclrec"]
ClReduction = Literal["mean", "two-way"]
AugmentOperation = Literal["crop", "mask", "reorder", "insert"]
ComputePath = Literal["auto", "dense", "packed"]
Loss = Literal["bce", "ce"]
MaskId = Literal["padding", "token"]
ClSimilarity = Literal["dot", "cosine"]
IntentViews = Literal["separate", "shared"]
Amp = Literal["off", "bf16"]
PADDING_ATTENTIONS: tuple[PaddingAttention, ...] = get_args(PaddingAttention)
CL_REDUCTIONS: tuple[ClReduction, ...] = get_args(ClReduction)
AUGMENT_OPERATIONS: tuple[AugmentOperation, ...] = get_args(AugmentOperation)
COMPUTE_PATHS: tuple[ComputePath, ...] = get_args(ComputePath)
CHOICES: dict[str, tuple[str, ...]] = {
    "loss": get_args(Loss),
    "padding_attention": PADDING_ATTENTIONS,
    "compute_path": COMPUTE_PATHS,
    "mask_id": get_args(MaskId),
    "view_pooling": POOLINGS,
    "cl_similarity": get_args(ClSimilarity),
    "cl_reduction": CL_REDUCTIONS,
    "intent_pooling": POOLINGS,
    "intent_views": get_args(IntentViews),
    "z_pooling": get_args(ZPooling),
    "assign_from": ASSIGN_SOURCES,
    "amp": get_args(Amp),
}
"""The allowed values of every string setting with a fixed set of values (all but ``preset``,
checked against ``PRESETS``, and the free-form ``data``, ``data_root`` and ``device``): the command
line's ``choices``, checked again by :meth:`TrainConfig.from_dict`, since a saved
``config.json`` may have been edited by hand."""

# The terms of the s4rec family, on the same base: online clustering (Eq. 7-11) on the mean
# over real positions, the intent-aware InfoNCE (Eq. 14) with ICLRec's NT-Xent scale (the mean
# over the 2b rows; ``--cl-reduction two-way`` is Eq. 13's sum of both directions, twice that),
# prototype distillation summed over the two views (Eq. 16) and the head/tail adversary (Eq. 17).
_S4REC_BASE: dict[str, Any] = dict(
    view_pooling="mean",
    z_pooling="mean",
    cl_reduction="mean",
    cl_intent_negatives=True,
    padding_attention="masked",
    # the paper's batch (Section 5.1.4). On Beauty it beat ICLRec's 256 on valid NDCG@20 for
    # seeds 0, 2 and 3, tied on seed 1 and lost on seed 4 (docs/reproduction.md, "batch of 512")
    batch_size=512,
)

PRESETS: dict[str, dict[str, Any]] = {
    "sasrec": dict(),
    "cl4srec": dict(beta1=0.1, view_pooling="flatten", padding_attention="iclrec"),
    "iclrec": dict(beta1=0.1, intent_weight=0.1, view_pooling="flatten", padding_attention="iclrec",
                   kmeans_warm_start=True),
    "sr+csd": dict(_S4REC_BASE, alpha=0.0, beta1=0.1, beta2=0.1, lam=0.0),
    "sr+csd+gr": dict(_S4REC_BASE, alpha=0.0, beta1=0.1, beta2=0.1, lam=1.0),
    "s4rec-no-csd": dict(_S4REC_BASE, alpha=0.01, beta1=0.0, beta2=0.0, lam=1.0),
    "s4rec-no-gr": dict(_S4REC_BASE, alpha=0.01, beta1=0.1, beta2=0.1, lam=0.0),
    "s4rec": dict(_S4REC_BASE, alpha=0.01, beta1=0.1, beta2=0.1, lam=1.0),
}
"""Per preset, the fields that differ from :class:`TrainConfig`'s defaults (ICLRec's base)."""


_ACTIVE_WHEN: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    "distill_temperature": lambda v: bool(v.get("beta2")),
    "detach_teacher": lambda v: bool(v.get("beta2")),
    # the prototype negatives of Eq. 14; the cosine normalises the scale away
    "cl_intent_negative_scale": lambda v: bool(v.get("beta1")) and bool(v.get("cl_intent_negatives"))
    and v.get("cl_similarity") != "cosine",
    # the shared NT-Xent module: the sequence-level term and ICLRec's intent term
    "cl_positive_in_denominator": lambda v: bool(v.get("beta1")) or bool(v.get("intent_weight")),
}
"""Setting -> when it can change a run (a config as a dict -> whether its term is on)."""


def inert_settings(values: Mapping[str, Any]) -> set[str]:
    """The settings in ``values`` (a config as a dict) that cannot change a run: those of a loss
    term that is off, such as the distillation's temperature when ``beta2`` is 0."""
    return {k for k, active in _ACTIVE_WHEN.items() if not active(values)}


_OPTIONAL_KINDS: dict[str, type] = {"data": str, "epochs": int}
"""The settings that may be ``None`` (generated data; the epoch cap derived from the batch), with
the type of their other values."""


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved into ``results.json`` and every checkpoint.

    The defaults are ICLRec's Beauty base with every self-supervised weight at 0; a preset
    (``PRESETS``) overrides some fields, and explicit command-line flags override the preset.
    """

    preset: str = "s4rec"
    data: str | None = None  # file, dataset name, or None = generated data
    data_root: str = "data"  # where named datasets are downloaded / looked up
    loss: Loss = "bce"  # bce: one sampled negative per position (ICLRec); ce: full softmax
    epochs: int | None = None  # None: 300 (generated data: 20) x max(1, batch_size / 256)
    patience: int = 40  # epochs without a better valid NDCG@20 before stopping
    eval_every: int = 1  # validate every N epochs (patience is still counted in epochs)
    seed: int = 0
    device: str = "cpu"
    # optimisation
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 256
    eval_batch_size: int = 1024
    # bf16: the training forward under torch.autocast(bfloat16); validation, test and k-means stay
    # float32. Not ICLRec's or the paper's (both float32): a run with it is a variant of its preset
    amp: Amp = "off"
    # encoder
    hidden_size: int = 64
    num_layers: int = 1
    num_heads: int = 2
    max_len: int = 50
    dropout: float = 0.5
    padding_attention: PaddingAttention = "masked"  # iclrec: padding outputs as ICLRec's additive mask gives
    compute_path: ComputePath = "auto"
    # views (ICLRec: one of crop / mask / reorder per view, mask written as padding id 0)
    augment_operations: tuple[AugmentOperation, ...] = ("crop", "mask", "reorder")
    mask_id: MaskId = "padding"  # padding: id 0 (ICLRec); token: a learned mask token n + 1
    crop_ratio: float = 0.2
    mask_ratio: float = 0.7
    reorder_ratio: float = 0.2
    insert_ratio: float = 0.4
    # sequence-level contrastive term (ICLRec's instance NCE / S4Rec Eq. 13-14), weight beta1
    beta1: float = 0.0
    view_pooling: Pooling = "flatten"
    cl_similarity: ClSimilarity = "dot"
    cl_temperature: float = 1.0  # tau_2
    cl_reduction: ClReduction = "mean"  # mean: NT-Xent over 2b rows (ICLRec); two-way: 2x (Eq. 13)
    cl_intent_negatives: bool = False  # Eq. 14: non-assigned prototypes as extra negatives
    cl_intent_negative_scale: float = 1.0  # factor on those prototypes (unit vectors) in Eq. 14
    # the usual InfoNCE; False: Eq. 13-14 as printed (also in ICLRec's intent term, same module)
    cl_positive_in_denominator: bool = True
    # ICLRec's intent term: per-epoch k-means of every training sequence
    intent_weight: float = 0.0
    num_intents: int = 256
    kmeans_iters: int = 20
    kmeans_redo: int = 5  # faiss nredo: best of this many k-means runs (ICLRec: 5)
    kmeans_warm_start: bool = False  # start each epoch's k-means from the last epoch's centroids (ICLRec's faiss)
    intent_pooling: Pooling = "mean_all"
    intent_denoise: bool = False  # ICLRec --de_noise (off in its Beauty script)
    intent_views: IntentViews = "separate"  # separate: views re-encoded for the intent term (ICLRec)
    # S4Rec terms: online clustering (alpha), distillation (beta2), adversary (lam)
    alpha: float = 0.0
    beta2: float = 0.0
    lam: float = 0.0
    z_pooling: ZPooling = "mean"  # z_u of the original sequence (clustering, adversary)
    assign_from: AssignFrom = "targets"  # h(u): argmax of the Sinkhorn targets q, or of p
    num_prototypes: int = 128  # K
    cluster_temperature: float = 0.1  # tau_1
    sinkhorn_epsilon: float = 0.05
    sinkhorn_iters: int = 3
    freeze_prototypes_steps: int = 0
    # tau_3: the paper's grid is {0.1, 1}; 1 won on valid NDCG@20 for s4rec on all 3 seeds
    # (docs/reproduction.md, "temperature grid"); 0.1 was the presets' value until 2026-12-04
    distill_temperature: float = 1.0
    normalize_z: bool = True  # L2-normalise the distillation student and the adversary input
    detach_teacher: bool = True  # Eq. 16 trains the student only, not the prototypes
    grl_scale: float = 0.1  # gamma: the encoder receives -gamma times the adversary's gradient
    head_quantile: float = 0.8  # head users: training length above this quantile
    # generated data (when ``data`` is None)
    synthetic_users: int = 1000
    synthetic_items: int = 300

    # ------------------------------------------------------------------ derived
    @property
    def resolved_epochs(self) -> int:
        """The epoch cap: ``epochs`` if set; else ICLRec's 300 epochs on real data (20 on generated
        data) at batch 256, scaled with the batch so that a run may take the same number of Adam
        steps, and never fewer: 300 at 256 or below, 600 at 512 (20 and 40 on generated data)."""
        if self.epochs is not None:
            return self.epochs
        base = 20 if self.data is None else 300
        return max(base, -(-base * self.batch_size // 256))

    @property
    def uses_views(self) -> bool:
        return self.beta1 > 0 or self.intent_weight > 0 or self.beta2 > 0

    @property
    def uses_prototypes(self) -> bool:
        return self.alpha > 0 or self.beta2 > 0 or (self.beta1 > 0 and self.cl_intent_negatives)

    @property
    def uses_kmeans(self) -> bool:
        return self.intent_weight > 0

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["augment_operations"] = list(self.augment_operations)
        return values

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown configuration keys {unknown}")
        kwargs = dict(values)
        if "augment_operations" in kwargs:
            if not isinstance(kwargs["augment_operations"], (list, tuple)):
                raise TypeError(f"augment_operations must be a list, got {kwargs['augment_operations']!r}")
            kwargs["augment_operations"] = tuple(kwargs["augment_operations"])
            odd = [op for op in kwargs["augment_operations"] if op not in AUGMENT_OPERATIONS]
            if odd or not kwargs["augment_operations"]:
                raise ValueError(
                    f"augment_operations must be a non-empty list drawn from {list(AUGMENT_OPERATIONS)}, "
                    f"got {list(kwargs['augment_operations'])}"
                )
        for name, allowed in CHOICES.items():
            if name in kwargs and kwargs[name] not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {kwargs[name]!r}")
        if "preset" in kwargs and kwargs["preset"] not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {kwargs['preset']!r}")
        defaults = cls()
        for name, value in kwargs.items():  # a saved config.json may have been edited by hand
            default = getattr(defaults, name)
            if isinstance(default, tuple) or (value is None and name in _OPTIONAL_KINDS):
                continue
            kind = _OPTIONAL_KINDS.get(name, type(default))
            fits = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                fits = True
            if not fits:
                raise TypeError(f"{name} must be {kind.__name__}, got {value!r}")
        return cls(**kwargs)

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> TrainConfig:
        """The preset's configuration with ``overrides`` (explicit flags) on top."""
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
        values: dict[str, Any] = dict(PRESETS[preset])
        values.update(overrides)
        values["preset"] = preset
        return cls.from_dict(values)


def preset_table() -> str:
    """Markdown table of what every preset switches on (for the docs)."""
    keys = ("beta1", "intent_weight", "alpha", "beta2", "lam", "view_pooling", "padding_attention", "cl_reduction",
            "batch_size")
    lines = ["| preset | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name in PRESETS:
        c = TrainConfig.from_preset(name)
        lines.append(f"| `{name}` | " + " | ".join(str(getattr(c, k)) for k in keys) + " |")
    return "\n".join(lines)
