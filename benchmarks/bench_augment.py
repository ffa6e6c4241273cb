"""Time ``SequenceAugmenter`` against per-sample loops: ``python benchmarks/bench_augment.py``.

Two loop baselines at b=2048, l=50 on the CPU (one thread for all, best of ``--repeats``):

- ``torch loop``: a straightforward per-row torch reference (one operation per row, list-like
  slicing per row);
- ``python loop``: list-based rows with the ``random`` module, as in the CL4SRec / ICLRec
  ``data_augmentation.py`` recipes, both lists in / lists out and tensor in / tensor out.

It prints a table and one JSON line of the speed-ups. ``--check`` exits with status 1 when the
vectorised augmenter is less than ``--min-speedup`` times the torch loop or less than
``--min-speedup-over-lists`` times the list loop (the guards that used to run, flakily, in the
default test suite). Measured on an idle machine: 7-10x the list loop.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import time
from collections.abc import Callable

import torch

from s4rec_components import SequenceAugmenter

logger = logging.getLogger("bench_augment")

SPEED_BATCH, SPEED_LENGTH, SPEED_ITEMS = 2048, 50, 1000


def speed_batch(seed: int = 0) -> torch.Tensor:
    """``(2048, 50)`` left-padded ids in ``1..1000`` with lengths uniform in ``1..50``."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, SPEED_ITEMS + 1, (SPEED_BATCH, SPEED_LENGTH), generator=g)
    lengths = torch.randint(1, SPEED_LENGTH + 1, (SPEED_BATCH,), generator=g)
    ids[torch.arange(SPEED_LENGTH) < (SPEED_LENGTH - lengths).unsqueeze(1)] = 0
    return ids


def best_time(fn: Callable[[], object], repeats: int = 5) -> float:
    """The shortest of ``repeats`` wall-clock runs of ``fn``, in seconds."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def torch_loop(
    item_ids: torch.Tensor, aug: SequenceAugmenter, generator: torch.Generator
) -> torch.Tensor:
    """Straightforward per-sample loop: one operation per row, list-like slicing per row."""
    b, l = item_ids.shape
    out = torch.zeros_like(item_ids)
    weights = aug.operation_weights
    for r in range(b):
        row = item_ids[r]
        seq = row[row != 0]
        n = seq.numel()
        op = aug.operations[int(torch.multinomial(weights, 1, generator=generator))]
        if n == 0:
            continue
        if op == "mask":
            seq = seq.clone()
            seq[torch.randperm(n, generator=generator)[: int(aug.mask_ratio * n)]] = aug.mask_id
        elif op == "crop":
            w = max(int(aug.crop_ratio * n), 1)
            s = int(torch.randint(0, n - w + 1, (1,), generator=generator))
            seq = seq[s : s + w]
        elif op == "reorder":
            w = int(aug.reorder_ratio * n)
            s = int(torch.randint(0, n - w + 1, (1,), generator=generator))
            seq = seq.clone()
            seq[s : s + w] = seq[s : s + w][torch.randperm(w, generator=generator)]
        else:
            k = max(int(aug.insert_ratio * n), 1)
            before = torch.zeros(n, dtype=torch.bool)
            before[torch.randperm(n, generator=generator)[:k]] = True
            new = torch.randint(1, aug.num_items + 1, (n,), generator=generator)
            parts = []
            for j in range(n):
                if before[j]:
                    parts.append(new[j : j + 1])
                parts.append(seq[j : j + 1])
            seq = torch.cat(parts)[-l:]
        out[r, l - seq.numel() :] = seq
    return out


def python_loop(
    rows: list[list[int]], aug: SequenceAugmenter, rng: random.Random
) -> list[list[int]]:
    """Per-sample loop on Python lists with ``random``, as in the CL4SRec / ICLRec recipes."""
    out = []
    weights = aug.operation_weights.tolist()
    for row in rows:
        seq = [x for x in row if x != 0]
        n, length = len(seq), len(row)
        op = rng.choices(aug.operations, weights=weights)[0]
        if n and op == "mask":
            for j in rng.sample(range(n), int(aug.mask_ratio * n)):
                seq[j] = aug.mask_id
        elif n and op == "crop":
            w = max(int(aug.crop_ratio * n), 1)
            s = rng.randint(0, n - w)
            seq = seq[s : s + w]
        elif n and op == "reorder":
            w = int(aug.reorder_ratio * n)
            s = rng.randint(0, n - w)
            window = seq[s : s + w]
            rng.shuffle(window)
            seq[s : s + w] = window
        elif n:
            chosen = set(rng.sample(range(n), max(int(aug.insert_ratio * n), 1)))
            new = []
            for j, x in enumerate(seq):
                if j in chosen:
                    new.append(rng.randint(1, aug.num_items))
                new.append(x)
            seq = new[-length:]
        out.append([0] * (length - len(seq)) + seq)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant")
    parser.add_argument("--check", action="store_true", help="exit 1 below the minimum speed-ups")
    parser.add_argument("--min-speedup", type=float, default=5.0)
    parser.add_argument("--min-speedup-over-lists", type=float, default=2.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    aug = SequenceAugmenter(SPEED_ITEMS)
    ids = speed_batch()
    rows = ids.tolist()
    g = torch.Generator().manual_seed(0)
    rng = random.Random(0)
    fast = best_time(lambda: aug(ids, generator=g), args.repeats)
    loop = best_time(lambda: torch_loop(ids, aug, g), args.repeats)
    lists = best_time(lambda: python_loop(rows, aug, rng), args.repeats)
    lists_tensor = best_time(
        lambda: torch.tensor(python_loop(ids.tolist(), aug, rng)), args.repeats
    )
    logger.info("b=%d l=%d threads=%d", *ids.shape, args.threads)
    logger.info("vectorised   %8.2f ms", fast * 1e3)
    logger.info("torch loop   %8.2f ms  (%.1fx)", loop * 1e3, loop / fast)
    logger.info("python loop  %8.2f ms  (%.1fx)  lists in, lists out", lists * 1e3, lists / fast)
    logger.info(
        "python loop  %8.2f ms  (%.1fx)  tensor in, tensor out",
        lists_tensor * 1e3,
        lists_tensor / fast,
    )
    ratios = {
        "vectorised_ms": round(fast * 1e3, 3),
        "speedup_over_torch_loop": round(loop / fast, 2),
        "speedup_over_list_loop": round(lists / fast, 2),
        "speedup_over_list_loop_tensor_io": round(lists_tensor / fast, 2),
    }
    print(json.dumps(ratios))
    if args.check and (
        loop / fast < args.min_speedup or lists_tensor / fast < args.min_speedup_over_lists
    ):
        logger.error("below the minimum speed-ups")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
