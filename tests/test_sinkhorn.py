"""Tests for ``s4rec_components.sinkhorn``: SwAV's numbers, marginals, stability, errors."""

from __future__ import annotations

import math
import os
import tempfile
import warnings

import hypothesis.strategies as st
import pytest
import torch
import torch.distributed as dist
from hypothesis import given, settings
from strategies import examples, float_tensors, permutations

from _gloo import gloo_group, spawn
import s4rec_components.sinkhorn as sinkhorn_module
from s4rec_components import SinkhornKnopp, set_validate_args, sinkhorn_knopp

# Scores in [-1, 1] and epsilon >= 0.05 keep exp(scores / epsilon) representable, so the
# plain-exp SwAV reference below can serve as ground truth.
SCORE_BOUND = 1.0
epsilons = st.floats(min_value=0.05, max_value=2.0)
iterations = st.integers(min_value=1, max_value=6)
small_dims = st.integers(min_value=1, max_value=10)

# float32 result against a float64 reference.
RTOL, ATOL = 1e-5, 1e-6


def swav_reference(scores: torch.Tensor, num_iters: int, epsilon: float) -> torch.Tensor:
    """SwAV's ``distributed_sinkhorn`` (single process), transcribed in float64 with plain exp."""
    q = torch.exp(scores.double() / epsilon).t()  # (k, b)
    k, b = q.shape
    q = q / q.sum()
    for _ in range(num_iters):
        q = q / q.sum(dim=1, keepdim=True)
        q = q / k
        q = q / q.sum(dim=0, keepdim=True)
        q = q / b
    return (q * b).t()


@st.composite
def score_matrices(draw, low: float = -SCORE_BOUND, high: float = SCORE_BOUND):
    """A ``(b, k)`` float64 score matrix with b >= k (no equipartition warning)."""
    k = draw(small_dims)
    b = draw(st.integers(min_value=k, max_value=16))
    return draw(float_tensors((b, k), low=low, high=high))


# ----------------------------------------------------------------------------- laws


@given(scores=score_matrices(), num_iters=iterations, epsilon=epsilons)
def test_matches_swav_reference(scores, num_iters, epsilon):
    out = sinkhorn_knopp(scores, num_iters=num_iters, epsilon=epsilon)
    torch.testing.assert_close(
        out.double(), swav_reference(scores, num_iters, epsilon), rtol=RTOL, atol=ATOL
    )


@given(scores=score_matrices(), num_iters=iterations, epsilon=epsilons)
def test_matches_swav_reference_in_float32(scores, num_iters, epsilon):
    """The log-domain result equals SwAV run in float32 where the latter does not overflow."""
    scores = scores.float()
    out = sinkhorn_knopp(scores, num_iters=num_iters, epsilon=epsilon)
    expected = swav_reference(scores, num_iters, epsilon).float()
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-6)


@given(scores=score_matrices(), num_iters=iterations, epsilon=epsilons)
def test_rows_are_distributions(scores, num_iters, epsilon):
    out = sinkhorn_knopp(scores, num_iters=num_iters, epsilon=epsilon)
    assert out.dtype == torch.float32
    assert out.shape == scores.shape
    assert bool((out >= 0).all())
    torch.testing.assert_close(out.sum(dim=1), torch.ones(scores.shape[0]))


@settings(max_examples=examples(20))
@given(scores=score_matrices(low=-0.5, high=0.5))
def test_columns_equipartitioned_at_convergence(scores):
    """With many rounds the prototype marginals reach b / k (the polytope of Eq. 10)."""
    b, k = scores.shape
    out = sinkhorn_knopp(scores, num_iters=200, epsilon=0.5)
    torch.testing.assert_close(out.sum(dim=0), torch.full((k,), b / k), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.sum(dim=1), torch.ones(b))


@st.composite
def scores_and_permutations(draw):
    scores = draw(score_matrices())
    return scores, draw(permutations(scores.shape[0])), draw(permutations(scores.shape[1]))


@given(case=scores_and_permutations(), num_iters=iterations)
def test_permutation_equivariant(case, num_iters):
    scores, rows, cols = case
    out = sinkhorn_knopp(scores, num_iters=num_iters)
    permuted = sinkhorn_knopp(scores[rows][:, cols], num_iters=num_iters)
    torch.testing.assert_close(permuted, out[rows][:, cols], rtol=1e-5, atol=1e-6)


@given(scores=score_matrices(), offsets=float_tensors((10,), low=-5.0, high=5.0), n=iterations)
def test_invariant_to_per_prototype_offsets(scores, offsets, n):
    """Adding a constant to a prototype's scores is undone by the first prototype step."""
    k = scores.shape[1]
    shifted = scores + offsets[:k] * 0.05  # times epsilon: a factor exp(offset) on the column
    torch.testing.assert_close(
        sinkhorn_knopp(shifted, num_iters=n), sinkhorn_knopp(scores, num_iters=n),
        rtol=1e-4, atol=1e-5,
    )


def test_single_round_closed_form():
    """b = k = 2, one round, epsilon = 1, worked by hand from exp(scores) = [[e, 1], [1, 1]]."""
    scores = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    e = math.e
    # Prototype step (each prototype's mass over the batch becomes 1/2):
    # prototype 0 gives (e, 1) / (2 (e + 1)), prototype 1 gives (1, 1) / 4.
    p0 = (e / (2 * (e + 1)), 1 / (2 * (e + 1)))
    p1 = (0.25, 0.25)
    # Sample step, then the rescaling by b: each sample's row normalised to 1.
    expected = torch.tensor(
        [
            [p0[0] / (p0[0] + p1[0]), p1[0] / (p0[0] + p1[0])],
            [p0[1] / (p0[1] + p1[1]), p1[1] / (p0[1] + p1[1])],
        ]
    )
    torch.testing.assert_close(sinkhorn_knopp(scores, num_iters=1, epsilon=1.0), expected)


def test_uniform_scores_give_uniform_targets():
    out = sinkhorn_knopp(torch.zeros(6, 3), num_iters=3)
    torch.testing.assert_close(out, torch.full((6, 3), 1 / 3))


# ----------------------------------------------------------------------------- stability


def test_tiny_epsilon_huge_scores_stay_finite():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(12, 5, generator=g) * 1e4
    out = sinkhorn_knopp(scores, num_iters=3, epsilon=1e-4)
    assert bool(torch.isfinite(out).all())
    torch.testing.assert_close(out.sum(dim=1), torch.ones(12))
    # Plain exp overflows here: SwAV's float32 recipe would give nan.
    assert not bool(torch.isfinite(swav_reference(scores.float(), 3, 1e-4)).all())


def test_tiny_epsilon_gives_hard_equipartition():
    """A clear assignment of b = k samples is recovered as a permutation matrix."""
    perm = torch.tensor([2, 0, 3, 1])
    noise = torch.randn(4, 4, generator=torch.Generator().manual_seed(1))
    scores = torch.eye(4)[perm] + 0.01 * noise
    out = sinkhorn_knopp(scores, num_iters=3, epsilon=1e-4)
    torch.testing.assert_close(out, torch.eye(4)[perm])


def test_rows_sum_to_one_where_scores_over_epsilon_are_large():
    """Request G-2: at |scores / epsilon| ~ 3e4 a float32 ulp is 2e-3; rows still sum to 1."""
    out = sinkhorn_knopp(torch.tensor([[0.0, 0.0], [328.0, 328.0]]), num_iters=1, epsilon=0.01)
    torch.testing.assert_close(out.sum(dim=1), torch.ones(2), rtol=0, atol=1e-6)
    torch.testing.assert_close(out, torch.full((2, 2), 0.5), rtol=0, atol=1e-6)


@settings(max_examples=examples(40))
@given(
    scores=score_matrices(low=-500.0, high=500.0),
    num_iters=iterations,
    epsilon=st.sampled_from([1e-3, 1e-2, 0.05]),
)
def test_rows_sum_to_one_at_any_magnitude(scores, num_iters, epsilon):
    out = sinkhorn_knopp(scores.float(), num_iters=num_iters, epsilon=epsilon)
    torch.testing.assert_close(
        out.sum(dim=1), torch.ones(scores.shape[0]), rtol=0, atol=1e-5
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    g = torch.Generator().manual_seed(2)
    scores = (torch.randn(9, 4, generator=g) * 30).to(dtype)
    out = sinkhorn_knopp(scores, num_iters=3, epsilon=0.05)
    assert out.dtype == torch.float32
    assert bool(torch.isfinite(out).all())
    torch.testing.assert_close(out, sinkhorn_knopp(scores.float(), num_iters=3, epsilon=0.05))


def test_no_gradient_flows():
    scores = torch.randn(5, 3, requires_grad=True)
    out = sinkhorn_knopp(scores)
    assert not out.requires_grad
    assert out.grad_fn is None
    module_out = SinkhornKnopp()(scores)
    assert not module_out.requires_grad


# ----------------------------------------------------------------------------- module, warnings


@given(scores=score_matrices(), num_iters=iterations, epsilon=epsilons)
def test_module_equals_function(scores, num_iters, epsilon):
    module = SinkhornKnopp(num_iters=num_iters, epsilon=epsilon)
    torch.testing.assert_close(
        module(scores), sinkhorn_knopp(scores, num_iters=num_iters, epsilon=epsilon)
    )
    assert f"num_iters={num_iters}" in repr(module)


def test_warns_when_batch_smaller_than_prototypes():
    with pytest.warns(UserWarning, match="equipartition cannot hold"):
        out = sinkhorn_knopp(torch.randn(3, 5))
    torch.testing.assert_close(out.sum(dim=1), torch.ones(3))


def test_no_warning_when_batch_covers_prototypes():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sinkhorn_knopp(torch.randn(5, 5))


def test_distributed_flag_without_process_group_falls_back():
    assert not (dist.is_available() and dist.is_initialized())
    scores = torch.randn(7, 3)
    torch.testing.assert_close(
        sinkhorn_knopp(scores, distributed=True), sinkhorn_knopp(scores, distributed=False)
    )


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("scores", "error", "match"),
    [
        ([[1.0, 2.0]], TypeError, "scores must be a torch.Tensor"),
        (torch.randn(4), ValueError, r"scores must have shape \(b, k\)"),
        (torch.randn(2, 3, 4), ValueError, r"scores must have shape \(b, k\)"),
        (torch.ones(3, 2, dtype=torch.long), TypeError, "floating-point"),
        (torch.randn(0, 3), ValueError, "must not be empty"),
        (torch.randn(3, 0), ValueError, "must not be empty"),
        (torch.tensor([[1.0, float("nan")]]), ValueError, "finite"),
        (torch.tensor([[1.0, float("inf")]]), ValueError, "finite"),
    ],
)
def test_bad_scores(scores, error, match):
    with pytest.raises(error, match=match):
        sinkhorn_knopp(scores)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_iters": 0}, ValueError, "num_iters must be >= 1"),
        ({"num_iters": -2}, ValueError, "num_iters must be >= 1"),
        ({"num_iters": 2.0}, TypeError, "num_iters must be an int"),
        ({"num_iters": True}, TypeError, "num_iters must be an int"),
        ({"epsilon": 0.0}, ValueError, r"epsilon must lie in \(0, inf\), got 0.0"),
        ({"epsilon": -0.1}, ValueError, r"epsilon must lie in \(0, inf\)"),
        ({"epsilon": float("inf")}, ValueError, "epsilon must be finite"),
        ({"epsilon": float("nan")}, ValueError, "epsilon must be finite"),
        ({"epsilon": "0.05"}, TypeError, "epsilon must be a real number"),
        ({"epsilon": True}, TypeError, "epsilon must be a real number"),
        ({"distributed": 1}, TypeError, "distributed must be a bool"),
    ],
)
def test_bad_hyperparameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        sinkhorn_knopp(torch.randn(4, 2), **kwargs)
    with pytest.raises(error, match=match):
        SinkhornKnopp(**kwargs)


def test_hyperparameters_are_keyword_only():
    with pytest.raises(TypeError, match="positional"):
        sinkhorn_knopp(torch.randn(4, 2), 3)  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional"):
        SinkhornKnopp(3)  # type: ignore[misc]


# ----------------------------------------------------------------------------- validation switch


def test_finiteness_is_a_value_check_behind_the_switch():
    scores = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    set_validate_args(False)
    try:
        out = sinkhorn_knopp(scores)  # trusted: no check, no error
    finally:
        set_validate_args(True)
    assert out.shape == (2, 2)
    with pytest.raises(ValueError, match="finite"):
        sinkhorn_knopp(scores)
    # Structural checks always run.
    set_validate_args(False)
    try:
        with pytest.raises(ValueError, match=r"scores must have shape \(b, k\)"):
            sinkhorn_knopp(torch.randn(3))
    finally:
        set_validate_args(True)


def test_module_validates_once_and_not_its_hyperparameters(monkeypatch):
    calls = {"scores": 0, "hyper": 0}
    check_scores, check_hyper = sinkhorn_module._check_scores, sinkhorn_module._check_hyperparameters

    def count_scores(*args):
        calls["scores"] += 1
        return check_scores(*args)

    def count_hyper(*args):
        calls["hyper"] += 1
        return check_hyper(*args)

    monkeypatch.setattr(sinkhorn_module, "_check_scores", count_scores)
    monkeypatch.setattr(sinkhorn_module, "_check_hyperparameters", count_hyper)
    module = SinkhornKnopp(num_iters=2)
    assert calls == {"scores": 0, "hyper": 1}
    module(torch.randn(5, 3))
    module(torch.randn(5, 3))
    assert calls == {"scores": 2, "hyper": 1}


# ----------------------------------------------------------------------------- distributed

LOCAL_BATCHES = (5, 2)  # unequal on purpose; the global batch of 7 covers K = 4
NUM_PROTOTYPES = 4
WORLD_SIZE = len(LOCAL_BATCHES)


def _distributed_worker(rank: int, init_file: str, out_dir: str, scores: torch.Tensor) -> None:
    """Runs in a spawned process: the rank's slice of the batch through the distributed path."""
    with gloo_group(rank, WORLD_SIZE, init_file):
        start = sum(LOCAL_BATCHES[:rank])
        local = scores[start : start + LOCAL_BATCHES[rank]]
        out = sinkhorn_knopp(local, num_iters=3, epsilon=0.1, distributed=True)
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_distributed_equals_concatenated_batch():
    """Per-rank results, concatenated, equal the single-process result on the whole batch."""
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(sum(LOCAL_BATCHES), NUM_PROTOTYPES, generator=g)
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "rendezvous")
        spawn(_distributed_worker, (init_file, tmp, scores), WORLD_SIZE, init_file)
        parts = [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(WORLD_SIZE)]
    expected = sinkhorn_knopp(scores, num_iters=3, epsilon=0.1, distributed=False)
    torch.testing.assert_close(torch.cat(parts), expected, rtol=1e-5, atol=1e-6)
    # The local results alone differ: the all-reduce did matter.
    local = sinkhorn_knopp(scores[: LOCAL_BATCHES[0]], num_iters=3, epsilon=0.1)
    assert not torch.allclose(local, parts[0], atol=1e-3)
