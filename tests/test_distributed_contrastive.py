"""``intent_info_nce(..., gather_distributed=True)`` across 2 and 3 gloo processes (issue 11.1).

The laws, for W processes holding ``b_r`` rows each (unequal sizes, and empty ranks, included):

* ``reduction="mean"``: the mean of the ranks' losses equals the single-process loss of the
  concatenated batch, and each rank's gradient with respect to its own ``z1`` / ``z2``,
  divided by W (DDP's averaging), equals the single-process gradient at those rows; the
  ranks' prototype gradients, averaged, equal the single-process prototype gradient;
* ``reduction="sum"``: the ranks' sums add up to the single-process sum, and the rank
  gradients (summed for the prototypes) equal the single-process ones without division;
* ``reduction="none"``: the ranks' per-anchor losses are the single-process ones of their rows.

One pool of W worker processes per world size is spawned once for the module; every
hypothesis example is sent to all of them, so the examples cost milliseconds, and the
largest differences seen are printed when the module ends (run with ``-s`` to see them).
"""

from __future__ import annotations

import os
import queue
import traceback
from collections.abc import Iterator
from typing import Any

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given

from _gloo import gloo_group
from s4rec_components import intent_info_nce

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed missing")

WORLD_SIZES = (2, 3)
REPLY_TIMEOUT_S = 120.0
REDUCTIONS = ("mean", "sum", "none")
values = st.integers(min_value=-200, max_value=200).map(lambda i: i / 100)
MAX_DIFF: dict[str, float] = {"loss": 0.0, "grad": 0.0}

Case = dict[str, Any]
Result = dict[str, Any]


# ----------------------------------------------------------------------------- computation


def _tensor(array: np.ndarray | None) -> torch.Tensor | None:
    return None if array is None else torch.from_numpy(np.array(array))


def run_case(case: Case, start: int, stop: int) -> Result:
    """Losses and gradients of rows ``start:stop`` of ``case`` (all rows in one process)."""
    z1 = torch.from_numpy(case["z1"][start:stop].copy()).requires_grad_(True)
    z2 = torch.from_numpy(case["z2"][start:stop].copy()).requires_grad_(True)
    mu = _tensor(case["prototypes"])
    if mu is not None:
        mu.requires_grad_(True)
    assignments = None if case["assignments"] is None else _tensor(case["assignments"][start:stop])
    groups = None if case["groups"] is None else _tensor(case["groups"][start:stop])
    distributed = dist.is_initialized()
    out: Result = {}
    for reduction in REDUCTIONS:
        loss = intent_info_nce(
            z1, z2, mu, assignments, groups, temperature=case["temperature"],
            similarity=case["similarity"], reduction=reduction, gather_distributed=distributed,
            positive_in_denominator=case.get("positive_in_denominator", True),
        )
        out[reduction] = loss.detach().numpy()
        if reduction != "none":
            inputs = [z1, z2] + ([] if mu is None else [mu])
            grads = torch.autograd.grad(loss, inputs)
            out[f"{reduction}_grads"] = [g.numpy() for g in grads]
    return out


def _worker(rank: int, world: int, init_file: str, inbox: Any, outbox: Any) -> None:
    with gloo_group(rank, world, init_file):
        while True:
            case = inbox.get()
            if case is None:
                return
            sizes = case["sizes"]
            start = sum(sizes[:rank])
            try:
                outbox.put((rank, run_case(case, start, start + sizes[rank])))
            except Exception:  # reported to the parent, which fails the test
                outbox.put((rank, traceback.format_exc()))


class Pool:
    """W spawned processes in one gloo group that evaluate the cases they are sent."""

    def __init__(self, world: int, init_file: str) -> None:
        context = mp.get_context("spawn")
        self.world = world
        self.outbox = context.Queue()
        self.inboxes = [context.Queue() for _ in range(world)]
        self.processes = [
            context.Process(target=_worker, args=(r, world, init_file, self.inboxes[r],
                                                  self.outbox), daemon=True)
            for r in range(world)
        ]
        for process in self.processes:
            process.start()

    def run(self, case: Case) -> list[Result]:
        for inbox in self.inboxes:
            inbox.put(case)
        results: list[Result | None] = [None] * self.world
        for _ in range(self.world):
            try:
                rank, result = self.outbox.get(timeout=REPLY_TIMEOUT_S)
            except queue.Empty:
                pytest.fail(f"no answer from the {self.world} workers within {REPLY_TIMEOUT_S} s")
            if isinstance(result, str):
                pytest.fail(f"rank {rank} failed:\n{result}")
            results[rank] = result
        return [r for r in results if r is not None]

    def close(self) -> None:
        for inbox in self.inboxes:
            inbox.put(None)
        for process in self.processes:
            process.join(timeout=20)
            if process.is_alive():
                process.terminate()


@pytest.fixture(scope="module")
def pools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, Pool]]:
    folder = tmp_path_factory.mktemp("gloo")
    started = {w: Pool(w, os.fspath(folder / f"init-{w}")) for w in WORLD_SIZES}
    yield started
    for pool in started.values():
        pool.close()
    print(f"\nlargest differences, distributed vs single process: {MAX_DIFF}")


# ----------------------------------------------------------------------------- laws


def check_laws(pool: Pool, case: Case) -> None:
    world, sizes = pool.world, case["sizes"]
    total = sum(sizes)
    ranks = pool.run(case)
    single = run_case(case, 0, total)

    def close(got: Any, want: Any, kind: str) -> None:
        got, want = np.asarray(got), np.asarray(want)
        if got.size:
            MAX_DIFF[kind] = max(MAX_DIFF[kind], float(np.abs(got - want).max()))
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)

    close(np.mean([r["mean"] for r in ranks]), single["mean"], "loss")
    close(np.sum([r["sum"] for r in ranks]), single["sum"], "loss")
    has_mu = case["prototypes"] is not None
    for reduction, divisor in (("mean", world), ("sum", 1)):
        grads = single[f"{reduction}_grads"]
        for r, result in enumerate(ranks):
            start = sum(sizes[:r])
            rows = slice(start, start + sizes[r])
            close(result[f"{reduction}_grads"][0] / divisor, grads[0][rows], "grad")
            close(result[f"{reduction}_grads"][1] / divisor, grads[1][rows], "grad")
        if has_mu:
            mu_grad = np.sum([r[f"{reduction}_grads"][2] for r in ranks], axis=0) / divisor
            close(mu_grad, grads[2], "grad")
    for r, result in enumerate(ranks):
        start, b = sum(sizes[:r]), sizes[r]
        close(result["none"][:b], single["none"][start : start + b], "loss")
        close(result["none"][b:], single["none"][total + start : total + start + b], "loss")


@st.composite
def cases(draw: Any, world: int) -> Case:
    """Per-rank sizes (some may be 0, not all), then the whole batch's values."""
    sizes = draw(st.lists(st.integers(0, 4), min_size=world, max_size=world)
                 .filter(lambda s: sum(s) > 0))
    total, d, k = sum(sizes), draw(st.integers(1, 4)), draw(st.integers(1, 4))

    def matrix(rows: int) -> np.ndarray:
        flat = draw(st.lists(values, min_size=rows * d, max_size=rows * d))
        return np.array(flat, dtype=np.float64).reshape(rows, d)

    def ids(high: int) -> np.ndarray:
        return np.array(draw(st.lists(st.integers(0, high), min_size=total, max_size=total)),
                        dtype=np.int64)

    with_prototypes = draw(st.booleans())
    return {
        "sizes": sizes,
        "z1": matrix(total),
        "z2": matrix(total),
        "prototypes": matrix(k) if with_prototypes else None,
        "assignments": ids(k - 1) if with_prototypes else None,
        "groups": ids(max(total // 2, 1)) if draw(st.booleans()) else None,
        "temperature": draw(st.floats(0.05, 5.0)),
        "similarity": draw(st.sampled_from(["dot", "cosine"])),
        "positive_in_denominator": draw(st.booleans()),
    }


@pytest.mark.slow
@pytest.mark.parametrize("world", WORLD_SIZES)
@given(data=st.data())
def test_gathered_loss_equals_single_process(
    pools: dict[int, Pool], world: int, data: st.DataObject
) -> None:
    check_laws(pools[world], data.draw(cases(world)))


FIXED_SIZES = {2: [(3, 3), (1, 5), (4, 0)], 3: [(2, 2, 2), (1, 4, 2), (0, 3, 1)]}


@pytest.mark.slow
@pytest.mark.parametrize("world", WORLD_SIZES)
def test_fixed_cases_with_unequal_batches(pools: dict[int, Pool], world: int) -> None:
    rng = np.random.default_rng(world)
    for sizes in FIXED_SIZES[world]:
        total = sum(sizes)
        for with_prototypes, with_groups, similarity in ((True, True, "dot"),
                                                         (False, False, "cosine")):
            case: Case = {
                "sizes": list(sizes),
                "z1": rng.normal(size=(total, 5)),
                "z2": rng.normal(size=(total, 5)),
                "prototypes": rng.normal(size=(3, 5)) if with_prototypes else None,
                "assignments": rng.integers(0, 3, total) if with_prototypes else None,
                "groups": rng.integers(0, 3, total) if with_groups else None,
                "temperature": 0.3,
                "similarity": similarity,
            }
            check_laws(pools[world], case)

