"""Time ``evaluate_ranking`` against a plain PyTorch ranking loop, and show its memory at scale.

Run from the repository root::

    python benchmarks/bench_evaluation.py [--threads N] [--device cpu|cuda] [--scale] [--output FILE.json]

**Ranking (Beauty-sized).** 22,363 users x 12,101 items (+ the padding column), random
embeddings of size 64, the validation histories of ``../shared/data/Beauty.txt`` when that file
exists (otherwise generated histories of the same size). Both sides score a batch of 1024 users
with the same matmul; then

- ``plain``: the loop written by hand: ``-inf`` scatter of the history (precomputed flat
  pairs) and of the padding column, then ``(scores > target).sum(1)``;
- ``library``: ``evaluate_ranking(score_fn, ..., history=Ragged)`` (exact, pessimistic ties).

Library and plain repetitions are interleaved (alternating which goes first) and the medians
are compared, once on a quiet machine (``idle``) and once while a busy-loop process occupies a
core (``busy``). ``score only`` is the matmul alone, the floor of both. Peak memory is the rise
of the process's peak RSS (``VmHWM``, reset before each case) over its RSS before the case, or
``torch.cuda.max_memory_allocated`` on a GPU. One call of each case is also counted in minor
page faults and user / system CPU seconds (``getrusage``): the kernel work of mapping and
zero-filling freshly allocated blocks, which is what slows a ranking loop most when the other
core is busy.

**Scale (``--scale``).** A generated catalogue of 1M items and 1M users (about 8 interactions
each), ranked for the first ``--scale-users`` users under two memory budgets: the peak RSS rises
by about the budget, never by the users x items matrix (4 TB for 1M x 1M float32).

The last line printed is one JSON object with the ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from _memory import git_commit, load_average, machine, peak_memory_mib, status_kib, synchronize  # noqa: E402  (benchmarks/ is on sys.path)

from s4rec_components.evaluation import evaluate_ranking
from s4rec_components.ragged import Ragged

ROOT = Path(__file__).resolve().parents[1]
BEAUTY = ROOT.parent / "shared" / "data" / "Beauty.txt"
HIDDEN = 64


# ------------------------------------------------------------------------------ data
def beauty_problem(path: Path) -> tuple[Ragged, Tensor, int, str]:
    """Validation protocol of a sequence file: history = all but the last two, target = second last."""
    rows, targets = [], []
    for line in path.read_text().splitlines():
        items = [int(v) for v in line.split()[1:]]
        if len(items) >= 3:
            rows.append(items[:-2])
            targets.append(items[-2])
    num_items = max(max(r + [t]) for r, t in zip(rows, targets))
    return Ragged.from_lists(rows), torch.tensor(targets), num_items + 1, path.name


def generated_problem(users: int, num_items: int, mean_length: int, seed: int) -> tuple[Ragged, Tensor, int, str]:
    """Histories of 1..2*mean_length-1 random items (ids 1..num_items) and random targets."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 2 * mean_length, (users,), generator=g)
    values = torch.randint(1, num_items + 1, (int(lengths.sum()),), generator=g)
    targets = torch.randint(1, num_items + 1, (users,), generator=g)
    return Ragged.from_lengths(values, lengths), targets, num_items + 1, f"generated {users}x{num_items}"


def embeddings(users: int, columns: int, device: torch.device, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(users, HIDDEN, generator=g).to(device), torch.randn(columns, HIDDEN, generator=g).to(device))


# ------------------------------------------------------------------------------ the contestants
def make_scorer(user_vectors: Tensor, item_vectors: Tensor) -> Callable[[Tensor], Tensor]:
    table = item_vectors.T.contiguous()

    def score_fn(users: Tensor) -> Tensor:
        return user_vectors[users[:, 0]] @ table

    return score_fn


def library(score_fn: Callable[[Tensor], Tensor], targets: Tensor, history: Ragged, batch: int,
            device: torch.device, budget: int | None = None) -> Tensor:
    users = torch.arange(targets.numel(), device=device).unsqueeze(1)
    result = evaluate_ranking(score_fn, users, targets.to(device), history=history, batch_size=batch,
                              ignore_ids=(0,), device=device, memory_budget=budget)
    return result.ranks


def plain_loop(score_fn: Callable[[Tensor], Tensor], targets: Tensor, pairs: tuple[Tensor, Tensor, list[int]],
               batch: int, device: torch.device) -> Tensor:
    """matmul, ``-inf`` scatter of the history and the padding column, ``(scores > target).sum(1)``."""
    rows, items, offsets = pairs
    users = torch.arange(targets.numel(), device=device).unsqueeze(1)
    targets = targets.to(device)
    ranks = []
    with torch.no_grad():
        for start in range(0, targets.numel(), batch):
            stop = min(start + batch, targets.numel())
            scores = score_fn(users[start:stop])
            target = scores.gather(1, targets[start:stop, None])
            lo, hi = offsets[start], offsets[stop]
            scores[rows[lo:hi] - start, items[lo:hi]] = -math.inf
            scores[:, 0] = -math.inf
            ranks.append((scores > target).sum(1))
    return torch.cat(ranks).cpu()


def score_only(score_fn: Callable[[Tensor], Tensor], users: int, batch: int, device: torch.device) -> None:
    index = torch.arange(users, device=device).unsqueeze(1)
    with torch.no_grad():
        for start in range(0, users, batch):
            score_fn(index[start : start + batch])


# ------------------------------------------------------------------------------ measurement


def kernel_work(fn: Callable[[], Any]) -> dict[str, float]:
    """Minor page faults and user / system CPU seconds of one call (this process, all threads).

    Every large block a call allocates afresh is mapped by the allocator and zero-filled by the
    kernel page by page on first touch: system time that competes with a busy neighbour core
    for memory bandwidth. This is what made the old ranking code slow under load.
    """
    before = resource.getrusage(resource.RUSAGE_SELF)
    fn()
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"minor_faults": after.ru_minflt - before.ru_minflt,
            "user_s": round(after.ru_utime - before.ru_utime, 3), "sys_s": round(after.ru_stime - before.ru_stime, 3)}


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start






class BusyCore:
    """A child process spinning in Python: one core of the machine kept busy."""

    def __enter__(self) -> BusyCore:
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.kill()
        self.process.wait()


def interleaved(cases: dict[str, Callable[[], Any]], repeats: int, device: torch.device) -> dict[str, list[float]]:
    """Time every case ``repeats`` times, alternating the order each round."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else names[::-1]:
            times[name].append(timed(cases[name], device))
    return times


# ------------------------------------------------------------------------------ main parts
def ranking_benchmark(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    if BEAUTY.is_file() and not args.generated:
        history, targets, columns, name = beauty_problem(BEAUTY)
    else:
        history, targets, columns, name = generated_problem(22_363, 12_101, 7, seed=0)
    users = targets.numel()
    user_vectors, item_vectors = embeddings(users, columns, device)
    score_fn = make_scorer(user_vectors, item_vectors)
    rows, items = history.flat_pairs(0, users)
    pairs = (rows.to(device), items.to(device), history.offsets.tolist())
    batch = args.batch_size

    lib_ranks = library(score_fn, targets, history, batch, device)  # warm-up and agreement
    plain_ranks = plain_loop(score_fn, targets, pairs, batch, device)
    differ = int((lib_ranks != plain_ranks).sum())
    if bool((lib_ranks < plain_ranks).any()):
        raise SystemExit("the library ranked a target higher than the plain loop: a bug")

    cases = {
        "library": lambda: library(score_fn, targets, history, batch, device),
        "plain": lambda: plain_loop(score_fn, targets, pairs, batch, device),
        "score only": lambda: score_only(score_fn, users, batch, device),
    }
    memory = {case: peak_memory_mib(fn, device) for case, fn in cases.items()}
    kernel = {case: kernel_work(fn) for case, fn in cases.items()}
    modes = {"idle": args.load in ("idle", "both"), "busy": args.load in ("busy", "both")}
    results: dict[str, Any] = {"data": name, "users": users, "columns": columns, "batch": batch,
                               "differing_ranks": differ, "peak_mib": memory, "kernel_work": kernel}
    for mode, wanted in modes.items():
        if not wanted:
            continue
        load = (load_average() or [math.nan])[0]  # the 1-minute load average
        if mode == "busy":
            with BusyCore():
                times = interleaved(cases, args.repeats, device)
        else:
            times = interleaved(cases, args.repeats, device)
        pair_ratios = [a / b for a, b in zip(times["library"], times["plain"])]
        results[mode] = {
            "median_s": {case: statistics.median(t) for case, t in times.items()},
            "ratio": statistics.median(times["library"]) / statistics.median(times["plain"]),
            "median_pair_ratio": statistics.median(pair_ratios),
            "load_average_before": load,
        }
    return results


def scale_benchmark(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    items, users = args.scale_items, args.scale_catalogue_users
    rss_start = status_kib("VmRSS") / 1024
    history, targets, columns, _ = generated_problem(users, items, 8, seed=1)
    user_vectors, item_vectors = embeddings(users, columns, device, seed=1)
    score_fn = make_scorer(user_vectors, item_vectors)
    rss_data = status_kib("VmRSS") / 1024
    ranked = min(args.scale_users, users)
    subset = Ragged(history.values[: int(history.offsets[ranked])], history.offsets[: ranked + 1])
    runs = []
    for budget in (64 * 2**20, 256 * 2**20):
        sizes: list[int] = []  # users per call of the scorer, as the library chose them

        def counted(users_batch: Tensor) -> Tensor:
            sizes.append(users_batch.shape[0])
            return score_fn(users_batch)

        seconds = 0.0

        def run() -> None:
            nonlocal seconds
            seconds = timed(lambda: library(counted, targets[:ranked], subset, args.batch_size, device, budget),
                            device)

        peak = peak_memory_mib(run, device)
        runs.append({"budget_mib": budget / 2**20, "users_per_batch": max(sizes), "seconds": seconds,
                     "users_per_second": ranked / seconds, "peak_rise_mib": peak})
    return {"items": items, "catalogue_users": users, "ranked_users": ranked,
            "interactions": int(history.values.numel()), "rss_start_mib": rss_start, "rss_with_data_mib": rss_data,
            "users_x_items_matrix_gib": users * columns * 4 / 2**30, "runs": runs}


def print_ranking_table(result: dict[str, Any], device: torch.device) -> None:
    print(f"\nranking: {result['data']}, {result['users']:,} users x {result['columns']:,} columns, "
          f"batch {result['batch']}, {torch.get_num_threads()} threads, {device}")
    print(f"{'case':<12} {'idle s':>8} {'busy s':>8} {'peak MiB':>9} {'faults':>9} {'user s':>7} {'sys s':>6}")
    for case in ("library", "plain", "score only"):
        cells = [f"{result[m]['median_s'][case]:8.3f}" if m in result else f"{'-':>8}" for m in ("idle", "busy")]
        k = result["kernel_work"][case]
        print(f"{case:<12} {cells[0]} {cells[1]} {result['peak_mib'][case]:9.0f} {k['minor_faults']:9d} "
              f"{k['user_s']:7.2f} {k['sys_s']:6.2f}")
    for mode in ("idle", "busy"):
        if mode in result:
            r = result[mode]
            print(f"library / plain, {mode}: {r['ratio']:.3f} (median of paired ratios {r['median_pair_ratio']:.3f}; "
                  f"load average before {r['load_average_before']:.2f})")
    print(f"users whose rank differs (ties: the plain loop is optimistic): {result['differing_ranks']}")


def print_scale_table(result: dict[str, Any]) -> None:
    print(f"\nscale: {result['items']:,} items x {result['catalogue_users']:,} users "
          f"({result['interactions']:,} interactions), first {result['ranked_users']:,} users ranked; "
          f"a users x items float32 matrix would take {result['users_x_items_matrix_gib']:,.0f} GiB")
    print(f"RSS at start {result['rss_start_mib']:.0f} MiB, with data and embeddings {result['rss_with_data_mib']:.0f} MiB")
    print(f"{'budget MiB':>10} {'users/batch':>11} {'seconds':>8} {'users/s':>8} {'peak rise MiB':>13}")
    for run in result["runs"]:
        print(f"{run['budget_mib']:10.0f} {run['users_per_batch']:11d} {run['seconds']:8.1f} "
              f"{run['users_per_second']:8.0f} {run['peak_rise_mib']:13.0f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=7, help="interleaved repetitions per case and mode")
    parser.add_argument("--load", choices=("idle", "busy", "both"), default="both",
                        help="time on a quiet machine, with one core kept busy, or both")
    parser.add_argument("--generated", action="store_true", help="generated histories even if Beauty.txt exists")
    parser.add_argument("--scale", action="store_true", help="also run the 1M items x 1M users memory case")
    parser.add_argument("--scale-items", type=int, default=1_000_000)
    parser.add_argument("--scale-catalogue-users", type=int, default=1_000_000)
    parser.add_argument("--scale-users", type=int, default=5_000, help="users ranked in the scale case")
    parser.add_argument("--skip-ranking", action="store_true", help="only the scale case")
    parser.add_argument("--output", type=Path, default=None,
                        help="also write the summary with its command, git commit, machine and load average to this JSON file")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this torch build sees no CUDA device")
    device = torch.device(args.device)
    summary: dict[str, Any] = {"bench": "evaluation", "device": str(device), "threads": torch.get_num_threads(),
                               "torch": torch.__version__}
    started = {"command": " ".join(["python", "benchmarks/bench_evaluation.py", *(sys.argv[1:] if argv is None else argv)]),
               "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "git_commit": git_commit(),
               "machine": machine(), "load_average_start": load_average()}
    if not args.skip_ranking:
        ranking = ranking_benchmark(args, device)
        print_ranking_table(ranking, device)
        for mode in ("idle", "busy"):
            if mode in ranking:
                summary[f"ratio_{mode}"] = round(ranking[mode]["ratio"], 3)
                summary[f"library_s_{mode}"] = round(ranking[mode]["median_s"]["library"], 3)
                summary[f"plain_s_{mode}"] = round(ranking[mode]["median_s"]["plain"], 3)
        summary["peak_mib"] = {case: round(v, 1) for case, v in ranking["peak_mib"].items()}
        summary["kernel_work"] = ranking["kernel_work"]
    if args.scale:
        scale = scale_benchmark(args, device)
        print_scale_table(scale)
        summary["scale"] = {**{k: (round(v, 1) if isinstance(v, float) else v) for k, v in scale.items() if k != "runs"},
                            "runs": [{k: round(v, 2) for k, v in run.items()} for run in scale["runs"]]}
    print(json.dumps(summary))
    if args.output is not None:
        record = {**started, "load_average_end": load_average(), "summary": summary}
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
