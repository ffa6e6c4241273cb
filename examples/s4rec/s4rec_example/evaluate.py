"""Full-ranking evaluation (HR@k / NDCG@k, k = 5, 10, 20) of our checkpoints and ICLRec's.

Protocol (S4Rec Section 5.1.2): the target is ranked against every item, the user's earlier
items excluded, padding and the mask id never ranked, ties broken pessimistically.
``--iclrec-quirk`` reproduces the public ICLRec code instead: earlier items are scored 0
rather than excluded, and the padding and mask-id columns are ranked like items.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Literal

import torch

from s4rec_components import (
    LeaveOneOutSplit,
    Pooling,
    RankingResult,
    SASRecEncoder,
    SequenceDataset,
    evaluate_ranking,
)

from . import cli_common as common
from .checkpoint import Checkpoint, load_model, load_tensor_file
from .config import TrainConfig
from .data import load_dataset

__all__ = ["METRIC_KEYS", "check_compatible", "format_table", "main", "round_metrics", "score_split"]

LOG = logging.getLogger("s4rec.evaluate")
ICLREC_HISTORY_SCORE = 0.0  # the public code: rating_pred[train_matrix > 0] = 0
METRIC_KEYS = ("HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20")
METRIC_DIGITS = 6


def round_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The six reported metrics, rounded to ``METRIC_DIGITS`` decimals (for JSON output)."""
    return {key: round(float(metrics[key]), METRIC_DIGITS) for key in METRIC_KEYS}


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """The metric table printed by both train.py and evaluate.py."""
    lines = [f"{'':<8}" + "".join(f"{k:>10}" for k in METRIC_KEYS)]
    for name, metrics in rows.items():
        lines.append(f"{name:<8}" + "".join(f"{metrics[k]:>10.4f}" for k in METRIC_KEYS))
    return "\n".join(lines)


@torch.no_grad()
def score_split(
    encoder: SASRecEncoder,
    split: LeaveOneOutSplit,
    which: Literal["valid", "test"],
    *,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
    iclrec_quirk: bool = False,
    pooling: Pooling = "last",
    progress: bool = False,
) -> RankingResult:
    """Full-ranking metrics of ``encoder`` on the ``valid`` or ``test`` split (eval mode, restored after)."""
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()

    if iclrec_quirk:
        table = encoder.embed_items(torch.arange(encoder.num_items + 2, device=device))  # all n + 2 rows

        def score_fn(item_ids: torch.Tensor) -> torch.Tensor:
            return encoder.represent(item_ids, pooling=pooling) @ table.T

        ignore_ids: tuple[int, ...] = ()
        history_value: float | None = ICLREC_HISTORY_SCORE
    else:

        def score_fn(item_ids: torch.Tensor) -> torch.Tensor:
            return encoder.score_items(encoder.represent(item_ids, pooling=pooling))

        ignore_ids = (0, encoder.mask_id)
        history_value = None
    history = split.history(which)
    try:
        return evaluate_ranking(
            score_fn,
            split.inputs(which),
            split.targets(which),
            history=history,
            batch_size=batch_size,
            ignore_ids=ignore_ids,
            history_value=history_value,
            device=device,
            progress=progress,
        )
    finally:
        encoder.train(was_training)


def check_compatible(
    num_items: int, item_ids: list[str] | None, dataset: SequenceDataset, source: str, data: str
) -> None:
    """Refuse a checkpoint whose catalogue (size or raw id mapping) is not the data's.

    Raises:
        common.UsageError: with a message naming both sides.
    """
    data_ids = getattr(dataset, "item_ids", None)
    if dataset.num_items != num_items:
        raise common.UsageError(
            f"{source} was trained on {num_items} items but --data {data} has {dataset.num_items}: "
            "wrong dataset for this checkpoint"
        )
    if (item_ids is None) != (data_ids is None) or (
        item_ids is not None and data_ids is not None and list(item_ids) != list(data_ids)
    ):
        raise common.UsageError(
            f"{source} maps its {num_items} items to other raw ids than --data {data}: "
            "wrong dataset for this checkpoint"
        )


def write_per_user(
    path: str | Path, result: RankingResult, dataset: SequenceDataset, which: str, model: dict[str, str] | None = None
) -> None:
    """Every user's rank and full sequence length: ``.pt`` (dict of tensors) or JSON, with the
    split, the metrics and ``model``: strings that say which model ranked what (``source``, the
    flags; ``data``; ``label``, the recipe and seed; ``results_file``, its name in docs/results),
    which ``compare.py`` records."""
    from .checkpoint import atomic_write_bytes, atomic_write_text

    path = Path(path)
    columns = {"user_id": dataset.user_ids, "rank": result.ranks.cpu(), "length": dataset.lengths}
    if path.suffix == ".pt":
        import io

        buffer = io.BytesIO()
        torch.save({**columns, "split": which, "metrics": result.metrics, **(model or {})}, buffer)
        atomic_write_bytes(path, buffer.getvalue())
        return
    users = [
        {"user_id": u, "rank": r, "length": n}
        for u, r, n in zip(*(columns[k].tolist() for k in ("user_id", "rank", "length")))
    ]
    record = {"split": which, "metrics": result.metrics, **(model or {}), "users": users}
    atomic_write_text(path, json.dumps(record) + "\n")


def describe_model(args: argparse.Namespace, checkpoint: Checkpoint | None) -> dict[str, str]:
    """What ``write_per_user`` records about the model: its flags, data, recipe and results file."""
    from .report import finished_results_name, run_label

    if checkpoint is None:
        return {"source": f"--iclrec-checkpoint {args.iclrec_checkpoint}", "data": str(args.data),
                "label": "ICLRec code's checkpoint", "results_file": ""}
    config = checkpoint.config
    return {"source": f"--checkpoint {args.checkpoint}", "data": str(args.data),
            "label": f"{run_label(config.to_dict())}, seed {config.seed}",
            "results_file": finished_results_name(Path(args.checkpoint).parent) or ""}


# ---------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    parser = common.make_parser("evaluate.py", __doc__)
    common.add_data_arguments(
        parser, default="the data the --checkpoint was trained on (its file, dataset name or generated data)"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="best.pt or last.pt written by train.py")
    source.add_argument("--iclrec-checkpoint", help="state dict saved by the public ICLRec code")
    parser.add_argument("--split", choices=("valid", "test"), default="test", help="which held-out item to rank")
    parser.add_argument("--max-len", type=common.positive_int, default=None,
                        help="input length; default: the checkpoint's")
    parser.add_argument("--num-heads", type=common.positive_int, default=2,
                        help="attention heads of an --iclrec-checkpoint (not stored in its file)")
    parser.add_argument("--eval-batch-size", type=common.positive_int, default=1024, help="users ranked per batch")
    parser.add_argument("--iclrec-quirk", action="store_true",
                        help="score history 0 and rank every column, as the public ICLRec code")
    parser.add_argument("--pooling", choices=("last", "mean"), default="last",
                        help="representation scored against the items")
    parser.add_argument("--output", default=None, help="per-user ranks and lengths (.pt or .json)")
    parser.add_argument("--json", action="store_true",
                        help="print the metrics as one JSON object on the last line instead of the table")
    common.add_runtime_arguments(parser)
    return parser


def _run(args: argparse.Namespace) -> dict[str, float]:
    device = common.parse_device(args.device)
    common.set_threads(args.threads)
    for name in ("checkpoint", "iclrec_checkpoint"):
        value = getattr(args, name)
        if value is None:
            continue
        flag = f"--{name.replace('_', '-')} {value!r}"
        if Path(value).is_dir():
            hint = " (a run folder: pass its best.pt or last.pt)" if name == "checkpoint" else ""
            raise common.UsageError(f"{flag}: is a folder, not a checkpoint file{hint}")
        if not Path(value).is_file():
            raise common.UsageError(f"{flag}: no such file")
    if args.output is not None:
        common.check_output_file(args.output, (".pt", ".json"))
    if args.data is None and args.iclrec_checkpoint is not None:
        raise common.UsageError("--iclrec-checkpoint needs --data (its file does not say which data it was trained on)")
    started = time.perf_counter()
    checkpoint = None
    if args.checkpoint is not None:
        model, checkpoint = load_model(args.checkpoint, device)
    if args.data is None and checkpoint is not None:  # the run's own data, generated data included
        # this machine's --data-root, not the one recorded on the machine that trained (a file
        # cannot choose where a download is written); its generated sizes bounded like the flags
        data_config = dataclasses.replace(checkpoint.config, data_root=args.data_root)
        if data_config.data is None:
            for name in ("synthetic_users", "synthetic_items"):
                try:
                    common.generated_count(str(getattr(data_config, name)))
                except argparse.ArgumentTypeError as err:
                    raise common.UsageError(f"--checkpoint {args.checkpoint}: its {name} {err}") from None
        args.data = data_config.data or f"generated ({data_config.synthetic_users} users, seed {data_config.seed})"
    else:
        data_config = TrainConfig(data=args.data, data_root=args.data_root)
    dataset = load_dataset(data_config)
    loaded = time.perf_counter() - started

    if args.iclrec_checkpoint is not None:
        state = load_tensor_file(args.iclrec_checkpoint)
        try:
            encoder = SASRecEncoder.from_iclrec_state_dict(state, num_heads=args.num_heads)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise common.UsageError(
                f"--iclrec-checkpoint {args.iclrec_checkpoint}: not an ICLRec SASRec state dict ({message[:200]})"
            ) from None
        encoder = encoder.to(device).eval()
        if dataset.num_items != encoder.num_items:
            raise common.UsageError(
                f"--iclrec-checkpoint has {encoder.num_items} items but --data {args.data} has "
                f"{dataset.num_items}: wrong dataset for this checkpoint"
            )
    else:
        assert checkpoint is not None  # one of the two sources is required by argparse
        check_compatible(checkpoint.num_items, checkpoint.item_ids, dataset, f"--checkpoint {args.checkpoint}", args.data)
        encoder = model.encoder
    max_len = args.max_len if args.max_len is not None else encoder.max_len
    if max_len > encoder.max_len:
        raise common.UsageError(f"--max-len {max_len} exceeds the checkpoint's position table ({encoder.max_len})")
    LOG.info("data %s: %s (%.2f s)", args.data, json.dumps(dataset.statistics()), loaded)

    split = dataset.split(max_len=max_len)
    ranked = time.perf_counter()
    result = score_split(
        encoder,
        split,
        args.split,
        batch_size=args.eval_batch_size,
        device=device,
        iclrec_quirk=args.iclrec_quirk,
        pooling=args.pooling,
        progress=common.show_progress(args.quiet),
    )
    LOG.info(
        "%s split: %d users ranked against %d items in %.2f s (total %.2f s)",
        args.split, split.num_users, encoder.num_items, time.perf_counter() - ranked, time.perf_counter() - started,
    )
    if args.output:
        write_per_user(args.output, result, dataset, args.split, describe_model(args, checkpoint))
        LOG.info("per-user results written to %s", args.output)
    metrics = round_metrics(result.metrics)
    if args.json:
        print(json.dumps(metrics))
    else:
        print(format_table({args.split: metrics}))
    return metrics


def main(argv: list[str] | None = None) -> dict[str, float]:
    """``evaluate.py``'s command line; exits with status 2 and one line on stderr on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    common.setup_console_logging(args.quiet)
    with common.restored_torch_settings():
        return common.run_guarded(lambda: _run(args), debug=args.debug, prog="evaluate.py")
