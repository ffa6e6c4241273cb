"""Time ``SequenceAugmenter`` against per-sample loops (run: ``python tests/bench_augment.py``).

Two loop baselines at b=2048, l=50 on the CPU, best of 3 each:

- ``torch loop``: the per-row torch reference from ``test_augment.py`` (the one the test
  asserts a >= 5x speed-up against);
- ``python loop``: list-based rows with the ``random`` module, as in the CL4SRec / ICLRec
  ``data_augmentation.py`` recipes.
"""

from __future__ import annotations

import argparse
import logging
import random

import torch
from test_augment import best_time, python_loop, reference_augment, speed_batch

from s4rec_components import SequenceAugmenter

logger = logging.getLogger("bench_augment")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    aug = SequenceAugmenter(1000)
    ids = speed_batch()
    rows = ids.tolist()
    g = torch.Generator().manual_seed(0)
    rng = random.Random(0)
    fast = best_time(lambda: aug(ids, generator=g))
    torch_loop = best_time(lambda: reference_augment(ids, aug, g))
    py_loop = best_time(lambda: python_loop(rows, aug, rng))
    py_tensor = best_time(lambda: torch.tensor(python_loop(ids.tolist(), aug, rng)))
    logger.info("b=%d l=%d threads=%d", *ids.shape, args.threads)
    logger.info("vectorised   %8.2f ms", fast * 1e3)
    logger.info("torch loop   %8.2f ms  (%.1fx)", torch_loop * 1e3, torch_loop / fast)
    logger.info(
        "python loop  %8.2f ms  (%.1fx)  lists in, lists out", py_loop * 1e3, py_loop / fast
    )
    logger.info(
        "python loop  %8.2f ms  (%.1fx)  tensor in, tensor out", py_tensor * 1e3, py_tensor / fast
    )


if __name__ == "__main__":
    main()
