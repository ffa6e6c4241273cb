"""Reusable PyTorch pieces for self-supervised sequential recommendation.

The public names are re-exported here; each lives in a module of its own
(``s4rec_components.sinkhorn``, ``s4rec_components.contrastive``, ...).
Names are resolved on first access so that importing the package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # _validation.py: the global switch for value checks
    "set_validate_args": "_validation",
    "validate_args_enabled": "_validation",
    # constants.py
    "PADDING_ID": "constants",
    # ragged.py
    "Ragged": "ragged",
    "RowIndexError": "ragged",
    # sinkhorn.py
    "SinkhornKnopp": "sinkhorn",
    "sinkhorn_knopp": "sinkhorn",
    # gradient_reversal.py
    "GradientReversal": "gradient_reversal",
    "grad_reverse": "gradient_reversal",
    "dann_schedule": "gradient_reversal",
    # contrastive.py
    "IntentInfoNCE": "contrastive",
    "intent_info_nce": "contrastive",
    # distillation.py
    "PrototypeDistillation": "distillation",
    "prototype_distillation": "distillation",
    # augment.py
    "SequenceAugmenter": "augment",
    "mask_items": "augment",
    "crop_items": "augment",
    "reorder_items": "augment",
    "insert_items": "augment",
    # encoder.py
    "SASRecEncoder": "encoder",
    "sasrec_attention_mask": "encoder",
    "Pooling": "encoder",
    "POOLINGS": "encoder",
    # iclrec.py: checkpoint conversion for the public S3-Rec / CoSeRec / ICLRec code
    "ICLRecShapes": "iclrec",
    "iclrec_to_encoder_state_dict": "iclrec",
    "encoder_to_iclrec_state_dict": "iclrec",
    # kmeans.py: offline k-means (ICLRec's intents)
    "KMeans": "kmeans",
    "KMeansResult": "kmeans",
    "k_means": "kmeans",
    # clustering.py
    "OnlineIntentClustering": "clustering",
    "ClusteringOutput": "clustering",
    "online_clustering": "clustering",
    # adversary.py
    "HeadTailAdversary": "adversary",
    "AdversaryOutput": "adversary",
    "head_tail_adversarial_loss": "adversary",
    # data.py
    "SequenceDataset": "data",
    "LeaveOneOutSplit": "data",
    "load_sequences": "data",
    "load_recbole_inter": "data",
    "generate_synthetic": "data",
    "download_dataset": "data",
    "DownloadError": "data",
    # next_item.py: next-item losses over the item table (fused chunked CE, sampled BCE)
    "linear_cross_entropy": "next_item",
    "sampled_bce": "next_item",
    # evaluation.py
    "rank_targets": "evaluation",
    "ranking_metrics": "evaluation",
    "evaluate_ranking": "evaluation",
    "RankingResult": "evaluation",
}

# Written out (not computed) so that type checkers see the re-exports under --strict
# (no implicit re-export); tests/test_readme.py checks it against _EXPORTS.
__all__ = [
    "AdversaryOutput",
    "ClusteringOutput",
    "DownloadError",
    "GradientReversal",
    "HeadTailAdversary",
    "ICLRecShapes",
    "IntentInfoNCE",
    "KMeans",
    "KMeansResult",
    "LeaveOneOutSplit",
    "OnlineIntentClustering",
    "PADDING_ID",
    "POOLINGS",
    "Pooling",
    "PrototypeDistillation",
    "Ragged",
    "RankingResult",
    "RowIndexError",
    "SASRecEncoder",
    "SequenceAugmenter",
    "SequenceDataset",
    "SinkhornKnopp",
    "crop_items",
    "dann_schedule",
    "download_dataset",
    "encoder_to_iclrec_state_dict",
    "evaluate_ranking",
    "generate_synthetic",
    "grad_reverse",
    "head_tail_adversarial_loss",
    "iclrec_to_encoder_state_dict",
    "insert_items",
    "intent_info_nce",
    "k_means",
    "linear_cross_entropy",
    "load_recbole_inter",
    "load_sequences",
    "mask_items",
    "online_clustering",
    "prototype_distillation",
    "rank_targets",
    "ranking_metrics",
    "reorder_items",
    "sampled_bce",
    "sasrec_attention_mask",
    "set_validate_args",
    "sinkhorn_knopp",
    "validate_args_enabled",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 's4rec_components' has no attribute {name!r}")
    module = importlib.import_module(f".{module_name}", __name__)
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names and the submodules imported so far (not this file's helpers: ``Any``, ...)."""
    submodules = {name for name, value in globals().items()
                  if not name.startswith("_") and getattr(value, "__name__", "").startswith(f"{__name__}.")}
    dunders = {name for name in globals() if name.startswith("__")} - {"__getattr__", "__dir__"}
    return sorted(submodules | dunders | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from ._validation import set_validate_args, validate_args_enabled
    from .constants import PADDING_ID
    from .ragged import Ragged, RowIndexError
    from .adversary import (
        AdversaryOutput,
        HeadTailAdversary,
        head_tail_adversarial_loss,
    )
    from .augment import (
        SequenceAugmenter,
        crop_items,
        insert_items,
        mask_items,
        reorder_items,
    )
    from .clustering import ClusteringOutput, OnlineIntentClustering, online_clustering
    from .contrastive import IntentInfoNCE, intent_info_nce
    from .data import (
        DownloadError,
        LeaveOneOutSplit,
        SequenceDataset,
        download_dataset,
        generate_synthetic,
        load_recbole_inter,
        load_sequences,
    )
    from .distillation import PrototypeDistillation, prototype_distillation
    from .encoder import POOLINGS, Pooling, SASRecEncoder, sasrec_attention_mask
    from .iclrec import (
        ICLRecShapes,
        encoder_to_iclrec_state_dict,
        iclrec_to_encoder_state_dict,
    )
    from .kmeans import KMeans, KMeansResult, k_means
    from .next_item import linear_cross_entropy, sampled_bce
    from .evaluation import (
        RankingResult,
        evaluate_ranking,
        rank_targets,
        ranking_metrics,
    )
    from .gradient_reversal import GradientReversal, dann_schedule, grad_reverse
    from .sinkhorn import SinkhornKnopp, sinkhorn_knopp
