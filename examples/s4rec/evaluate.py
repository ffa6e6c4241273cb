"""Full-ranking evaluation of a trained SASRec-style encoder (HR@k / NDCG@k, k = 5, 10, 20).

Examples:
    # a checkpoint of the public ICLRec code (a plain SASRec state dict)
    python examples/s4rec/evaluate.py --data ../shared/data/Beauty.txt \\
        --iclrec-checkpoint ICLRec-Beauty-1.pt --split test --iclrec-quirk

    # a checkpoint written by train.py
    python examples/s4rec/evaluate.py --data ../shared/data/Beauty.txt --checkpoint runs/x/best.pt

The data is the one-line-per-user text format, or a RecBole ``.inter`` file (chosen by the
extension). Logs go to stderr; the metrics are printed as ONE JSON object on the last line of
stdout, so ``... | tail -n 1 | python -m json.tool`` works. ``--output FILE`` also writes every
user's rank and sequence length (``.pt``: a dict of tensors; anything else: JSON).

Protocol (S4Rec Section 5.1.2): the target is ranked against every item, the user's earlier
items excluded, padding never ranked, ties broken pessimistically. ``--iclrec-quirk`` instead
reproduces the public ICLRec code exactly: earlier items are scored 0 rather than excluded, and
the padding and mask-id columns are ranked like items.

Other scripts import the functions here (``import evaluate``; the script folder is on
``sys.path`` when a sibling script runs).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Literal

import torch

from s4rec_components import (
    LeaveOneOutSplit,
    RankingResult,
    SASRecEncoder,
    SequenceDataset,
    evaluate_ranking,
    load_recbole_inter,
    load_sequences,
)
from s4rec_components.encoder import POOLINGS

LOG = logging.getLogger("s4rec.evaluate")
ICLREC_HISTORY_SCORE = 0.0  # the public code: rating_pred[train_matrix > 0] = 0
METRIC_KEYS = ("HR@5", "NDCG@5", "HR@10", "NDCG@10", "HR@20", "NDCG@20")


# ---------------------------------------------------------------------------- loading
def load_dataset(path: str | Path) -> SequenceDataset:
    """One-line-per-user text, or a RecBole atomic file when the name ends in ``.inter``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--data {str(path)!r}: no such file")
    return load_recbole_inter(path) if path.suffix == ".inter" else load_sequences(path)


def load_iclrec_checkpoint(path: str | Path, num_heads: int, device: str | torch.device) -> SASRecEncoder:
    """An encoder (eval mode, on ``device``) from a state dict saved by the public ICLRec code."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    encoder = SASRecEncoder.from_iclrec_state_dict(state, num_heads=num_heads)
    return encoder.to(device).eval()


def load_own_checkpoint(path: str | Path, device: str | torch.device) -> SASRecEncoder:
    """The trained encoder (eval mode, on ``device``) from a checkpoint written by ``train.py``."""
    from model import load_checkpoint  # sibling script module; imports the example's config

    return load_checkpoint(path, device).encoder


def check_compatible(encoder: SASRecEncoder, dataset: SequenceDataset, max_len: int) -> None:
    """Raise ``ValueError`` when the data's ids or the input length do not fit the encoder."""
    if dataset.num_items > encoder.num_items:
        raise ValueError(
            f"the data has item ids up to {dataset.num_items} but the checkpoint knows "
            f"{encoder.num_items} items: wrong dataset for this checkpoint?"
        )
    if dataset.num_items < encoder.num_items:
        LOG.warning(
            "the checkpoint knows %d items, the data's largest id is %d: the extra items are ranked too",
            encoder.num_items, dataset.num_items,
        )
    if max_len > encoder.max_len:
        raise ValueError(f"--max-len {max_len} exceeds the checkpoint's position table ({encoder.max_len})")
    if max_len != encoder.max_len:
        LOG.warning(
            "--max-len %d differs from the checkpoint's %d: positions shift from training", max_len, encoder.max_len
        )


# ---------------------------------------------------------------------------- scoring
def score_split(
    encoder: SASRecEncoder,
    split: LeaveOneOutSplit,
    which: Literal["valid", "test"],
    batch_size: int = 1024,
    device: str | torch.device | None = None,
    iclrec_quirk: bool = False,
    pooling: Literal["last", "mean"] = "last",
    progress: bool = False,
) -> RankingResult:
    """Full-ranking metrics of ``encoder`` on the ``valid`` or ``test`` split (eval mode).

    Default protocol: history excluded, padding (0) and the mask id never ranked. With
    ``iclrec_quirk`` the public ICLRec code's protocol: history scored 0 and every column of the
    item table (padding and mask id included) ranked.
    """
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()

    if iclrec_quirk:
        table = encoder.item_embeddings.weight  # all n + 2 rows, as the public code's predict_full

        def score_fn(item_ids: torch.Tensor) -> torch.Tensor:
            return encoder.represent(item_ids, pooling=pooling) @ table.T

        ignore_ids: tuple[int, ...] = ()
        history_value: float | None = ICLREC_HISTORY_SCORE
    else:

        def score_fn(item_ids: torch.Tensor) -> torch.Tensor:
            return encoder.score_items(encoder.represent(item_ids, pooling=pooling))

        ignore_ids = (0, encoder.mask_id)
        history_value = None
    try:
        return evaluate_ranking(
            score_fn,
            split.inputs(which),
            split.targets(which),
            split.history(which),
            batch_size=batch_size,
            ignore_ids=ignore_ids,
            history_value=history_value,
            device=device,
            progress=progress,
        )
    finally:
        encoder.train(was_training)


def write_per_user(path: str | Path, result: RankingResult, dataset: SequenceDataset, which: str) -> None:
    """Every user's rank and full sequence length: ``.pt`` (dict of tensors) or JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {"user_id": dataset.user_ids, "rank": result.ranks, "length": dataset.lengths}
    if path.suffix == ".pt":
        torch.save({**columns, "split": which, "metrics": result.metrics}, path)
        return
    users = [
        {"user_id": u, "rank": r, "length": n}
        for u, r, n in zip(*(columns[k].tolist() for k in ("user_id", "rank", "length")))
    ]
    path.write_text(json.dumps({"split": which, "metrics": result.metrics, "users": users}) + "\n")


# ---------------------------------------------------------------------------- command line
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="one-line-per-user .txt, or RecBole .inter")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--iclrec-checkpoint", help="state dict saved by the public ICLRec code")
    source.add_argument("--checkpoint", help="checkpoint written by train.py")
    parser.add_argument("--split", choices=("valid", "test"), default="test")
    parser.add_argument("--max-len", type=int, default=None, help="input length (default: the checkpoint's)")
    parser.add_argument("--num-heads", type=int, default=2, help="attention heads the checkpoint was trained with")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--iclrec-quirk", action="store_true", help="score history 0 and rank every column, as ICLRec")
    parser.add_argument("--pooling", choices=POOLINGS, default="last")
    parser.add_argument("--output", help="per-user ranks and lengths (.pt or .json)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    if args.batch_size < 1:
        raise SystemExit(f"--batch-size must be >= 1, got {args.batch_size}")

    started = time.perf_counter()
    dataset = load_dataset(args.data)
    LOG.info("data %s: %s (%.2f s)", args.data, json.dumps(dataset.statistics()), time.perf_counter() - started)

    if args.iclrec_checkpoint is not None:
        encoder = load_iclrec_checkpoint(args.iclrec_checkpoint, args.num_heads, args.device)
    else:
        encoder = load_own_checkpoint(args.checkpoint, args.device)
    max_len = args.max_len if args.max_len is not None else encoder.max_len
    check_compatible(encoder, dataset, max_len)

    split = dataset.split(max_len=max_len)
    ranked = time.perf_counter()
    result = score_split(
        encoder,
        split,
        args.split,
        batch_size=args.batch_size,
        device=args.device,
        iclrec_quirk=args.iclrec_quirk,
        pooling=args.pooling,
        progress=not args.no_progress,
    )
    LOG.info(
        "%s split: %d users ranked against %d items in %.2f s (total %.2f s)",
        args.split, split.num_users, encoder.num_items, time.perf_counter() - ranked, time.perf_counter() - started,
    )
    if args.output:
        write_per_user(args.output, result, dataset, args.split)
        LOG.info("per-user results written to %s", args.output)
    metrics = {key: result.metrics[key] for key in METRIC_KEYS}
    print(json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        main()
    except (FileNotFoundError, NotImplementedError, ValueError, TypeError) as err:
        LOG.error("%s", err)
        sys.exit(2)
