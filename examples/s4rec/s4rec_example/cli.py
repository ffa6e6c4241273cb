"""``train.py``'s command line: validate everything, then train into a run folder.

Examples:
    python examples/s4rec/train.py                       # s4rec on generated data, CPU, under a minute
    python examples/s4rec/train.py --data ../shared/data/Beauty.txt --preset iclrec --threads 1
    python examples/s4rec/train.py --resume runs/Beauty-iclrec-bce-s0   # continue a killed or budget-cut run
    python examples/s4rec/train.py --data ../shared/data/Beauty.txt --max-minutes 600   # stop after 10 h
    python examples/s4rec/train.py --resume runs/Beauty-s4rec-bce-s0 --max-minutes 0   # finish a killed run as is

A run folder holds ``config.json``, ``train.log``, ``results.json`` (config, git commit, the
exact command, machine, per-epoch losses and valid metrics, best epoch, test metrics; rewritten
after every epoch with ``"status": "running"``; ``"stopped_by"``: ``"early_stopping"``, ``"max_epochs"``
or ``"time_budget"``), ``best.pt`` and ``last.pt``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import io
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import torch

from . import cli_common as common
from .checkpoint import (
    Checkpoint,
    CheckpointError,
    atomic_write_text,
    changed_settings,
    check_weights_fit,
    load_checkpoint,
)
from .config import (
    AUGMENT_OPERATIONS,
    CHOICES,
    PRESETS,
    TrainConfig,
    inert_settings,
)
from .data import MIN_TRAINING_LENGTH, data_fingerprint, dataset_label, load_dataset, prepare, resolve_data_path
from .evaluate import check_compatible, format_table
from .loop import RunFiles, Shard, run_is_over, run_training

__all__ = ["Terminated", "build_parser", "main", "raise_on_sigterm", "repeat_flags", "train"]

LOG = logging.getLogger("s4rec.train")
_RUN_FILES = ("config.json", "results.json", "best.pt", "last.pt", "train.log")

# flag name -> (type, help); all default to the preset's value
_PRESET_FLAGS: dict[str, tuple[Any, str]] = {
    "loss": (None, "bce: one sampled negative per position (ICLRec); ce: full softmax over the items"),
    "epochs": (common.positive_int, "most epochs (early stopping may end the run sooner)"),
    "patience": (common.positive_int, "stop after this many epochs without a better valid NDCG@20"),
    "eval_every": (common.positive_int, "validate every N epochs (patience still counts epochs)"),
    "lr": (common.positive_float, "Adam learning rate"),
    "weight_decay": (common.nonnegative_float, "Adam weight decay"),
    "batch_size": (common.positive_int, "training users per step"),
    "eval_batch_size": (common.positive_int, "users ranked per evaluation batch"),
    "amp": (None, "bf16: run the training forward under torch.autocast(bfloat16); it pays on GPUs and, on CPUs "
                  "with AVX-512 BF16 / AMX, on the dense path (cl4srec, iclrec). Validation, test and k-means stay "
                  "float32; off: float32 throughout"),
    "hidden_size": (common.positive_int, "d"),
    "num_layers": (common.positive_int, "transformer blocks"),
    "num_heads": (common.positive_int, "attention heads (must divide d)"),
    "max_len": (common.positive_int, "input length l"),
    "dropout": (common.probability, "dropout of embeddings, attention and residual branches"),
    "padding_attention": (None, "iclrec: padding outputs as ICLRec's additive mask gives (needed by flatten / "
                                "mean_all views to match ICLRec); masked: padding attends to itself"),
    "compute_path": (None, "encoder compute path: auto picks dense on GPU, packed on CPU"),
    "mask_id": (None, "padding: a masked item becomes id 0 (ICLRec); token: a learned mask token n + 1"),
    "crop_ratio": (common.open_probability, "share of the sequence a crop view keeps"),
    "mask_ratio": (common.probability, "share of items a mask view masks"),
    "reorder_ratio": (common.probability, "share of the sequence a reorder view shuffles"),
    "insert_ratio": (common.probability, "inserted items per item (insert view)"),
    "beta1": (common.nonnegative_float, "weight of the sequence-level contrastive term (ICLRec cf_weight; Eq. 13-14)"),
    "view_pooling": (None, "representation of a view for the contrastive and distillation terms"),
    "cl_similarity": (None, "similarity of the contrastive terms"),
    "cl_temperature": (common.positive_float, "tau_2 of the contrastive terms"),
    "cl_intent_negative_scale": (common.positive_float, "factor on the prototypes (unit vectors) where they "
                                                        "are negatives of the contrastive term (Eq. 14)"),
    "cl_reduction": (None, "mean: NT-Xent averaged over the 2b rows (ICLRec); two-way: both directions summed "
                           "(Eq. 13, twice the mean)"),
    "intent_weight": (common.nonnegative_float, "weight of ICLRec's k-means intent term (intent_cf_weight)"),
    "num_intents": (common.positive_int, "k-means clusters per epoch (ICLRec: 256)"),
    "kmeans_iters": (common.positive_int, "k-means iterations"),
    "kmeans_redo": (common.positive_int, "k-means restarts, the best kept (faiss nredo; ICLRec: 5)"),
    "intent_pooling": (None, "representation clustered by k-means and contrasted with the intents"),
    "intent_views": (None, "separate: the views are encoded again for the intent term (ICLRec Hybrid); "
                           "shared: reuse the contrastive term's forward"),
    "alpha": (common.nonnegative_float, "weight of the online clustering loss (Eq. 8)"),
    "beta2": (common.nonnegative_float, "weight of the prototype distillation (Eq. 16)"),
    "lam": (common.nonnegative_float, "weight of the head/tail adversary (Eq. 17)"),
    "z_pooling": (None, "representation z_u of the original sequence (clustering, adversary)"),
    "assign_from": (None, "h(u), the hard assignment behind the teachers and the intent negatives: the argmax of "
                          "the Sinkhorn targets q (balanced over the batch) or of the predictions p"),
    "num_prototypes": (common.positive_int, "K, prototypes of the online clustering"),
    "cluster_temperature": (common.positive_float, "tau_1 of the clustering (Eq. 7)"),
    "sinkhorn_epsilon": (common.positive_float, "epsilon of Sinkhorn-Knopp (Eq. 9)"),
    "sinkhorn_iters": (common.positive_int, "Sinkhorn-Knopp iterations"),
    "freeze_prototypes_steps": (common.nonnegative_int, "steps before the prototypes train (SwAV)"),
    "distill_temperature": (common.positive_float, "tau_3 of the distillation (Eq. 15)"),
    "grl_scale": (common.nonnegative_float, "gamma: the encoder gets -gamma times the adversary's gradient"),
    "head_quantile": (common.open_probability, "head users: training length above this quantile"),
    "synthetic_users": (common.generated_count, "users of the generated data"),
    "synthetic_items": (common.generated_count, "items of the generated data"),
}
# flags that may accompany --resume (they do not change the results)
_RESUME_FLAGS = {"device", "threads", "quiet", "debug", "resume", "eval_batch_size", "max_minutes", "data_root"}


_SWITCHES: dict[str, str] = {
    "cl_intent_negatives": "add the non-assigned prototypes as negatives of the contrastive term (Eq. 14)",
    "intent_denoise": "same-intent rows are not each other's negatives (ICLRec --de_noise)",
    "kmeans_warm_start": "start each epoch's k-means from the previous epoch's centroids (ICLRec: faiss keeps them)",
    "normalize_z": "L2-normalise the distillation student and the adversary input",
    "detach_teacher": "stop the distillation's gradient at the teacher prototype (Eq. 16 trains the student only)",
    "cl_positive_in_denominator": "count the positive in the denominators of the contrastive terms (Eq. 13-14 and "
                                  "ICLRec's intent term): the usual InfoNCE; --no-... drops it, as Eq. 13-14 "
                                  "print it",
}
"""On/off settings (``--name`` / ``--no-name``); like ``_PRESET_FLAGS``, the preset decides when absent."""


def build_parser() -> argparse.ArgumentParser:
    p = common.make_parser("train.py", __doc__)
    p.add_argument("--preset", default="s4rec", choices=sorted(PRESETS), help="which model: see s4rec_example/config.py")
    common.add_data_arguments(p, default="generated data")
    p.add_argument("--seed", type=common.nonnegative_int, default=0, help="random seed")
    p.add_argument("--output", default=None, help="run folder; default: runs/<data>-<preset>-<loss>-s<seed>")
    p.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the run in DIR: a killed one, or one cut by its --max-minutes (it trains on "
                        "from its last epoch); a run that stopped early or at its epoch cap is refused")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--max-minutes", type=common.nonnegative_float, default=None, metavar="M",
                   help="wall-clock budget of this call: after the epoch during which it runs out, stop, test the "
                        "best checkpoint (results.json: stopped_by time_budget, not converged; --resume DIR goes on "
                        "from there); with --resume, 0 finishes a killed run as it stands; default: no budget")
    group = p.add_argument_group("model and training (defaults: ICLRec's base; the presets named override it)")
    for name, (kind, text) in _PRESET_FLAGS.items():
        kwargs: dict[str, Any] = {"default": common.from_preset(name), "help": text}
        if name in CHOICES:
            kwargs["choices"] = CHOICES[name]
        elif kind is not None:
            kwargs["type"] = kind
        group.add_argument("--" + name.replace("_", "-"), **kwargs)
    group.add_argument("--augment-operations", default=common.from_preset("augment_operations"),
                       help=f"comma-separated view operations among {', '.join(AUGMENT_OPERATIONS)}")
    for name, text in _SWITCHES.items():
        group.add_argument("--" + name.replace("_", "-"), default=common.from_preset(name),
                           action=argparse.BooleanOptionalAction, help=text)
    common.add_runtime_arguments(p)
    return p


def _explicit(args: argparse.Namespace) -> dict[str, Any]:
    """The model/training flags given on the command line (not left to the preset)."""
    names = set(_PRESET_FLAGS) | set(_SWITCHES) | {"augment_operations"}
    return {n: getattr(args, n) for n in names if not isinstance(getattr(args, n), type(common.FROM_PRESET))}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Preset, then explicit flags; every value and combination checked (raises UsageError)."""
    overrides = _explicit(args)
    if "augment_operations" in overrides:
        ops = tuple(op.strip() for op in overrides["augment_operations"].split(",") if op.strip())
        bad = [op for op in ops if op not in AUGMENT_OPERATIONS]
        if not ops or bad:
            raise common.UsageError(
                f"--augment-operations {overrides['augment_operations']!r}: choose among {', '.join(AUGMENT_OPERATIONS)}"
            )
        overrides["augment_operations"] = ops
    config = TrainConfig.from_preset(
        args.preset, data=args.data, data_root=args.data_root, seed=args.seed, device=args.device, **overrides
    )
    check_config(config)
    return config


def check_config(c: TrainConfig) -> None:
    """What argparse cannot check (combinations; and, for a ``config.json`` read back by
    ``--resume``, the ranges the flags enforce); raises UsageError."""
    for name, (kind, _) in _PRESET_FLAGS.items():
        value = getattr(c, name)
        if kind is None or value is None:
            continue
        try:
            kind(str(value))
        except argparse.ArgumentTypeError as err:
            raise common.UsageError(f"--{name.replace('_', '-')} {value!r}: {err}") from None
    if c.hidden_size % c.num_heads:
        raise common.UsageError(f"--num-heads {c.num_heads} must divide --hidden-size {c.hidden_size}")
    prototype_views = c.beta2 > 0 or (c.beta1 > 0 and c.cl_intent_negatives)
    if prototype_views and c.view_pooling == "flatten":
        raise common.UsageError("the prototype terms need d-dimensional views: --view-pooling mean, mean_all or last")
    if c.padding_attention == "iclrec" and c.compute_path == "packed":
        raise common.UsageError("--padding-attention iclrec needs --compute-path dense or auto")


_NO_EFFECT = {"data", "data_root", "device", "eval_batch_size", "epochs"}
"""Config keys left out of :func:`repeat_flags`' comparison: where the data lives, the device and
the ranking batch cannot change the numbers, and the epoch cap is compared as resolved."""


def repeat_flags(command: str, config: Mapping[str, Any], epoch_cap: int) -> list[str]:
    """The flags to add to a run's recorded ``train.py`` command so that today's presets and
    defaults train the settings it ran with.

    A command means what the presets said on the day it ran, and some have changed since (the
    distillation's temperature, the s4rec family's batch, the epoch cap). Every setting that
    today's reading of ``command`` would change gets its flag (``--no-<name>`` for a switch), and
    ``--epochs`` when the cap would differ; an empty list means the command repeats the run as it
    stands. The answer is checked by reading the command again with the flags added. Settings
    that cannot change the numbers are not compared: where the data lives, the device, the
    ranking batch, a setting of a loss term whose weight is 0.

    Args:
        command: the ``command`` of a ``results.json`` (``python examples/s4rec/train.py ...``).
        config: its ``config``; a setting missing from an older file is read as its default.
        epoch_cap: the run's epoch cap as it ran.

    Raises:
        ValueError: if ``command`` is not a ``train.py`` command that today's parser accepts, or no
            flags rebuild ``config``.

    Example:
        >>> ran = TrainConfig.from_preset("s4rec", seed=1, batch_size=256)  # the preset's batch before 512
        >>> repeat_flags("python examples/s4rec/train.py --preset s4rec --seed 1", ran.to_dict(), epoch_cap=20)
        ['--batch-size', '256']
    """
    tokens = shlex.split(command)
    script = next((i for i, token in enumerate(tokens) if token.endswith("train.py")), None)
    if script is None:
        raise ValueError("not a train.py command")
    defaults = TrainConfig().to_dict()
    ran = {**defaults, **config}
    compared = [k for k in defaults if k not in _NO_EFFECT | inert_settings(ran)]

    def today(extra: list[str]) -> TrainConfig:
        with contextlib.redirect_stderr(io.StringIO()) as said, contextlib.redirect_stdout(io.StringIO()):
            try:  # argparse writes its errors (and --help) and exits
                return config_from_args(build_parser().parse_args(tokens[script + 1:] + extra))
            except SystemExit:
                why = said.getvalue().strip().removeprefix("train.py: error: ")
                raise ValueError(why or "it exits before training (--help)") from None
            except common.UsageError as err:
                raise ValueError(str(err)) from None

    now = today([]).to_dict()
    flags: list[str] = []
    for key in compared:
        if now[key] == ran[key]:
            continue
        name, value = key.replace("_", "-"), ran[key]
        if key in _SWITCHES:
            flags.append(f"--{name}" if value else f"--no-{name}")
        elif value is None:
            raise ValueError(f"{key} = None has no flag")
        else:
            flags += [f"--{name}", ",".join(value) if isinstance(value, list) else str(value)]
    rebuilt = today(flags)
    if rebuilt.resolved_epochs != epoch_cap:
        flags += ["--epochs", str(epoch_cap)]
        rebuilt = today(flags)
    if rebuilt.resolved_epochs != epoch_cap or any(rebuilt.to_dict()[k] != ran[k] for k in compared):
        raise ValueError("no flags rebuild the recorded settings")
    return flags


# ---------------------------------------------------------------------------- provenance
def git_commit() -> str:
    root = Path(__file__).resolve().parents[3]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=root, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "s4rec_components", "examples/s4rec"],
            capture_output=True, text=True, cwd=root, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = head.stdout.strip() or "unknown"
    return commit + ("+dirty" if dirty.stdout.strip() else "")


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {torch.get_num_threads()} thread(s)"


# ---------------------------------------------------------------------------- run folders
def _own_file(entry: Path) -> bool:
    """A run's own file (a regular file, not a link), or a temp file its atomic writes left."""
    if entry.is_symlink() or not entry.is_file():
        return False
    if entry.name in _RUN_FILES:
        return True
    return entry.name.endswith(".tmp") and any(entry.name.startswith(f".{name}.") for name in _RUN_FILES)


def _remove_run(folder: Path) -> None:
    """Delete the run's own files in ``folder``, then the folder if nothing else is left."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for entry in folder.iterdir():
        if _own_file(entry):
            entry.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()  # only if empty


def _check_folder(folder: Path, overwrite: bool) -> list[Path]:
    """Refuse a folder that holds another run (unless ``--overwrite``) or a visible entry that is
    not a run's own regular file (always); return the files to delete before the run starts: the
    run's own only. Hidden entries (``.DS_Store``, ``.git``) are left alone, never deleted."""
    for parent in reversed(folder.parents):
        if parent.exists() and not parent.is_dir():
            raise common.UsageError(f"--output {folder}: {parent} is a file, not a folder")
    if folder.is_symlink():
        raise common.UsageError(f"--output {folder}: is a link; name the folder itself")
    if not folder.exists():
        return []
    if not folder.is_dir():
        raise common.UsageError(f"--output {folder}: exists and is not a folder")
    entries, foreign = [], []  # the run's own files; visible entries of no run (hidden ones aside)
    for entry in sorted(folder.iterdir()):
        if _own_file(entry):
            entries.append(entry)
        elif not entry.name.startswith("."):
            foreign.append(entry.name)
    if foreign:
        raise common.UsageError(f"--output {folder}: holds files of no run ({', '.join(foreign[:3])}); "
                                "refusing to touch them: name another folder")
    runs = [e for e in entries if not e.name.startswith(".")]  # temp files of killed writes aside
    if not runs:
        return entries
    if {e.name for e in runs} == {"train.log"}:  # a run killed before it wrote its config
        return entries
    results = folder / "results.json"
    finished = False
    if results.is_file():
        try:
            finished = json.loads(results.read_text()).get("status") == "finished"
        except (OSError, ValueError, AttributeError, RecursionError):
            finished = False
    if not overwrite:
        if finished:
            raise common.UsageError(f"--output {folder}: holds a finished run; pass --overwrite to replace it")
        if (folder / "last.pt").exists() or (folder / "config.json").exists():
            raise common.UsageError(
                f"--output {folder}: holds an unfinished run; --resume {folder} continues it, --overwrite replaces it"
            )
        raise common.UsageError(f"--output {folder}: not empty; pass --overwrite to replace it")
    return entries


def _check_same_settings(folder: Path, given: TrainConfig, stored: TrainConfig) -> None:
    """config.json is editable, last.pt's settings are the run's: refuse a resume where they differ."""
    changed = changed_settings(given, stored)
    if changed:
        a, b = given.to_dict(), stored.to_dict()
        k = changed[0]
        raise common.UsageError(
            f"--resume {folder / 'config.json'}: {k} = {a.get(k)!r} differs from {b.get(k)!r} in last.pt, the "
            f"settings the run started with ({len(changed)} setting(s) differ); restore config.json, or start a "
            f"new run with the new settings"
        )


def _check_results_belong(path: Path, record: dict[str, Any], checkpoint: Checkpoint) -> None:
    """``results.json`` is rewritten after ``last.pt`` at every epoch, so a resumed run's must hold
    ``last.pt``'s settings and its epoch count, or one fewer (a kill between the two writes):
    another run's file, or a hand-edited one, would lend the resumed run its provenance."""
    config = record.get("config")
    try:
        if not isinstance(config, dict):
            raise TypeError("not a JSON object")
        recorded = TrainConfig.from_dict(config)
    except (TypeError, ValueError, AttributeError) as err:
        raise common.UsageError(f"--resume {path}: its config is not a run's settings ({err})") from None
    changed = changed_settings(recorded, checkpoint.config)
    if changed:
        k = changed[0]
        raise common.UsageError(
            f"--resume {path}: belongs to another run ({k} = {recorded.to_dict().get(k)!r}, last.pt has "
            f"{checkpoint.config.to_dict().get(k)!r}); restore the run's own results.json or delete it"
        )
    epochs, trained = record.get("epochs_run"), checkpoint.epoch + 1
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs not in (trained - 1, trained):
        raise common.UsageError(f"--resume {path}: epochs_run {str(epochs)[:40]!r} does not fit last.pt's "
                                f"{trained} epochs; restore the run's own results.json or delete it")


def _check_same_data(folder: Path, dataset: Any, results: dict[str, Any]) -> None:
    """The data a resumed run reads must be the data it started on: its recorded statistics, and
    its content's SHA-256 (``data_content_sha256``) where the run recorded one (runs since 2026-12-05)."""
    recorded, now = results.get("dataset"), dataset.statistics()
    if isinstance(recorded, dict) and recorded != now:
        first = next(k for k in sorted(set(recorded) | set(now)) if recorded.get(k) != now.get(k))
        raise common.UsageError(
            f"--resume {folder}: the data changed since the run started ({first}: {recorded.get(first)!r} "
            f"recorded in results.json, {now.get(first)!r} now)"
        )
    digest, current = results.get("data_content_sha256"), data_fingerprint(dataset)
    if digest is not None and digest != current:
        raise common.UsageError(
            f"--resume {folder}: the data changed since the run started (same statistics, other content: "
            f"data_content_sha256 {str(digest)[:12]}... recorded in results.json, {current[:12]}... now)"
        )


def _lock_folder(folder: Path) -> IO[str] | None:
    """Hold an exclusive lock on ``folder/train.log`` until the returned file is closed, so that
    two processes never train in one run folder (a second ``--resume`` of a running run, or an
    ``--overwrite`` of it): the second is refused with one line. ``None`` where ``fcntl`` is
    missing (Windows): the run goes on unlocked."""
    try:
        import fcntl
    except ImportError:
        return None
    handle = open(folder / "train.log", "a", encoding="utf-8")  # noqa: SIM115 (held for the whole run)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise common.UsageError(f"{folder}: another process is training in this folder (its train.log is "
                                "locked); wait for it to end, or name another folder") from None
    return handle


def _file_logging(path: Path) -> logging.Handler:
    # (a train.log that is a link was refused in validate(): by --resume, or as no run's own file)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def train(argv: list[str] | None = None, *, stop_after_epochs: int | None = None) -> dict[str, Any]:
    """Parse, validate, prepare, then train; see :func:`main` (this one does not catch errors)."""
    started = time.monotonic()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    deadline = None if args.max_minutes is None else started + 60.0 * args.max_minutes
    common.setup_console_logging(args.quiet)
    shard = _init_distributed(args.device)
    if not shard.main:
        logging.getLogger().setLevel(logging.WARNING)  # rank 0 speaks for the job
    try:
        with common.restored_torch_settings():
            results = _train(argv, args, shard, stop_after_epochs, deadline)
        _barrier(shard)  # every rank leaves together; on an error nobody waits (the others may not come)
        return results
    finally:
        if shard.world > 1:
            import torch.distributed as dist

            # The DDP wrapper and its reducer may sit in reference cycles; free them (and the
            # gloo work objects they hold) now, while the interpreter and the group are alive.
            gc.collect()
            dist.destroy_process_group()


def _init_distributed(device: str) -> Shard:
    """A process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1): gloo on the CPU, NCCL on GPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Shard()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Shard(rank=dist.get_rank(), world=dist.get_world_size())


def _barrier(shard: Shard) -> None:
    if shard.world > 1:
        import torch.distributed as dist

        dist.barrier()


def _train(
    argv: list[str], args: argparse.Namespace, shard: Shard, stop_after_epochs: int | None, deadline: float | None
) -> dict[str, Any]:
    def validate() -> tuple[TrainConfig, Path, torch.device, Any, list[Path], int]:
        device = common.parse_device(args.device)
        if shard.world > 1 and device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        common.set_threads(args.threads)
        if args.resume is not None:
            extra = sorted(k for k in vars(args) if k not in _RESUME_FLAGS and _given(argv, k))
            if extra:
                raise common.UsageError(
                    f"--resume continues a run with its saved settings; drop --{extra[0].replace('_', '-')}"
                )
            folder = Path(args.resume)
            if not folder.is_dir():
                raise common.UsageError(f"--resume {folder}: {'not a folder' if folder.exists() else 'no such folder'} "
                                        "(pass the run folder that train.py --output wrote)")
            for name in _RUN_FILES:  # written in place (the log) or replaced atomically (the others)
                entry = folder / name
                if entry.is_symlink() or (entry.exists() and not entry.is_file()):
                    raise common.UsageError(f"--resume {entry}: not a regular file (a link, a folder or a pipe); "
                                            "a run's files are written only as themselves")
            if not (folder / "config.json").is_file():
                raise common.UsageError(f"--resume {folder}: no run there (config.json missing)")
            saved = _read_json(folder / "config.json", "--resume")
            results = folder / "results.json"
            record = _read_json(results, "--resume") if results.is_file() else None  # read once, checked below
            if record is not None and run_is_over(record):
                how = str(record.get("stopped_by") or "its end").replace("_", " ")
                raise common.UsageError(f"--resume {folder}: the run is finished (stopped by {how}); "
                                        "only a killed run or one cut by --max-minutes goes on")
            try:
                config = TrainConfig.from_dict(saved)
            except (TypeError, ValueError, AttributeError) as err:
                raise common.UsageError(f"--resume {folder / 'config.json'}: not a run's settings ({err})") from err
            try:
                check_config(config)
            except common.UsageError as err:
                raise common.UsageError(f"--resume {folder / 'config.json'}: {err}") from None
            # this call's device and --data-root: a file does not choose where a download is written
            config = dataclasses.replace(config, device=args.device, data_root=args.data_root)
            checkpoint = None
            if record is not None and not (folder / "last.pt").exists():
                # results.json is written after last.pt: an epoch ended, so its state is gone
                raise common.UsageError(f"--resume {folder}: last.pt is missing, so the run cannot go on "
                                        "(a new run needs another folder or --overwrite)")
            if (folder / "last.pt").exists():
                checkpoint = load_checkpoint(folder / "last.pt")  # tensor-only; a bad file stops here
                if not checkpoint.resumable:
                    raise common.UsageError(f"--resume {folder}: last.pt holds no resume state")
                _check_same_settings(folder, config, checkpoint.config)
                check_weights_fit(folder / "last.pt", checkpoint)  # forged sizes: refused before any model
                if record is not None:
                    _check_results_belong(results, record, checkpoint)
            # temp files that a kill inside an atomic write left (the run's own, never its files)
            stale: list[Path] = [e for e in folder.iterdir() if e.name.startswith(".") and _own_file(e)]
            if _given(argv, "eval_batch_size"):
                config = dataclasses.replace(config, eval_batch_size=args.eval_batch_size)
        else:
            checkpoint, record = None, None
            config = config_from_args(args)
            folder = Path(args.output or f"runs/{dataset_label(config.data)}-{config.preset}-{config.loss}-s{config.seed}")
            stale = _check_folder(folder, args.overwrite)
        if config.data is not None:
            resolve_data_path(config.data, config.data_root)  # a missing file fails here, before any folder
        dataset = load_dataset(config)
        if dataset.num_users < 1:
            raise common.UsageError(f"--data {config.data}: no users")
        if not bool((dataset.lengths >= MIN_TRAINING_LENGTH).any()):
            raise common.UsageError(
                f"--data {config.data}: no user has an item to train on; leave-one-out keeps each user's last "
                f"two items for validation and test, so a user needs at least {MIN_TRAINING_LENGTH} items"
            )
        if args.resume is not None and checkpoint is not None:  # the data file may have changed since
            check_compatible(checkpoint.num_items, checkpoint.item_ids, dataset, f"{folder / 'last.pt'}",
                             str(config.data or "(generated data)"))
            if record is not None:
                _check_same_data(folder, dataset, record)
        return config, folder, device, dataset, stale, 0 if checkpoint is None else checkpoint.epoch + 1

    config, folder, device, dataset, stale, resumed_after = common.run_guarded(
        validate, debug=args.debug, prog="train.py"
    )
    _barrier(shard)  # every rank has validated before rank 0 touches the folder
    created = args.resume is None and (not folder.exists() or bool(stale))  # a resumed run's folder is never removed
    files = RunFiles(folder)
    handler: logging.Handler | None = None
    lock: IO[str] | None = None
    if shard.main:
        folder.mkdir(parents=True, exist_ok=True)
        lock = common.run_guarded(lambda: _lock_folder(folder), debug=args.debug, prog="train.py")
        for path in stale:  # the run's own files only (--overwrite, and every argument is valid)
            if path.name == "train.log":
                os.truncate(path, 0)  # the locked file itself
            else:
                path.unlink(missing_ok=True)
        handler = _file_logging(folder / "train.log")
    try:
        if args.resume is None and shard.main:
            atomic_write_text(files.config, json.dumps(config.to_dict(), indent=1) + "\n")
        _barrier(shard)
        LOG.info("run folder %s; data: %s", folder, json.dumps(dataset.statistics()))
        data = prepare(dataset, config, device)
        LOG.info("head users: %d of %d", int(data.heads.sum()), data.num_users)
        launcher = f"torchrun --nproc_per_node {shard.world}" if shard.world > 1 else "python"
        command = f"{launcher} examples/s4rec/train.py" + (" " + shlex.join(argv) if argv else "")
        fingerprint = data_fingerprint(dataset)
        provenance = {"git_commit": git_commit(), "command": command, "data_content_sha256": fingerprint,
                      "machine": machine(device),
                      "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "flush_denormal": common.flushes_denormals(), "freed_memory_kept": common.keep_freed_memory()}
        if args.resume is not None:
            old = files.results
            if old.is_file():
                first = _read_json(old, "--resume")
                earlier = first.get("resumes")
                resume = {"command": command, "git_commit": provenance["git_commit"],
                          "machine": provenance["machine"], "after_epochs": resumed_after}
                provenance = {**{k: first[k] for k in provenance if k in first}, "resumed_with": command,
                              "resumed_git_commit": provenance["git_commit"],
                              "resumes": [*(earlier if isinstance(earlier, list) else []), resume]}
        try:
            results = run_training(
                config, data, files, device=device, resume=args.resume is not None,
                progress=common.show_progress(args.quiet), stop_after_epochs=stop_after_epochs,
                results_extra=lambda: provenance, shard=shard, deadline=deadline, data_content_sha256=fingerprint,
            )
        except CheckpointError as err:  # last.pt read back on --resume: one line, as the other file errors
            if args.debug:
                raise
            print(f"train.py: error: {err}", file=sys.stderr)
            raise SystemExit(common.EXIT_USAGE) from None
    except BaseException:
        if shard.main and created and not files.last.exists():
            _remove_run(folder)  # a run that failed before its first epoch leaves nothing
        raise
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()
        if lock is not None:
            lock.close()  # releases the folder
    if results["status"] == "finished":
        print(f"\n{config.preset} ({config.loss}) on {dataset_label(config.data)}: best epoch {results['best_epoch']}, "
              f"stopped by {results['stopped_by'].replace('_', ' ')} after {results['epochs_run']} epochs, "
              f"{results['seconds_per_epoch']:.1f} s/epoch")
        print(format_table({"valid": results["valid"], "test": results["test"]}))
        print(f"results: {files.results}")
    return results


def _read_json(path: Path, flag: str) -> dict[str, Any]:
    """A run file's JSON object; anything else is a one-line usage error that names the file."""
    value = common.read_json(path, flag)
    if not isinstance(value, dict):
        raise common.UsageError(f"{flag} {path}: expected a JSON object, found {type(value).__name__}")
    return value


def _given(argv: list[str], name: str) -> bool:
    flag = "--" + name.replace("_", "-")
    return any(a == flag or a.startswith(flag + "=") or a == "--no-" + flag[2:] for a in argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``train.py``: bad arguments give one line on stderr and exit status 2.

    Under ``torchrun --nproc_per_node N`` the processes share every global batch (see
    :mod:`s4rec_example.loop`); only rank 0 writes the run folder.

    Ctrl-C (and SIGTERM, which ``train.py`` turns into the same interruption) gives one line and
    exit status 130 (143 for SIGTERM): the folder keeps the last finished epoch, which
    ``--resume`` continues; a run stopped before its first epoch leaves no folder.
    """
    try:
        return train(argv)
    except KeyboardInterrupt as stop:
        print("train.py: interrupted; a run with a finished epoch goes on with --resume <its folder> "
              "(one stopped before its first epoch left nothing)", file=sys.stderr)
        raise SystemExit(getattr(stop, "exit_status", 130)) from None


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds as Ctrl-C does (exit status 143)."""

    exit_status = 143


def raise_on_sigterm(signum: int, frame: object) -> None:
    """A ``signal.signal`` handler for SIGTERM: raise :class:`Terminated`."""
    raise Terminated()

