"""Train S4Rec (or one of its ablations / baselines) and evaluate it with full ranking.

Examples:
    python examples/s4rec/train.py                      # S4Rec on generated data, CPU, minutes
    python examples/s4rec/train.py --data ../shared/data/Beauty.txt --preset sasrec \\
        --epochs 50 --output runs/beauty-sasrec
    python examples/s4rec/train.py --resume runs/beauty-sasrec   # continue an interrupted run

Writes into ``--output``: ``results.json`` (config, git commit, per-epoch losses, valid metrics
and seconds, best epoch, test metrics), ``train.log``, ``best.pt`` (the best model by valid
NDCG@20) and ``last.pt`` (everything needed to resume).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from s4rec_components import (
    LeaveOneOutSplit,
    SequenceDataset,
    download_dataset,
    generate_synthetic,
    load_recbole_inter,
    load_sequences,
)

from config import PRESETS, TrainConfig
from evaluate import score_split
from model import S4Rec, load_checkpoint, save_checkpoint

LOG = logging.getLogger("s4rec.train")
SELECTION_METRIC = "NDCG@20"
KNOWN_DATASETS = ("Beauty", "Sports", "Toys", "ML-1M")


# ---------------------------------------------------------------------------- data
def load_data(config: TrainConfig, data_root: str | Path = "data") -> SequenceDataset:
    """The dataset of ``config.data``: a file, a known dataset name (downloaded), or generated."""
    if config.data is None:
        return generate_synthetic(
            num_users=config.synthetic_users, num_items=config.synthetic_items, seed=config.seed
        )
    path = Path(config.data)
    if not path.exists() and config.data in KNOWN_DATASETS:
        path = download_dataset(config.data, root=data_root)
    if not path.exists():
        raise FileNotFoundError(
            f"--data {config.data!r}: no such file; pass a path or one of {KNOWN_DATASETS}"
        )
    return load_recbole_inter(path) if path.suffix == ".inter" else load_sequences(path)


def head_labels(split: LeaveOneOutSplit, quantile: float) -> torch.Tensor:
    """``(u,)`` long: 1 for head users, whose training sequence is longer than the quantile.

    The default 0.8 makes the longest ~20% of histories the head (Pareto's 80/20, the usual
    cut in long-tail recommendation); ties at the cut go to the tail, so the share can be lower.
    """
    lengths = split.train_lengths.float()
    threshold = torch.quantile(lengths, quantile)
    return (lengths > threshold).long()


# ---------------------------------------------------------------------------- helpers
def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=10
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def progress(iterable, total: int, desc: str, enabled: bool):
    """tqdm when installed and wanted, else the plain iterable."""
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is an optional extra
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def evaluate(model: S4Rec, split: LeaveOneOutSplit, which: str, batch_size: int, show: bool):
    """Full ranking of the ``valid`` or ``test`` split (history excluded); leaves eval mode on."""
    model.eval()
    return score_split(model.encoder, split, which, batch_size=batch_size, progress=show)


def format_table(rows: dict[str, dict[str, float]]) -> str:
    keys = ["HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20"]
    lines = [f"{'':<8}" + "".join(f"{k:>10}" for k in keys)]
    for name, metrics in rows.items():
        lines.append(f"{name:<8}" + "".join(f"{metrics[k]:>10.4f}" for k in keys))
    return "\n".join(lines)


def setup_logging(output: Path, quiet: bool) -> None:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        if getattr(handler, "_s4rec", False):
            root.removeHandler(handler)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    file_handler = logging.FileHandler(output / "train.log")
    file_handler.setFormatter(fmt)
    file_handler._s4rec = True  # type: ignore[attr-defined]
    root.addHandler(file_handler)
    stream = logging.StreamHandler(sys.stderr)  # one line per epoch; the bars only when not quiet
    stream.setFormatter(fmt if quiet else logging.Formatter("%(message)s"))
    stream._s4rec = True  # type: ignore[attr-defined]
    root.addHandler(stream)


# ---------------------------------------------------------------------------- training
def train(
    config: TrainConfig,
    output: str | Path,
    *,
    resume: bool = False,
    quiet: bool = False,
    max_epochs_this_call: int | None = None,
    data_root: str | Path = "data",
) -> dict[str, Any]:
    """Train, early-stop on valid NDCG@20, test the best checkpoint; return ``results.json``'s dict.

    ``max_epochs_this_call`` stops after that many epochs without testing (used to simulate an
    interruption in the tests); ``resume=True`` continues from ``output/last.pt``.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    setup_logging(output, quiet)
    show = not quiet
    device = torch.device(config.device)

    torch.manual_seed(config.seed)
    dataset = load_data(config, data_root)
    split = dataset.split(max_len=config.max_len).to(device)
    n = split.num_items
    heads = head_labels(split, config.head_quantile).to(device)
    LOG.info("data: %s", json.dumps(dataset.statistics()))
    LOG.info("head users: %d of %d (%.1f%%)", int(heads.sum()), len(heads), 100 * heads.float().mean())

    model = S4Rec(n, config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator(device=device).manual_seed(config.seed)

    history: list[dict[str, Any]] = []
    best = {"epoch": -1, "valid": None, "score": float("-inf")}
    bad_epochs = 0
    start_epoch = 0
    if resume and (output / "last.pt").exists():
        state = torch.load(output / "last.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        history, best, bad_epochs, start_epoch = (
            state["history"], state["best"], state["bad_epochs"], state["epoch"] + 1
        )
        LOG.info("resumed from %s at epoch %d", output / "last.pt", start_epoch)

    epochs = config.resolved_epochs
    num_users = split.train_inputs.shape[0]
    steps = (num_users + config.batch_size - 1) // config.batch_size
    done_this_call = 0
    stopped_early = False
    for epoch in range(start_epoch, epochs):
        if bad_epochs >= config.patience:
            stopped_early = True
            break
        if max_epochs_this_call is not None and done_this_call >= max_epochs_this_call:
            return {"interrupted_at_epoch": epoch}
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(num_users, device=device, generator=generator)
        sums_t: dict[str, torch.Tensor] = {}
        bar = progress(range(steps), steps, f"epoch {epoch}", show)
        for step in bar:
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            terms = model(
                split.train_inputs[idx], split.train_targets[idx], split.user_items[idx], heads[idx], generator
            )
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            for key, value in terms.items():  # accumulate on the device, read once per epoch
                sums_t[key] = sums_t.get(key, 0.0) + value.detach()
        sums = {k: float(v) / steps for k, v in sums_t.items()}
        train_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        valid = evaluate(model, split, "valid", config.eval_batch_size, show).metrics
        eval_seconds = time.perf_counter() - t1
        score = valid[SELECTION_METRIC]
        improved = score > best["score"]
        if improved:
            best = {"epoch": epoch, "valid": valid, "score": score}
            bad_epochs = 0
            save_checkpoint(output / "best.pt", model, {"epoch": epoch})
        else:
            bad_epochs += 1
        history.append(
            {"epoch": epoch, "losses": sums, "valid": valid, "train_seconds": train_seconds, "eval_seconds": eval_seconds}
        )
        LOG.info(
            "epoch %d | %s | valid HR@20 %.4f NDCG@20 %.4f%s | %.1fs + %.1fs",
            epoch, " ".join(f"{k} {v:.4f}" for k, v in sums.items()), valid["HR@20"], valid["NDCG@20"],
            " *" if improved else "", train_seconds, eval_seconds,
        )
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "history": history,
                "best": best,
                "bad_epochs": bad_epochs,
                "epoch": epoch,
                "config": config.to_dict(),
            },
            output / "last.pt",
        )
        done_this_call += 1
    else:
        stopped_early = bad_epochs >= config.patience

    best_model = load_checkpoint(output / "best.pt", device)
    test = evaluate(best_model, split, "test", config.eval_batch_size, show)
    results = {
        "config": config.to_dict(),
        "git_commit": git_commit(),
        "dataset": dataset.statistics(),
        "device": str(device),
        "machine": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "epochs_run": len(history),
        "stopped_early": stopped_early,
        "history": history,
        "seconds_per_epoch": sum(h["train_seconds"] for h in history) / max(len(history), 1),
        "total_seconds": sum(h["train_seconds"] + h["eval_seconds"] for h in history),
        "best_epoch": best["epoch"],
        "valid": best["valid"],
        "test": test.metrics,
    }
    (output / "results.json").write_text(json.dumps(results, indent=2))
    torch.save({"ranks": test.ranks.cpu(), "lengths": split.lengths.cpu()}, output / "test_ranks.pt")
    LOG.info("test: %s", json.dumps(test.metrics))
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="dataset file (.txt one line per user, or RecBole .inter), "
                   f"or a name in {KNOWN_DATASETS} to download; default: generated data")
    p.add_argument("--data-root", default="data", help="where downloaded datasets are kept")
    p.add_argument("--preset", default="s4rec", choices=sorted(PRESETS))
    p.add_argument("--loss", default="bce", choices=["bce", "ce"])
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--patience", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu (default), cuda, cuda:1, ...")
    p.add_argument("--output", default=None, help="run folder (default runs/<data>-<preset>-<loss>-s<seed>)")
    p.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bars, time-stamped log lines only")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    for name in ("lr", "batch_size", "hidden_size", "num_layers", "num_heads", "max_len", "dropout",
                 "num_prototypes", "cluster_temperature", "cl_temperature", "distill_temperature",
                 "sinkhorn_epsilon", "alpha", "beta1", "beta2", "lam", "head_quantile", "weight_decay",
                 "eval_batch_size", "freeze_prototypes_steps", "grl_scale", "synthetic_users", "synthetic_items"):
        default = TrainConfig.__dataclass_fields__[name].default
        kind = int if isinstance(default, int) and not isinstance(default, bool) else float
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None)
    p.add_argument("--pooling", choices=["last", "mean"], default=None)
    p.add_argument("--no-normalize-z", dest="normalize_z", action="store_false", default=None,
                   help="feed the raw z_u to the contrastive, distillation and adversary heads "
                   "(dot-product InfoNCE as Eq. 13 is written) instead of the L2-normalised one")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.resume:
        run_dir = Path(args.resume)
        saved = json.loads((run_dir / "config.json").read_text())
        config = TrainConfig.from_dict(saved)
        if args.device:
            config.device = args.device
    else:
        values = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None}
        config = TrainConfig(**values)
        name = Path(config.data).stem if config.data else "generated"
        run_dir = Path(args.output or f"runs/{name}-{config.preset}-{config.loss}-s{config.seed}")
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    results = train(config, run_dir, resume=bool(args.resume), quiet=args.quiet, data_root=args.data_root)
    print(f"\n{config.preset} ({config.loss}) on {config.data or 'generated data'}: "
          f"best epoch {results['best_epoch']}, {results['seconds_per_epoch']:.1f} s/epoch")
    print(format_table({"valid": results["valid"], "test": results["test"]}))
    print(f"results: {run_dir / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
