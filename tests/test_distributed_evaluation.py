"""Sharded ``evaluate_ranking`` under torch.distributed: exactly the single-process numbers.

Two gloo processes on the CPU (``torch.multiprocessing.spawn``) evaluate the same users with
``distributed=True``; each must score only its contiguous block of users, and both must return
the single-process metrics bit for bit (sums over all users / the global count) and every
user's rank. User counts not divisible by two, and fewer users than processes, are included.
"""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
import torch.distributed as dist

from _gloo import gloo_group, spawn
from s4rec_components import Ragged, evaluate_ranking, ranking_metrics

WORLD_SIZE = 2


def make_case(users: int, items: int, seed: int, layout: str, history_value: float | None) -> dict:
    """Scores with ties (rounded), targets and histories that repeat items and the target."""
    g = torch.Generator().manual_seed(seed)
    scores = (torch.randn(users, items, generator=g) * 2).round()
    targets = torch.randint(1, items, (users,), generator=g)
    lengths = torch.randint(0, 5, (users,), generator=g)
    values = torch.randint(0, items, (int(lengths.sum()),), generator=g)
    history = Ragged.from_lengths(values, lengths)
    if users > 1:
        history = Ragged.from_lists([row + [int(t)] if i % 3 == 0 else row
                                     for i, (row, t) in enumerate(zip(history.tolist(), targets.tolist()))])
    if layout == "padded":
        history = history.pad_rows(torch.arange(users))
    return {"scores": scores, "targets": targets, "history": history, "history_value": history_value}


CASES = [
    make_case(7, 13, 0, "ragged", None),  # odd user count
    make_case(7, 13, 1, "padded", 0.0),  # ICLRec protocol, padded history
    make_case(30, 9, 2, "ragged", 0.0),
    make_case(1, 5, 3, "ragged", None),  # fewer users than processes: rank 0 scores nobody
    make_case(101, 40, 4, "padded", None),
]
KS = (1, 3, 10)


def run_case(case: dict, distributed: bool, batch_size: int = 3) -> tuple[dict, torch.Tensor, list[int]]:
    calls: list[int] = []
    scores = case["scores"]

    def score_fn(x: torch.Tensor) -> torch.Tensor:
        calls.extend(x[:, 0].tolist())
        return scores[x[:, 0]]

    users = torch.arange(scores.shape[0]).unsqueeze(1)
    result = evaluate_ranking(score_fn, users, case["targets"], history=case["history"],
                              history_value=case["history_value"], batch_size=batch_size, ks=KS,
                              distributed=distributed)
    return result.metrics, result.ranks, calls


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    with gloo_group(rank, WORLD_SIZE, init_file):
        out = []
        for case in CASES:
            sharded = run_case(case, distributed=True)
            whole = run_case(case, distributed=False)  # the flag off: every process ranks every user
            out.append({"sharded": sharded, "whole": whole})
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.fixture(scope="module")
def per_rank() -> list[list[dict]]:
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "rendezvous")
        spawn(_worker, (init_file, tmp), WORLD_SIZE, init_file)
        return [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=False) for r in range(WORLD_SIZE)]


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(CASES)))
def test_sharded_metrics_equal_single_process_exactly(per_rank, index):
    expected_metrics, expected_ranks, _ = run_case(CASES[index], distributed=False)
    users = CASES[index]["targets"].numel()
    for rank, results in enumerate(per_rank):
        metrics, ranks, calls = results[index]["sharded"]
        assert metrics == expected_metrics  # bit for bit, not approximately
        assert torch.equal(ranks, expected_ranks)  # every rank gets every user's rank, in order
        start, stop = rank * users // WORLD_SIZE, (rank + 1) * users // WORLD_SIZE
        assert calls == list(range(start, stop))  # its own contiguous block, each user once
        whole_metrics, whole_ranks, whole_calls = results[index]["whole"]
        assert whole_metrics == expected_metrics and torch.equal(whole_ranks, expected_ranks)
        assert whole_calls == list(range(users))


@pytest.mark.slow
def test_the_reduction_is_global_not_a_mean_of_rank_means(per_rank):
    """With an odd user count, the mean of the two processes' own means is not the answer."""
    metrics, ranks, _ = per_rank[0][0]["sharded"]
    users = ranks.numel()
    halves = [ranks[: users // 2], ranks[users // 2 :]]
    mean_of_means = {key: sum(ranking_metrics(h, ks=KS)[key] for h in halves) / 2 for key in metrics}
    assert any(mean_of_means[key] != metrics[key] for key in metrics)
    assert metrics == ranking_metrics(ranks, ks=KS)


def _nan_worker(rank: int, init_file: str, out_dir: str) -> None:
    """Only rank 1's block holds a NaN target score; both ranks must raise, neither may hang."""
    case = dict(CASES[0])  # 7 users: rank 0 scores users 0-2, rank 1 users 3-6
    scores = case["scores"].clone()
    scores[5, case["targets"][5]] = float("nan")
    case["scores"] = scores
    with gloo_group(rank, WORLD_SIZE, init_file, timeout_s=60):
        try:
            run_case(case, distributed=True)
            outcome = "returned"
        except ValueError as error:  # a gloo timeout (RuntimeError) is not caught: the test fails
            outcome = str(error)
        torch.save(outcome, os.path.join(out_dir, f"nan{rank}.pt"))


@pytest.mark.slow
def test_a_nan_target_on_one_process_raises_on_every_process():
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "rendezvous")
        spawn(_nan_worker, (init_file, tmp), WORLD_SIZE, init_file)
        outcomes = [torch.load(os.path.join(tmp, f"nan{r}.pt")) for r in range(WORLD_SIZE)]
    for outcome in outcomes:
        assert "NaN" in outcome and "1 of 2 processes" in outcome


def _failing_worker(rank: int, init_file: str, out_dir: str, where: str) -> None:
    """Rank 1 fails alone, in ``score_fn`` or after it (counting its ranks); rank 0 must not be
    left waiting for it in a collective."""
    import s4rec_components.evaluation as evaluation

    case = CASES[0]  # 7 users: rank 0 scores users 0-2, rank 1 users 3-6

    def score_fn(x: torch.Tensor) -> torch.Tensor:
        if where == "score_fn" and int(x[0, 0]) >= 3:
            raise KeyError("an item table lookup failed")
        return case["scores"][x[:, 0]]

    if where == "counting" and rank == 1:
        def out_of_memory(*args, **kwargs):
            raise MemoryError("no memory left for the bins")

        evaluation._rank_counts = out_of_memory
    users = torch.arange(7).unsqueeze(1)
    with gloo_group(rank, WORLD_SIZE, init_file, timeout_s=60):
        try:
            evaluate_ranking(score_fn, users, case["targets"], history=case["history"], ks=KS,
                             distributed=True)
            outcome = "returned"
        except (KeyError, MemoryError, RuntimeError) as error:
            outcome = f"{type(error).__name__}: {error}"
            if "timed out" in outcome.lower() or "gloo" in outcome.lower():
                outcome = "collective failed: " + outcome  # a hang cut by the timeout is a failure
        torch.save(outcome, os.path.join(out_dir, f"fail{rank}.pt"))


@pytest.mark.slow
@pytest.mark.parametrize("where, own_error", [
    ("score_fn", "KeyError: 'an item table lookup failed'"),
    ("counting", "MemoryError: no memory left for the bins"),
])
def test_an_exception_on_one_process_raises_on_every_process(where, own_error):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "rendezvous")
        spawn(_failing_worker, (init_file, tmp, where), WORLD_SIZE, init_file)
        outcomes = [torch.load(os.path.join(tmp, f"fail{r}.pt")) for r in range(WORLD_SIZE)]
    assert outcomes[1] == own_error  # its own error, unchanged
    assert outcomes[0].startswith("RuntimeError: evaluate_ranking failed on another process")


def test_flag_without_a_process_group_is_single_process():
    case = CASES[0]
    assert not (dist.is_available() and dist.is_initialized())
    on, off = run_case(case, distributed=True), run_case(case, distributed=False)
    assert on[0] == off[0] and torch.equal(on[1], off[1]) and on[2] == off[2]
