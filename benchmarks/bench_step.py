"""Time the example's training step against a plain PyTorch SASRec, and ranking against a plain loop.

Run from the repository root (issue 8)::

    python benchmarks/bench_step.py [--device cpu|cuda] [--threads N] [--batch-size 512]
                                    [--compile] [--amp bf16] [--quick] [--epoch]
                                    [--reps R] [--output FILE.json]

**Step.** One training step of the reference example (``examples/s4rec/s4rec_example``, built
with its own ``build_model`` from a preset) = forward (augmentation and every loss term the
preset switches on) + backward + ``Adam.step``, for the presets ``sasrec``, ``cl4srec`` and
``s4rec`` with ``--loss bce`` and ``ce``, with ``s4rec_components.set_validate_args(False)``
as in the example's training loop. Two configurations: the presets' own (1 layer) at
``--batch-size``, and issue 8's "2 layers, B = 512". Everything else is the example's Beauty
setting: L = 50, d = 64, 2 heads, dropout 0.5. Batches are users of ``../shared/data/Beauty.txt``
(22,363 users, 12,101 items) when that file exists, else generated data of the same size and
length distribution (``generate_synthetic``, 5 + ~3.9 items per user). The negatives of
``bce`` are drawn beforehand by the example's sampler (its time is its own row).

Baselines written here, with the same sizes:

- ``plain sasrec``: embedding + positions, ``scaled_dot_product_attention`` with boolean causal
  and padding masks, post-LN blocks with a GELU feed-forward, BCE with one negative per position
  (``bce``) or the full softmax over the real positions (``ce``), Adam (fused on the CPU and a
  GPU, as the example's ``make_optimizer``);
- ``plain ranking loop``: matmul, ``-inf`` scatter of the history and the padding column, then
  ``(scores > target).sum(1)``, against ``evaluate_ranking`` on the same precomputed scores
  (Beauty's validation users, random 64-dimensional user and item vectors).

Contestants are timed **interleaved** (one step of each in turn, the order rotating every
repetition) after warm-up, and medians are reported, so a shared machine's load hits all of
them alike; the load average and each step's CPU time (all threads) are recorded. Peak memory
is measured on one extra step each, after the timing:
``torch.cuda.max_memory_allocated`` on a GPU, or on the CPU the rise of the process's peak
RSS (``VmHWM``, reset through ``/proc/self/clear_refs``, after ``malloc_trim`` handed freed
heap pages back) over its RSS before the step.

On ``cuda`` every timing is bracketed by ``torch.cuda.synchronize``; ``--compile`` wraps the
models (ours and the plain one) in ``torch.compile`` (the example's two augmented views are then
drawn eagerly and handed to the compiled forward, which traces as one graph; drawing them
inside breaks the graph at each draw from the explicit generator); ``--amp bf16`` runs their forward under
``torch.autocast(dtype=torch.bfloat16)``.

``--epoch`` instead times full Beauty training epochs through the example's own loop
(``s4rec_example.loop.train_epoch``, each preset's own batch: 512 for ``s4rec``, 256 for
``sasrec``; ``s4rec`` ran at 256 until 2026-12-05): ``s4rec`` bce and ``sasrec`` ce,
interleaved. Targets on 2 CPU threads: <= 8 s and <= 10 s.

The last line printed is one JSON object: the ratios ``sasrec_vs_plain``, ``s4rec_vs_sasrec``,
``eval_vs_plain_loop`` and the absolute milliseconds. ``--output`` also writes everything
(command, git commit, machine, threads, load average, every row) to a JSON file, e.g.
``docs/results/bench-cpu-<date>.json``.

CPU note: torch's libgomp workers spin-wait; with 2 threads on a machine whose other core is
busy, steps get 13-56x slower. On a shared machine run with ``OMP_WAIT_POLICY=PASSIVE`` in the
environment (it must be set before Python starts) or ``--threads 1``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _memory import git_commit, load_average, machine, peak_memory_mib, synchronize  # noqa: E402  (benchmarks/ is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "s4rec"))

import s4rec_components  # noqa: E402
from s4rec_components import (  # noqa: E402
    Ragged,
    evaluate_ranking,
    generate_synthetic,
    load_sequences,
    ranking_metrics,
)
from s4rec_example.cli_common import restored_torch_settings  # noqa: E402
from s4rec_example.config import TrainConfig  # noqa: E402
from s4rec_example.data import TrainData, prepare  # noqa: E402
from s4rec_example.loop import make_optimizer  # noqa: E402
from s4rec_example.model import build_model  # noqa: E402

BEAUTY = ROOT.parent / "shared" / "data" / "Beauty.txt"
MAX_LEN = 50
HIDDEN = 64
HEADS = 2
DROPOUT = 0.5
LR = 1e-3
PRESETS = ("sasrec", "cl4srec", "s4rec")
LOSSES = ("bce", "ce")
NUM_BATCHES = 8  # distinct batches cycled through by the timed steps
EVAL_BATCH = 1024


# ------------------------------------------------------------------------------ measurement






@dataclass
class Contestant:
    """Something timed: ``step()`` runs one unit of work (one training step, one ranking pass)."""

    name: str
    step: Callable[[], Any]
    times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)
    peak_mib: float = float("nan")

    def row(self) -> dict[str, Any]:
        ms = [t * 1000 for t in self.times]
        return {
            "name": self.name,
            "median_ms": round(statistics.median(ms), 3),
            "median_cpu_ms": round(statistics.median(self.cpu_times) * 1000, 3),
            "min_ms": round(min(ms), 3),
            "max_ms": round(max(ms), 3),
            "reps": len(ms),
            "peak_mib": None if math.isnan(self.peak_mib) else round(self.peak_mib, 1),
        }


def run_interleaved(
    contestants: list[Contestant], *, warmup: int, reps: int, device: torch.device, memory: bool = True
) -> None:
    """Warm every contestant up, then time ``reps`` rounds, one step each, the order rotating.

    Records wall time and the process's CPU time (all threads): on a loaded machine the wall
    time includes waiting for a core, the CPU time does not (with 1 thread it is about the
    idle machine's wall time). Then one more step each for the peak memory (``memory``).
    """
    for c in contestants:
        for _ in range(warmup):
            c.step()
    synchronize(device)
    for r in range(reps):
        k = r % len(contestants)
        for c in contestants[k:] + contestants[:k]:
            synchronize(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            c.step()
            synchronize(device)
            c.times.append(time.perf_counter() - start)
            c.cpu_times.append(time.process_time() - cpu_start)
    if memory:
        for c in contestants:
            c.peak_mib = peak_memory_mib(c.step, device)


# ------------------------------------------------------------------------------ data
def load_data(device: torch.device) -> tuple[TrainData, str]:
    """Beauty's split (or generated data of Beauty's size) through the example's ``prepare``."""
    config = TrainConfig.from_preset("s4rec", max_len=MAX_LEN)
    if BEAUTY.is_file():
        dataset, label = load_sequences(BEAUTY), "Beauty.txt"
    else:
        dataset = generate_synthetic(num_users=22363, num_items=12101, mean_extra_length=3.9, max_length=200, seed=0)
        label = "generated (Beauty-sized: 22,363 users, 12,101 items)"
    return prepare(dataset, config, device), label


@dataclass
class Batch:
    users: Tensor
    inputs: Tensor
    targets: Tensor
    negatives: Tensor
    heads: Tensor


def make_batches(data: TrainData, batch_size: int, device: torch.device, seed: int = 0) -> list[Batch]:
    g = torch.Generator(device=device).manual_seed(seed)
    split = data.split
    batches = []
    for _ in range(NUM_BATCHES):
        users = torch.randperm(split.num_users, device=device, generator=g)[:batch_size]
        inputs = split.train_inputs[users]
        batches.append(Batch(users, inputs, split.train_targets[users], data.sampler(users, inputs.shape[1], g),
                             data.heads[users]))
    return batches


class Cycle:
    """The next batch of a fixed list, round and round."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches
        self.i = 0

    def __call__(self) -> Batch:
        batch = self.batches[self.i % len(self.batches)]
        self.i += 1
        return batch


def autocast(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager[Any]:
    if amp == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ------------------------------------------------------------------------------ the example's step
def example_step(preset: str, loss: str, *, layers: int | None, batches: list[Batch], num_items: int,
                 device: torch.device, compile: bool, amp: str | None, compute_path: str = "auto") -> Callable[[], None]:
    """One training step of the example's model (built by its ``build_model``)."""
    overrides: dict[str, Any] = {"loss": loss, "max_len": MAX_LEN, "compute_path": compute_path}
    if layers is not None:
        overrides["num_layers"] = layers
    config = TrainConfig.from_preset(preset, **overrides)
    model = build_model(config, num_items).to(device).train()
    optimizer = make_optimizer(model, config, device)  # the example's: fused Adam
    forward: Callable[..., dict[str, Tensor]] = torch.compile(model) if compile else model
    generator = torch.Generator(device=device).manual_seed(0)
    cycle = Cycle(batches)

    # compiled: draw the views outside the compiled region (a draw from an explicit generator
    # breaks the graph; with the views given, the whole forward traces as one graph)
    eager_views = compile and model.uses_views

    def step() -> None:
        b = cycle()
        views = model.make_views(b.inputs, generator) if eager_views else None
        with autocast(device, amp):
            terms = forward(b.inputs, b.targets, negatives=b.negatives if loss == "bce" else None,
                            head_labels=b.heads, generator=generator, views=views)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()  # type: ignore[no-untyped-call]
        optimizer.step()

    return step


# ------------------------------------------------------------------------------ plain PyTorch SASRec
class PlainSASRec(nn.Module):
    """SASRec in plain PyTorch: the baseline a user would write by hand."""

    def __init__(self, num_items: int, layers: int) -> None:
        super().__init__()
        d = HIDDEN
        self.item = nn.Embedding(num_items + 1, d, padding_idx=0)
        self.pos = nn.Embedding(MAX_LEN, d)
        self.norm = nn.LayerNorm(d)
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"qkv": nn.Linear(d, 3 * d), "out": nn.Linear(d, d), "ln1": nn.LayerNorm(d),
                           "ff1": nn.Linear(d, 4 * d), "ff2": nn.Linear(4 * d, d), "ln2": nn.LayerNorm(d)})
            for _ in range(layers))
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.normal_(p, std=0.02)

    def forward(self, ids: Tensor) -> Tensor:
        b, l = ids.shape
        drop = DROPOUT if self.training else 0.0
        x = F.dropout(self.norm(self.item(ids) + self.pos.weight[:l]), drop, self.training)
        causal = torch.ones(l, l, dtype=torch.bool, device=ids.device).tril()
        eye = torch.eye(l, dtype=torch.bool, device=ids.device)
        mask = ((causal & (ids != 0)[:, None, :]) | eye)[:, None]  # (b, 1, l, l); own key always visible
        for block in self.blocks:
            blk = cast(nn.ModuleDict, block)
            q, k, v = blk["qkv"](x).view(b, l, 3, HEADS, HIDDEN // HEADS).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
            x = blk["ln1"](x + F.dropout(blk["out"](a.transpose(1, 2).reshape(b, l, HIDDEN)), drop, self.training))
            x = blk["ln2"](x + F.dropout(blk["ff2"](F.gelu(blk["ff1"](x))), drop, self.training))
        return x

    def loss(self, ids: Tensor, pos: Tensor, neg: Tensor | None) -> Tensor:
        h = self(ids)
        real = pos != 0
        if neg is None:  # full softmax over the items, at the real positions
            return F.cross_entropy(h[real] @ self.item.weight[1:].T, pos[real] - 1)
        lp, ln = (h * self.item(pos)).sum(-1), (h * self.item(neg)).sum(-1)
        w = real.to(lp.dtype)
        return (-(F.logsigmoid(lp) + F.logsigmoid(-ln)) * w).sum() / w.sum()


def plain_step(loss: str, *, layers: int, batches: list[Batch], num_items: int, device: torch.device,
               compile: bool, amp: str | None) -> Callable[[], None]:
    torch.manual_seed(0)
    model = PlainSASRec(num_items, layers).to(device).train()
    optimizer = make_optimizer(model, TrainConfig(lr=LR), device)  # the same Adam as the example's
    loss_fn: Callable[..., Tensor] = torch.compile(model.loss) if compile else model.loss
    cycle = Cycle(batches)

    def step() -> None:
        b = cycle()
        with autocast(device, amp):
            value = loss_fn(b.inputs, b.targets, b.negatives if loss == "bce" else None)
        optimizer.zero_grad(set_to_none=True)
        value.backward()  # type: ignore[no-untyped-call]
        optimizer.step()

    return step


def sampler_step(data: TrainData, batches: list[Batch], device: torch.device) -> Callable[[], None]:
    g = torch.Generator(device=device).manual_seed(1)
    cycle = Cycle(batches)

    def step() -> None:
        b = cycle()
        data.sampler(b.users, b.inputs.shape[1], g)

    return step


# ------------------------------------------------------------------------------ ranking
def ranking_contestants(
    data: TrainData, device: torch.device
) -> tuple[list[Contestant], Callable[[], dict[str, Any]]]:
    """``evaluate_ranking`` and the plain loop on the same precomputed scores (validation users)."""
    split = data.split
    history: Ragged = split.history("valid").to(device)
    targets = split.targets("valid").to(device)
    u, columns = targets.numel(), split.num_items + 1  # item 0 = padding column
    g = torch.Generator().manual_seed(0)
    user_vec = torch.randn(u, HIDDEN, generator=g).to(device)
    item_vec = torch.randn(columns, HIDDEN, generator=g).to(device)
    index = torch.arange(u, device=device).unsqueeze(1)  # "inputs": the user's row

    def score_fn(batch: Tensor) -> Tensor:
        return user_vec[batch[:, 0]] @ item_vec.T

    rows, items = history.flat_pairs(0, u)
    offsets = history.offsets
    results: dict[str, Tensor] = {}

    def plain() -> None:
        ranks = []
        with torch.no_grad():
            for start in range(0, u, EVAL_BATCH):
                stop = min(start + EVAL_BATCH, u)
                scores = score_fn(index[start:stop])
                target = scores.gather(1, targets[start:stop, None])
                lo, hi = int(offsets[start]), int(offsets[stop])
                scores[rows[lo:hi] - start, items[lo:hi]] = -math.inf
                scores[:, 0] = -math.inf
                ranks.append((scores > target).sum(1))
        results["plain"] = torch.cat(ranks).cpu()

    def library() -> None:
        with torch.no_grad():
            results["library"] = evaluate_ranking(score_fn, index, targets, history=history,
                                                  batch_size=EVAL_BATCH).ranks

    def agree() -> dict[str, Any]:
        """Ranks that differ (ties, last-bit differences of the matmul per batch) and the metrics."""
        plain_metrics = ranking_metrics(results["plain"])
        library_metrics = ranking_metrics(results["library"])
        return {
            "ranks_differing": int((results["plain"] != results["library"]).sum()),
            "users": u,
            "metrics_max_abs_difference": max(abs(plain_metrics[k] - library_metrics[k]) for k in plain_metrics),
        }

    return [Contestant("evaluate_ranking (library)", library), Contestant("plain ranking loop", plain)], agree


# ------------------------------------------------------------------------------ epochs
def epoch_contestants(data: TrainData, device: torch.device) -> list[Contestant]:
    """Full Beauty epochs of the example's loop: ``s4rec`` bce and ``sasrec`` ce."""
    from s4rec_example.loop import train_epoch

    out = []
    for preset, loss in (("s4rec", "bce"), ("sasrec", "ce")):
        config = TrainConfig.from_preset(preset, loss=loss, max_len=MAX_LEN)
        torch.manual_seed(0)
        model = build_model(config, data.num_items).to(device)
        optimizer = make_optimizer(model, config, device)
        generator = torch.Generator(device=device).manual_seed(0)

        def epoch(model: Any = model, optimizer: Any = optimizer, config: Any = config, generator: Any = generator) -> None:
            train_epoch(model, optimizer, data, config, generator, None)

        out.append(Contestant(f"epoch {preset} {loss} (b={config.batch_size}, {config.num_layers} layer)", epoch))
    return out


# ------------------------------------------------------------------------------ report
def table(rows: list[dict[str, Any]], title: str) -> str:
    lines = [title, f"  {'step':<44} {'median ms':>10} {'min':>9} {'max':>9} {'CPU ms':>9} {'peak MiB':>9}"]
    for r in rows:
        peak = "-" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
        lines.append(f"  {r['name']:<44} {r['median_ms']:>10.1f} {r['min_ms']:>9.1f} {r['max_ms']:>9.1f} "
                     f"{r['median_cpu_ms']:>9.1f} {peak:>9}")
    return "\n".join(lines)


def _ms(rows: list[dict[str, Any]], name: str) -> float | None:
    for r in rows:
        if r["name"] == name:
            return float(r["median_ms"])
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else round(a / b, 3)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--batch-size", type=int, default=512, help="batch of the presets' own configuration")
    p.add_argument("--compile", action="store_true", help="wrap the models in torch.compile")
    p.add_argument("--amp", choices=("bf16",), default=None, help="autocast the forward to bfloat16")
    p.add_argument("--quick", action="store_true", help="2 layers, B = 512 only; sasrec and s4rec bce; fewer reps")
    p.add_argument("--epoch", action="store_true", help="time full Beauty epochs of the example's loop instead")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions per contestant")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per contestant first")
    p.add_argument("--no-eval", action="store_true", help="skip the ranking comparison")
    p.add_argument("--output", type=Path, default=None, help="also write everything to this JSON file")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error(f"--device cuda: CUDA is not available (torch {torch.__version__}, built with CUDA "
                f"{torch.version.cuda}); run on a machine with a GPU or use --device cpu")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; the thread count, denormal mode and validation switch it sets are
    given back on return (tests and notebooks call it in-process)."""
    args = parse_args(argv)
    previous = s4rec_components.validate_args_enabled()
    with restored_torch_settings():
        try:
            return _run(args, argv)
        finally:
            s4rec_components.set_validate_args(previous)


def _run(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as the example's CLI: denormals slow CPU matmuls tens of times
    device = torch.device(args.device)  # float32 matmuls at torch's default precision (no TF32)
    quick = args.quick
    reps = args.reps or (4 if quick else 10)
    warmup = args.warmup if args.warmup is not None else (2 if quick else 3)
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]) if argv is None else "bench_step " + " ".join(argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "machine": machine(),
        "device": str(device),
        "compile": args.compile,
        "amp": args.amp,
        "load_average_start": load_average(),
    }
    torch.manual_seed(0)
    t0 = time.perf_counter()
    data, label = load_data(device)
    report["data"] = label
    print(f"data: {label}, {data.num_users} users, {data.num_items} items; device {device}, "
          f"{torch.get_num_threads()} threads, load average {report['load_average_start']} "
          f"(setup {time.perf_counter() - t0:.1f} s)", flush=True)

    s4rec_components.set_validate_args(False)  # as the example's loop does after its first step
    sections: dict[str, list[dict[str, Any]]] = {}
    if args.epoch:
        contestants = epoch_contestants(data, device)
        run_interleaved(contestants, warmup=0, reps=args.reps or 2, device=device, memory=False)
        sections["epoch"] = [c.row() for c in contestants]
        print(table(sections["epoch"], "full Beauty epochs through s4rec_example.loop.train_epoch"))
    else:
        configs: list[tuple[str, int | None, int]] = [("2 layers, B=512", 2, 512)]
        if not quick:
            configs.insert(0, (f"presets (1 layer), B={args.batch_size}", None, args.batch_size))
        combos = [("sasrec", "bce"), ("s4rec", "bce")] if quick else [(p, q) for p in PRESETS for q in LOSSES]
        kw = dict(device=device, compile=args.compile, amp=args.amp)
        for title, layers, batch_size in configs:
            batches = make_batches(data, batch_size, device)
            plain_layers = layers if layers is not None else TrainConfig().num_layers
            contestants = [Contestant(f"{p} {q}", example_step(p, q, layers=layers, batches=batches,
                                                              num_items=data.num_items, **kw)) for p, q in combos]
            if device.type == "cpu":
                contestants.append(Contestant("sasrec bce (dense path)", example_step(
                    "sasrec", "bce", layers=layers, batches=batches, num_items=data.num_items,
                    compute_path="dense", **kw)))
            for q in ("bce",) if quick else LOSSES:
                contestants.append(Contestant(f"plain sasrec {q}", plain_step(
                    q, layers=plain_layers, batches=batches, num_items=data.num_items, **kw)))
            contestants.append(Contestant("negative sampler (example)", sampler_step(data, batches, device)))
            t0 = time.perf_counter()
            run_interleaved(contestants, warmup=warmup, reps=reps, device=device)
            sections[title] = [c.row() for c in contestants]
            print(table(sections[title], f"training step, {title}, L={MAX_LEN}, d={HIDDEN} "
                        f"({reps} interleaved reps, {time.perf_counter() - t0:.0f} s)"), flush=True)
        if not args.no_eval:
            evals, agree = ranking_contestants(data, device)
            run_interleaved(evals, warmup=1, reps=max(3, reps // 2), device=device)
            sections["ranking"] = [c.row() for c in evals]
            report["ranking_agreement"] = check = agree()
            print(table(sections["ranking"], f"full ranking of {data.num_users} validation users (precomputed "
                        f"scores; ranks differing: {check['ranks_differing']}, metrics differ by at most "
                        f"{check['metrics_max_abs_difference']:.1e})"))
    report["load_average_end"] = load_average()
    report["sections"] = sections

    summary: dict[str, Any] = {}
    if args.epoch:
        rows = sections["epoch"]
        s4 = next(r["median_ms"] for r in rows if r["name"].startswith("epoch s4rec")) / 1000
        sa = next(r["median_ms"] for r in rows if r["name"].startswith("epoch sasrec")) / 1000
        cpu = {r["name"].split(" (")[0]: round(r["median_cpu_ms"] / 1000, 2) for r in rows}
        summary = {"s4rec_bce_epoch_s": round(s4, 2), "sasrec_ce_epoch_s": round(sa, 2), "epoch_cpu_s": cpu,
                   "s4rec_bce_epoch_target_8s_met": s4 <= 8.0, "sasrec_ce_epoch_target_10s_met": sa <= 10.0}
    else:
        main_rows = sections["2 layers, B=512"]
        ms = {r["name"]: r["median_ms"] for r in main_rows}
        summary = {
            "config": "2 layers, B=512, L=50, d=64",
            "sasrec_vs_plain": _ratio(_ms(main_rows, "sasrec bce"), _ms(main_rows, "plain sasrec bce")),
            "sasrec_ce_vs_plain_ce": _ratio(_ms(main_rows, "sasrec ce"), _ms(main_rows, "plain sasrec ce")),
            "s4rec_vs_sasrec": _ratio(_ms(main_rows, "s4rec bce"), _ms(main_rows, "sasrec bce")),
            "s4rec_ce_vs_sasrec_ce": _ratio(_ms(main_rows, "s4rec ce"), _ms(main_rows, "sasrec ce")),
        }
        if "ranking" in sections:
            summary["eval_vs_plain_loop"] = _ratio(_ms(sections["ranking"], "evaluate_ranking (library)"),
                                                   _ms(sections["ranking"], "plain ranking loop"))
            eval_cpu = {r["name"]: r["median_cpu_ms"] for r in sections["ranking"]}
            summary["eval_vs_plain_loop_cpu_time"] = _ratio(eval_cpu["evaluate_ranking (library)"],
                                                            eval_cpu["plain ranking loop"])
        summary["ms"] = ms
        cpu = {r["name"]: r["median_cpu_ms"] for r in main_rows}
        summary["cpu_time_ratios"] = {  # CPU time (all threads): what a loaded machine distorts least
            "sasrec_vs_plain": _ratio(cpu.get("sasrec bce"), cpu.get("plain sasrec bce")),
            "sasrec_ce_vs_plain_ce": _ratio(cpu.get("sasrec ce"), cpu.get("plain sasrec ce")),
            "s4rec_vs_sasrec": _ratio(cpu.get("s4rec bce"), cpu.get("sasrec bce")),
        }
        if "ranking" in sections:
            summary["ms"].update({r["name"]: r["median_ms"] for r in sections["ranking"]})
        if device.type == "cuda":
            summary["gpu_targets"] = {
                "sasrec_vs_plain<=1.1": summary["sasrec_vs_plain"] is not None and summary["sasrec_vs_plain"] <= 1.1,
                "s4rec_vs_sasrec<=1.5": summary["s4rec_vs_sasrec"] is not None and summary["s4rec_vs_sasrec"] <= 1.5,
                "s4rec_ms<=8 (with --compile --amp bf16)": ms.get("s4rec bce", math.inf) <= 8.0,
            }
        elif "eval_vs_plain_loop" in summary:
            summary["cpu_target_eval<=1.25"] = summary["eval_vs_plain_loop"] is not None and summary["eval_vs_plain_loop"] <= 1.25
    summary.update(device=str(device), threads=torch.get_num_threads(), load_average=report["load_average_end"])
    report["summary"] = summary
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.output}")
    print(json.dumps(summary))
    return report


if __name__ == "__main__":
    main()
