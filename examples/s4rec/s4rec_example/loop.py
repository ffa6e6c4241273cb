"""The training loop: epochs, validation every N epochs, early stopping, checkpoints, the test.

Sync-free by construction: the first step runs with the library's value checks on, then
``s4rec_components.set_validate_args(False)`` turns them off for the rest of the loop (and
the previous setting is restored at the end); losses are summed on the device and read once
per epoch. The ``ce`` loss picks the real positions by a boolean index on the CPU only; on a
GPU it weighs all b*l rows instead (``S4RecModel(ce_rows=...)``), so it reads nothing there.

Under ``torchrun`` (a :class:`Shard` with ``world > 1``) every process draws the same epoch
permutation from a generator seeded alike on all ranks and trains on its slice
``batch[rank::world]`` of every global batch, in a ``DistributedDataParallel`` model whose
contrastive negatives and Sinkhorn marginals span all ranks; k-means and validation run on
every rank alike (so every rank takes the same early-stopping decision), and only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

import s4rec_components
from s4rec_components import RankingResult, validate_args_enabled

from .checkpoint import (
    Checkpoint,
    CheckpointError,
    atomic_write_text,
    changed_settings,
    check_plain_tensor,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from .cli_common import is_finite_number
from .config import TrainConfig
from .data import TrainData
from .evaluate import METRIC_KEYS, round_metrics, score_split
from .intents import fit_intents, intent_centroid_shape
from .model import Intents, S4RecModel, build_model

__all__ = [
    "STOP_REASONS",
    "RunFiles",
    "RunState",
    "Shard",
    "evaluate_split",
    "fused_adam_devices",
    "make_optimizer",
    "run_is_over",
    "run_training",
    "train_epoch",
]

LOG = logging.getLogger("s4rec.train")
SELECTION_METRIC = "NDCG@20"
STOP_REASONS = ("early_stopping", "max_epochs", "time_budget")
"""Values of ``results.json``'s ``"stopped_by"``: patience ran out, the epoch cap was reached, or
the wall-clock budget of the call (``--max-minutes``) was exceeded (the run did not converge)."""


def run_is_over(record: Mapping[str, Any]) -> bool:
    """Whether a ``results.json`` record ends its run for good: finished, and not by the time
    budget (``--resume`` trains a budget-cut run on; a killed one says ``"running"``)."""
    return record.get("status") == "finished" and record.get("stopped_by") != "time_budget"


@dataclass(frozen=True)
class Shard:
    """This process's place in a ``torchrun`` job (``world == 1``: a plain single-process run)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


@dataclass
class RunState:
    """Where a run stands; stored (as JSON) in ``last.pt`` for resuming."""

    epoch: int = 0  # next epoch to run
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = float("-inf")
    best_valid: dict[str, float] | None = None
    stopped_early: bool = False
    world_size: int = 1
    stopped_by: str | None = None  # one of STOP_REASONS once the run has stopped
    data_content_sha256: str | None = None  # the data the run trains on (data_fingerprint); None before 2026-12-06

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["best_score"] = None if self.best_epoch < 0 else self.best_score
        return values

    @classmethod
    def from_dict(cls, values: object) -> RunState:
        """The state that :meth:`to_dict` wrote, checked field by field and for consistency (one
        history record per epoch run; the best epoch's record holds the best metrics), so that a
        forged or damaged ``last.pt`` is one ``ValueError`` instead of a traceback later on.

        Raises:
            ValueError: naming the first field that is not as :meth:`to_dict` writes it.
        """
        if not isinstance(values, dict):
            raise ValueError(f"the run state must be a JSON object, got {type(values).__name__}")
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown run-state field {unknown[0][:40]!r}")
        state = cls(**{**values, "best_score": float("-inf")})

        def bad(name: str) -> ValueError:
            return ValueError(f"run-state field {name} = {str(values.get(name))[:60]!r} is not what a run writes")

        def count(value: object, minimum: int) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= minimum

        if not count(state.epoch, 0):
            raise bad("epoch")
        if not (isinstance(state.history, list) and len(state.history) == state.epoch):
            raise ValueError(f"run-state history must be a list of one record per epoch run ({state.epoch})")
        for i, record in enumerate(state.history):
            _check_record(record, i)
        if not count(state.world_size, 1):
            raise bad("world_size")
        if not isinstance(state.stopped_early, bool):
            raise bad("stopped_early")
        if state.stopped_by is not None and state.stopped_by not in STOP_REASONS:
            raise bad("stopped_by")
        if state.data_content_sha256 is not None and not (
            isinstance(state.data_content_sha256, str) and len(state.data_content_sha256) == 64
        ):
            raise bad("data_content_sha256")
        if not count(state.best_epoch, -1) or state.best_epoch >= state.epoch:
            raise bad("best_epoch")
        if state.best_epoch < 0:
            if state.best_valid is not None or values.get("best_score") is not None:
                raise bad("best_valid")
            return state
        valid = state.history[state.best_epoch].get("valid")
        if valid is None or state.best_valid != valid:
            raise ValueError(f"run-state best_valid is not the validation of the best epoch {state.best_epoch}")
        score = values.get("best_score")
        if not (isinstance(score, float) and score == valid[SELECTION_METRIC]):
            raise bad("best_score")
        state.best_score = score
        return state


def _check_record(record: object, epoch: int) -> None:
    """One epoch's record of the history as the loop writes it: its epoch, finite seconds, a
    dict of finite losses, and (when validated) a finite value for every metric."""
    def metrics(value: object, keys: tuple[str, ...] | None) -> bool:
        return (isinstance(value, dict) and all(isinstance(k, str) and is_finite_number(v) for k, v in value.items())
                and (keys is None or set(value) == set(keys)))

    if not isinstance(record, dict) or record.get("epoch") != epoch:
        raise ValueError(f"run-state history record {epoch} is not that epoch's record")
    seconds = [k for k in ("train_seconds", "eval_seconds", "kmeans_seconds") if k in record]
    problems = [
        "train_seconds" not in record or not all(is_finite_number(record[k]) and record[k] >= 0 for k in seconds),
        not metrics(record.get("losses"), None),
        "valid" in record and not metrics(record["valid"], METRIC_KEYS),
        bool(set(record) - {"epoch", "losses", "valid", *seconds}),
    ]
    if any(problems):
        what = ("seconds", "losses", "valid metrics", "fields")[problems.index(True)]
        raise ValueError(f"run-state history record {epoch}: its {what} are not what a run writes")


@dataclass
class RunFiles:
    """The files of a run folder; every write is atomic."""

    folder: Path

    @property
    def best(self) -> Path:
        return self.folder / "best.pt"

    @property
    def last(self) -> Path:
        return self.folder / "last.pt"

    @property
    def results(self) -> Path:
        return self.folder / "results.json"

    @property
    def config(self) -> Path:
        return self.folder / "config.json"

    def write_results(self, results: dict[str, Any]) -> None:
        atomic_write_text(self.results, json.dumps(results, indent=1) + "\n")


def _clock() -> float:
    return time.monotonic()


def _agree(flag: bool, shard: Shard, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every rank (a plain run: ``flag``)."""
    if shard.world == 1:
        return flag
    import torch.distributed as dist

    value = torch.tensor([int(flag)], device=device)
    dist.broadcast(value, 0)
    return bool(value.item())


def _rng_state(
    generator: torch.Generator, device: torch.device, shard: Shard, order_generator: torch.Generator | None
) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    if shard.world == 1:
        return state
    import torch.distributed as dist

    gathered: list[dict[str, torch.Tensor] | None] = [None] * shard.world
    dist.all_gather_object(gathered, {k: v.cpu() for k, v in state.items()})
    merged = {f"{key}.r{r}" if r else key: value for r, part in enumerate(gathered) if part for key, value in part.items()}
    assert order_generator is not None
    merged["order"] = order_generator.get_state()
    return merged


def _restore_rng(
    rng: dict[str, torch.Tensor],
    generator: torch.Generator,
    device: torch.device,
    shard: Shard,
    order_generator: torch.Generator | None,
) -> None:
    suffix = f".r{shard.rank}" if shard.rank else ""
    torch.set_rng_state(rng["torch" + suffix].cpu())
    generator.set_state(rng["generator" + suffix].cpu())
    if device.type == "cuda" and "cuda" + suffix in rng:
        torch.cuda.set_rng_state(rng["cuda" + suffix].cpu(), device)
    if order_generator is not None:
        order_generator.set_state(rng["order"].cpu())


def fused_adam_devices() -> frozenset[str]:
    """Device types whose parameters torch's fused Adam takes: CUDA, and the CPU since torch 2.4."""
    since_2_4 = torch.torch_version.TorchVersion(torch.__version__) >= "2.4"  # compares versions, not text
    return frozenset({"cuda", "cpu"} if since_2_4 else {"cuda"})


def make_optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """Adam, with torch's fused kernel where it exists for ``device`` (:func:`fused_adam_devices`).

    On a GPU the fused step reads nothing back to the host (the default implementation reads
    every parameter's step count with ``.item()``); on the CPU it is about 9x faster than the
    default ``foreach`` step (0.48 against 4.3 ms for the 1-layer Beauty model, one thread). Other
    devices, and the CPU before torch 2.4, keep torch's default.
    """
    fused = device.type in fused_adam_devices()
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=fused or None)


def _saved_optimizer_state(optimizer: torch.optim.Optimizer, saved: object, names: list[str]) -> dict[str, Any]:
    """``saved`` (an Adam ``state_dict`` read from ``last.pt``) checked against ``optimizer``'s
    parameters, with ``optimizer``'s own settings (from this run's config) in place of the saved ones.

    ``Optimizer.load_state_dict`` trusts the file: a moment of the wrong shape crashes the fused
    kernel (an out-of-bounds write), and saved ``param_groups`` would silently replace the
    learning rate and weight decay that the config says. So every state entry must be Adam's
    ``step`` (a finite scalar >= 0) and two finite moments of its parameter's shape and dtype
    (the second >= 0), dense and contiguous (the fused kernel writes them in place), and only the
    state is taken from the file. ``names`` are the parameters' names, in ``optimizer``'s order,
    for the messages.

    Raises:
        ValueError: naming the first entry that does not fit.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state = saved.get("state") if isinstance(saved, dict) else None
    if not isinstance(state, dict):
        raise ValueError("optimizer state must be a state_dict with a 'state' mapping")
    for key, entry in state.items():
        if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key < len(params):
            raise ValueError(f"optimizer state names parameter {str(key)[:20]!r}; the model has {len(params)}")
        param, name = params[key], names[key]
        if not isinstance(entry, dict) or set(entry) != {"step", "exp_avg", "exp_avg_sq"}:
            raise ValueError(f"optimizer state of {name} is not Adam's (step, exp_avg, exp_avg_sq)")
        step = check_plain_tensor(entry["step"], f"optimizer step of {name}")  # dense, with values, finite
        if not (step.ndim == 0 and step.is_floating_point() and float(step) >= 0):
            raise ValueError(f"optimizer step of {name} must be a finite float scalar >= 0")
        for moment_name in ("exp_avg", "exp_avg_sq"):
            label = f"optimizer {moment_name} of {name}"
            moment = check_plain_tensor(entry[moment_name], label)
            if moment.shape != param.shape or moment.dtype != param.dtype:
                raise ValueError(f"{label}: {(tuple(moment.shape), moment.dtype)} in the file, "
                                 f"{(tuple(param.shape), param.dtype)} expected")
            if not moment.is_contiguous():  # the fused kernel writes it in place, past a stride-0 storage
                raise ValueError(f"{label} must be a contiguous tensor (strides {moment.stride()})")
            if moment_name == "exp_avg_sq" and bool((moment < 0).any()):
                raise ValueError(f"{label} holds values Adam cannot have (negative)")
    return {"state": state, "param_groups": optimizer.state_dict()["param_groups"]}


def _autocast(config: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The training forward's precision: bfloat16 autocast for ``amp == "bf16"``, else nothing
    (``torch.autocast(enabled=False)`` would still refuse device types it does not know)."""
    if config.amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: TrainData,
    config: TrainConfig,
    generator: torch.Generator,
    intents: Intents | None,
    *,
    progress: bool = False,
    description: str = "",
    shard: Shard = Shard(),
    order_generator: torch.Generator | None = None,
) -> dict[str, float]:
    """One pass over the users in a random order; returns the mean of every loss term.

    With ``config.amp == "bf16"`` the forward runs under ``torch.autocast(bfloat16)``: the
    encoder's matmuls and some inside the losses (the contrastive similarities, the clustering
    scores) run in bfloat16, and every returned loss term is float32. Backward and the optimizer
    step run outside the context, as autocast expects.

    ``model`` is the :class:`S4RecModel` or its ``DistributedDataParallel`` wrapper; with a
    :class:`Shard` of ``world > 1`` this process trains on ``batch[rank::world]`` of every global
    batch (a last global batch smaller than ``world`` is dropped), the order coming from
    ``order_generator`` (seeded alike on every rank).
    """
    model.train()
    split = data.split
    users = split.num_users
    steps = (users + config.batch_size - 1) // config.batch_size
    if shard.world > 1 and users - (steps - 1) * config.batch_size < shard.world:
        steps -= 1
    order = torch.randperm(users, device=split.device, generator=order_generator or generator)
    sums: dict[str, torch.Tensor] = {}
    iterator: Any = range(steps)
    if progress:
        try:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, total=steps, desc=description, leave=False, dynamic_ncols=True)
        except ImportError:  # tqdm is an optional extra
            pass
    validated = False
    previous = validate_args_enabled()
    try:
        for step in iterator:
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            if shard.world > 1:
                idx = idx[shard.rank :: shard.world]
            inputs = split.train_inputs[idx]
            negatives = data.sampler(idx, inputs.shape[1], generator) if config.loss == "bce" else None
            with _autocast(config, inputs.device):
                terms = model(
                    inputs,
                    split.train_targets[idx],
                    negatives=negatives,
                    head_labels=data.heads[idx],
                    intents=intents,
                    generator=generator,
                )
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            for key, value in terms.items():  # summed on the device, read once per epoch
                detached = value.detach()
                sums[key] = sums[key] + detached if key in sums else detached
            if not validated:  # the first step ran with the value checks; the rest run without
                s4rec_components.set_validate_args(False)
                validated = True
    finally:
        s4rec_components.set_validate_args(previous)
    if shard.world > 1:  # the mean over ranks, one collective per epoch
        import torch.distributed as dist

        keys = list(sums)  # the same order on every rank (the model adds terms in a fixed order)
        stacked = torch.stack([sums[k].float() for k in keys])
        dist.all_reduce(stacked)
        sums = dict(zip(keys, stacked / shard.world))
    return {key: float(value) / steps for key, value in sums.items()}


def evaluate_split(
    model: S4RecModel, data: TrainData, which: str, config: TrainConfig, progress: bool
) -> RankingResult:
    """Full ranking of the ``valid`` or ``test`` split with the last position's output."""
    return score_split(model.encoder, data.split, which, batch_size=config.eval_batch_size, progress=progress)  # type: ignore[arg-type]


def _check_best_belongs(path: Path, best: Checkpoint, config: TrainConfig, data: TrainData, state: RunState) -> None:
    """Refuse a ``best.pt`` of another run: other settings or items, or an epoch the run's state
    cannot have written (``best.pt`` is written before ``last.pt``, so its epoch lies between the
    state's best epoch and its last)."""
    changed = changed_settings(config, best.config)
    if changed:
        raise CheckpointError(f"{path}: not this run's best model ({changed[0]} = {best.config.to_dict()[changed[0]]!r} "
                              f"in it, {config.to_dict()[changed[0]]!r} in the run)")
    if best.num_items != data.num_items or best.item_ids != getattr(data.dataset, "item_ids", None):
        raise CheckpointError(f"{path}: not this run's best model (other items)")
    if not state.best_epoch <= best.epoch <= state.epoch:
        raise CheckpointError(f"{path}: not this run's best model (epoch {best.epoch}; the run's best is "
                              f"{state.best_epoch} of {state.epoch} epochs)")


def run_training(
    config: TrainConfig,
    data: TrainData,
    files: RunFiles,
    *,
    device: torch.device,
    resume: bool = False,
    progress: bool = False,
    stop_after_epochs: int | None = None,
    results_extra: Callable[[], dict[str, Any]] | None = None,
    shard: Shard = Shard(),
    deadline: float | None = None,
    data_content_sha256: str | None = None,
) -> dict[str, Any]:
    """Train ``config`` on ``data`` into ``files`` (resuming from ``last.pt``), then test the best model.

    ``data_content_sha256`` (``data_fingerprint`` of the data) is stored in ``last.pt``; a resume
    from a ``last.pt`` that recorded another one is refused (``CheckpointError``), whether or not
    ``results.json`` survived. ``best.pt`` is tested only if it belongs to the run: the same
    settings (but for :data:`~s4rec_example.checkpoint.MAY_DIFFER_ON_RESUME`), items and an epoch
    between the state's best and its last.

    ``stop_after_epochs`` returns after that many epochs of this call without testing (an
    interruption, for tests). ``deadline`` (a :func:`time.monotonic` value; ``--max-minutes``)
    ends training after the epoch during which it passes: that epoch is validated, the best
    checkpoint tested and ``"stopped_by"`` is ``"time_budget"``. Resuming such a run trains on
    from its last epoch under this call's deadline (the cut epoch was validated off the
    ``eval_every`` schedule; otherwise the run goes as if it had never stopped). A resumed run
    whose deadline has already passed trains no further epoch when it has a best checkpoint
    (``--max-minutes 0`` finishes a killed run as it stands). Returns the content of
    ``results.json`` (on ranks other than 0 of a ``torchrun`` job: ``{"status": "worker"}``).
    """
    torch.manual_seed(config.seed)
    model = build_model(config, data.num_items, distributed=shard.world > 1).to(device)
    net: torch.nn.Module = model
    order_generator = None
    generator = torch.Generator(device=device).manual_seed(config.seed)
    if shard.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        order_generator = torch.Generator(device=device).manual_seed(config.seed)
        generator.manual_seed(config.seed + 1_000_003 * (shard.rank + 1))  # per-rank views and negatives
    optimizer = make_optimizer(model, config, device)
    state = RunState(world_size=shard.world, data_content_sha256=data_content_sha256)
    item_ids = getattr(data.dataset, "item_ids", None)
    warm_centroids: torch.Tensor | None = None  # the last epoch's k-means centroids (kmeans_warm_start)
    if resume and files.last.exists():
        checkpoint = load_checkpoint(files.last, map_location=device)
        if not checkpoint.resumable:
            raise ValueError(f"{files.last} holds no resume state")
        try:  # a damaged or forged resume state is one error naming the file
            state = RunState.from_dict(checkpoint.state)
            if state.world_size != shard.world:
                raise ValueError(f"written by {state.world_size} process(es), this job has {shard.world}")
            if data_content_sha256 is not None and state.data_content_sha256 not in (None, data_content_sha256):
                raise ValueError(f"it was trained on other data (data_content_sha256 "
                                 f"{state.data_content_sha256[:12]}..., the data now {data_content_sha256[:12]}...)")
            model.load_state_dict(checkpoint.model)
            optimizer.load_state_dict(_saved_optimizer_state(optimizer, checkpoint.optimizer,
                                                             [n for n, _ in model.named_parameters()]))
            state.data_content_sha256 = state.data_content_sha256 or data_content_sha256
            _restore_rng(checkpoint.rng, generator, device, shard, order_generator)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError, OverflowError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise CheckpointError(f"{files.last}: cannot resume from it ({type(err).__name__}: {first[:200]})") from None
        if files.best.is_file():  # another run's best.pt: refused now, not after the training (every rank alike)
            _check_best_belongs(files.best, load_checkpoint(files.best), config, data, state)
        elif state.best_epoch >= 0:  # best.pt is written before the last.pt that records its epoch
            raise CheckpointError(f"{files.best}: missing or not a regular file, but last.pt records a best model "
                                  f"(epoch {state.best_epoch}); the run cannot be tested without it")
        if config.kmeans_warm_start and checkpoint.intent_centroids is not None:
            shape = intent_centroid_shape(config, data.split.train_inputs.shape[0])
            if tuple(checkpoint.intent_centroids.shape) != shape:
                raise CheckpointError(f"{files.last}: intent_centroids of shape "
                                      f"{tuple(checkpoint.intent_centroids.shape)}, this run's k-means has {shape}")
            warm_centroids = checkpoint.intent_centroids.to(device)
        LOG.info("resumed from %s at epoch %d", files.last, state.epoch)
        if state.stopped_by == "time_budget":  # an earlier call's budget ended it; this call trains on
            state.stopped_by = None
            LOG.info("the run was cut by its time budget after epoch %d; training goes on", state.epoch - 1)

    epochs = config.resolved_epochs
    extra = results_extra or (lambda: {})

    def results(status: str, test: dict[str, float] | None = None) -> dict[str, Any]:
        trained = [h["train_seconds"] for h in state.history]
        out: dict[str, Any] = {
            "status": status,
            "config": config.to_dict(),
            **extra(),
            "dataset": data.dataset.statistics(),
            "device": str(device),
            "epoch_cap": epochs,
            "epochs_run": len(state.history),
            "stopped_early": state.stopped_early,
            "stopped_by": state.stopped_by,
            "best_epoch": state.best_epoch,
            "valid": state.best_valid,
            "test": test,
            "seconds_per_epoch": sum(trained) / max(len(trained), 1),
            "total_seconds": sum(h["train_seconds"] + h.get("eval_seconds", 0.0) + h.get("kmeans_seconds", 0.0)
                                 for h in state.history),
            "history": state.history,
        }
        return out

    def out_of_time() -> bool:  # rank 0's clock decides for every rank (one broadcast per epoch)
        return deadline is not None and _agree(_clock() >= deadline, shard, device)

    done = 0
    while state.epoch < epochs and state.stopped_by is None and not state.stopped_early:
        if stop_after_epochs is not None and done >= stop_after_epochs:
            return results("interrupted")
        if state.best_epoch >= 0 and out_of_time():  # e.g. --resume DIR --max-minutes 0
            state.stopped_by = "time_budget"
            break
        epoch = state.epoch
        record: dict[str, Any] = {"epoch": epoch}
        intents = None
        if model.uses_intents:
            t0 = time.perf_counter()
            intents = fit_intents(
                model,
                data.split.train_inputs,
                num_intents=config.num_intents,
                num_iters=config.kmeans_iters,
                num_redo=config.kmeans_redo,
                seed=config.seed,
                batch_size=config.eval_batch_size,
                init=warm_centroids,
            )
            if config.kmeans_warm_start:
                warm_centroids = intents.kmeans.centroids
            record["kmeans_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        record["losses"] = train_epoch(
            net, optimizer, data, config, generator, intents, progress=progress and shard.main,
            description=f"epoch {epoch}", shard=shard, order_generator=order_generator,
        )
        record["train_seconds"] = time.perf_counter() - t0
        timed_out = out_of_time()
        validate = (epoch + 1) % config.eval_every == 0 or epoch + 1 == epochs or timed_out
        line = f"epoch {epoch} | " + " ".join(f"{k} {v:.4f}" for k, v in record["losses"].items())
        if validate:
            t0 = time.perf_counter()
            valid = round_metrics(evaluate_split(model, data, "valid", config, progress).metrics)
            record["eval_seconds"] = time.perf_counter() - t0
            record["valid"] = valid
            improved = valid[SELECTION_METRIC] > state.best_score
            if improved:
                state.best_epoch, state.best_score, state.best_valid = epoch, valid[SELECTION_METRIC], valid
                if shard.main:
                    save_checkpoint(files.best, model, config, epoch=epoch, item_ids=item_ids)
            if epoch - state.best_epoch >= config.patience:
                state.stopped_early = True
                state.stopped_by = "early_stopping"
            line += (f" | valid HR@20 {valid['HR@20']:.4f} NDCG@20 {valid['NDCG@20']:.4f}{' *' if improved else ''}"
                     f" | {record['train_seconds']:.1f}s + {record['eval_seconds']:.1f}s")
        else:
            line += f" | {record['train_seconds']:.1f}s"
        if "kmeans_seconds" in record:
            line += f" (k-means {record['kmeans_seconds']:.1f}s)"
        LOG.info(line)
        state.history.append(record)
        state.epoch = epoch + 1
        if state.stopped_by is None and state.epoch >= epochs:
            state.stopped_by = "max_epochs"
        elif state.stopped_by is None and timed_out:
            state.stopped_by = "time_budget"
            LOG.info("stopped by the time budget after epoch %d (not converged)", epoch)
        rng = _rng_state(generator, device, shard, order_generator)  # a collective under torchrun
        if shard.main:
            save_checkpoint(
                files.last, model, config, epoch=epoch, item_ids=item_ids, optimizer=optimizer,
                rng=rng, state=state.to_dict(), intent_centroids=warm_centroids,
            )
            files.write_results(results("running"))
        done += 1

    if state.best_epoch < 0:
        raise RuntimeError("no validation ran, so there is no best model to test")
    if state.stopped_by is None:  # a run stopped before this code recorded why
        state.stopped_by = "early_stopping" if state.stopped_early else "max_epochs"
    if not shard.main:
        return {"status": "worker"}
    best_model, best_checkpoint = load_model(files.best, device)
    _check_best_belongs(files.best, best_checkpoint, config, data, state)
    if best_checkpoint.epoch != state.best_epoch:
        # killed between writing best.pt and last.pt, then finished without retraining the epoch:
        # best.pt is the newer, better model; its valid metrics are recomputed (deterministic)
        LOG.warning("best.pt is from epoch %d, last.pt's state says %d: using best.pt",
                    best_checkpoint.epoch, state.best_epoch)
        state.best_epoch = best_checkpoint.epoch
        state.best_valid = round_metrics(evaluate_split(best_model, data, "valid", config, progress).metrics)
        state.best_score = state.best_valid[SELECTION_METRIC]
    test = evaluate_split(best_model, data, "test", config, progress)
    final = results("finished", round_metrics(test.metrics))
    files.write_results(final)
    LOG.info("test: %s", json.dumps(final["test"]))
    return final
