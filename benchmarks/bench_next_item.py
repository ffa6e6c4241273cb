"""Time ``linear_cross_entropy`` against plain ``F.cross_entropy(h @ table.T)``.

``python benchmarks/bench_next_item.py [--rows 12800 1536] [--chunks 128 256 1024]``

One forward + backward of a full-softmax next-item loss over a Beauty-sized item table
(n = 12,102 rows incl. padding, d = 64), for

- ``plain masked``: ``F.cross_entropy(h[real] @ table.T, targets[real])`` (boolean indexing,
  a host read on a GPU; what a training loop writes by hand);
- ``plain weighted``: ``F.cross_entropy(h @ table.T, reduction="none")`` weighted by ``real``
  over all rows (sync-free, but every padding row's logits are computed);
- ``fused c``: ``linear_cross_entropy(h, table, targets, weights=real, chunk_size=c)``
  (sync-free, chunked; the (m, n) logits never exist; ``auto`` = ``chunk_size=None``);
- ``fused real-only``: ``linear_cross_entropy(h[real], table, targets[real])`` (automatic
  chunks; the same rows as ``plain masked``).

``--cases 12800:0.2`` is a batch of 256 sequences x 50 positions with 20 % real positions
(about Beauty's share); ``1536:1.0`` is 1536 rows, all real. Variants are interleaved round by round and the
median is reported (the machine may be shared: read the ratios). One thread by default
(``--threads``). Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from s4rec_components import set_validate_args
from s4rec_components.next_item import linear_cross_entropy

NUM_ROWS_TABLE, HIDDEN = 12_102, 64


def make_inputs(m: int, real_fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``hidden (m, d)``, ``table (n, d)`` (both requiring grad), ``targets (m,)``, ``weights (m,)``."""
    g = torch.Generator().manual_seed(seed)
    hidden = (0.1 * torch.randn(m, HIDDEN, generator=g)).requires_grad_(True)
    table = (0.1 * torch.randn(NUM_ROWS_TABLE, HIDDEN, generator=g)).requires_grad_(True)
    targets = torch.randint(1, NUM_ROWS_TABLE, (m,), generator=g)
    real = torch.rand(m, generator=g) < real_fraction
    targets = torch.where(real, targets, torch.zeros_like(targets))
    return hidden, table, targets, real.float()


def variants(chunks: list[int]) -> dict[str, Callable[..., torch.Tensor]]:
    def plain_masked(h: torch.Tensor, t: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        real = w > 0
        logits = h[real] @ t.T
        logits[:, 0] = float("-inf")
        return F.cross_entropy(logits, y[real])

    def plain_weighted(h: torch.Tensor, t: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        logits = h @ t.T
        logits[:, 0] = float("-inf")
        ce = F.cross_entropy(logits, y, reduction="none")
        return torch.where(w > 0, w * ce, torch.zeros_like(ce)).sum() / w.sum()

    out: dict[str, Callable[..., torch.Tensor]] = {
        "plain masked": plain_masked,
        "plain weighted": plain_weighted,
    }
    for c in chunks:
        out[f"fused {c}"] = lambda h, t, y, w, c=c: linear_cross_entropy(h, t, y, weights=w, chunk_size=c)
    out["fused auto"] = lambda h, t, y, w: linear_cross_entropy(h, t, y, weights=w)

    def fused_real_only(h: torch.Tensor, t: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        real = w > 0
        return linear_cross_entropy(h[real], t, y[real])

    out["fused real-only"] = fused_real_only
    return out


def time_step(fn: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...]) -> float:
    hidden, table = inputs[0], inputs[1]
    hidden.grad = table.grad = None
    start = time.perf_counter()
    fn(*inputs).backward()  # type: ignore[no-untyped-call]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["1536:1.0", "12800:0.2"], help="rows:real_fraction")
    parser.add_argument("--chunks", type=int, nargs="+", default=[128, 256, 1024])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    set_validate_args(False)
    results: dict[str, dict[str, float]] = {}
    for case in args.cases:
        rows, fraction = case.split(":")
        m = int(rows)
        inputs = make_inputs(m, float(fraction))
        fns = variants(args.chunks)
        for fn in fns.values():  # warm-up
            time_step(fn, inputs)
        times: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(args.rounds):
            for name, fn in fns.items():
                times[name].append(time_step(fn, inputs))
        medians = {name: 1000 * statistics.median(t) for name, t in times.items()}
        results[case] = medians
        print(f"m = {m} ({float(fraction):.0%} real), n = {NUM_ROWS_TABLE}, d = {HIDDEN}, {args.threads} thread(s), ms (median of {args.rounds})")
        base = medians["plain weighted"]
        for name, ms in medians.items():
            print(f"  {name:16s} {ms:9.1f}   x{ms / base:.2f} of plain weighted")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(json.dumps({"bench": "next_item", "threads": args.threads, "load_avg_1m": load, "ms": results}))


if __name__ == "__main__":
    main()
