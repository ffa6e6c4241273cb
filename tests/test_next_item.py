"""next_item: fused linear cross-entropy and sampled BCE against explicit references."""

from __future__ import annotations

import math
from typing import Any

import hypothesis.strategies as st
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from strategies import float_tensors, long_tensors

from s4rec_components import set_validate_args
from s4rec_components.next_item import linear_cross_entropy, sampled_bce

# --------------------------------------------------------------------------------------------
# Slow references: explicit logits, F.cross_entropy / the ICLRec formula, boolean masks
# --------------------------------------------------------------------------------------------


def ref_cross_entropy(hidden, table, targets, weights=None, ignore_columns=(0,)):
    logits = hidden @ table.T
    for column in ignore_columns:
        logits[:, column] = float("-inf")
    if weights is None:
        return F.cross_entropy(logits, targets)
    ce = F.cross_entropy(logits, targets, reduction="none")
    ce = torch.where(weights != 0, ce, torch.zeros_like(ce))
    total = weights.sum()
    return (weights * ce).sum() / total if total > 0 else (weights * ce).sum() * 0


def ref_iclrec_bce(hidden, table, positives, negatives, weights):
    """ICLRec's cross_entropy (src/trainers.py), with a general weight for ``istarget``."""
    pos_logits = (hidden * table[positives]).sum(-1)
    neg_logits = (hidden * table[negatives]).sum(-1)
    loss = (
        -torch.log(torch.sigmoid(pos_logits) + 1e-24) * weights
        - torch.log(1 - torch.sigmoid(neg_logits) + 1e-24) * weights
    ).sum()
    return loss / weights.sum()


def make_case(m=37, n=23, d=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(m, d, generator=g, dtype=dtype)
    table = torch.randn(n, d, generator=g, dtype=dtype)
    targets = torch.randint(0, n, (m,), generator=g)
    return hidden, table, targets


def values_and_grads(fn, hidden, table, *args, **kwargs):
    h = hidden.clone().requires_grad_(True)
    t = table.clone().requires_grad_(True)
    loss = fn(h, t, *args, **kwargs)
    loss.backward()
    return loss.detach(), h.grad, t.grad


# --------------------------------------------------------------------------------------------
# linear_cross_entropy
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 4, 16, 37, 1000])
def test_cross_entropy_matches_f_cross_entropy_values_and_gradients(chunk_size):
    hidden, table, targets = make_case()
    targets = targets.clamp_min(1)  # column 0 is ignored: no weighted row may target it
    got = values_and_grads(
        linear_cross_entropy, hidden, table, targets, chunk_size=chunk_size
    )
    want = values_and_grads(ref_cross_entropy, hidden, table, targets)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


def test_cross_entropy_with_weights_skips_padding_rows():
    hidden, table, targets = make_case(seed=1)
    weights = (targets > 0).double()
    got = values_and_grads(linear_cross_entropy, hidden, table, targets, weights=weights, chunk_size=8)
    real = targets > 0
    logits_ref = values_and_grads(
        lambda h, t: F.cross_entropy((h[real] @ t.T).index_fill(1, torch.tensor([0]), -math.inf), targets[real]),
        hidden,
        table,
    )
    for a, b in zip(got, logits_ref):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
    assert torch.equal(got[1][~real], torch.zeros_like(got[1][~real]))


def test_cross_entropy_general_weights_match_the_weighted_reference():
    hidden, table, targets = make_case(seed=2)
    targets = targets.clamp_min(1)
    weights = torch.rand(targets.shape[0], generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    got = values_and_grads(linear_cross_entropy, hidden, table, targets, weights=weights, chunk_size=5)
    want = values_and_grads(ref_cross_entropy, hidden, table, targets, weights)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


def test_cross_entropy_ignore_columns():
    hidden, table, targets = make_case(seed=4)
    ignore = (0, 22, 7)
    targets = torch.where(torch.isin(targets, torch.tensor(ignore)), 1, targets)
    got = values_and_grads(linear_cross_entropy, hidden, table, targets, ignore_columns=ignore)
    want = values_and_grads(ref_cross_entropy, hidden, table, targets, None, ignore)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
    # ignored columns of the table get no gradient
    assert torch.equal(got[2][list(ignore)], torch.zeros(3, table.shape[1], dtype=table.dtype))
    # no ignored column: the plain softmax over all n
    targets0 = targets.clone()
    targets0[0] = 0
    got = linear_cross_entropy(hidden, table, targets0, ignore_columns=())
    torch.testing.assert_close(got, F.cross_entropy(hidden @ table.T, targets0))


def test_cross_entropy_all_zero_weights_give_zero_loss_and_zero_grads():
    hidden, table, targets = make_case(seed=5)
    targets[:] = 0  # all padding: infinite ce per row, weight 0 everywhere
    loss, grad_h, grad_t = values_and_grads(
        linear_cross_entropy, hidden, table, targets, weights=torch.zeros(targets.shape[0], dtype=torch.float64)
    )
    assert loss.item() == 0.0
    assert torch.equal(grad_h, torch.zeros_like(grad_h))
    assert torch.equal(grad_t, torch.zeros_like(grad_t))


def test_cross_entropy_chunk_size_invariance_float32():
    hidden, table, targets = make_case(m=300, n=97, d=8, seed=6, dtype=torch.float32)
    weights = (targets > 0).float()
    results = [
        values_and_grads(linear_cross_entropy, hidden, table, targets, weights=weights, chunk_size=c)
        for c in (1, 7, 128, 300, 4096)
    ]
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_cross_entropy_without_grad_skips_the_gradient_and_matches():
    hidden, table, targets = make_case(seed=7)
    weights = (targets > 0).double()
    with torch.no_grad():
        loss = linear_cross_entropy(hidden, table, targets, weights=weights, chunk_size=3)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, ref_cross_entropy(hidden, table, targets, weights))
    # only the table requires grad: the hidden gradient is not computed, the table's is right
    t = table.clone().requires_grad_(True)
    linear_cross_entropy(hidden, t, targets, weights=weights).backward()
    t_ref = table.clone().requires_grad_(True)
    ref_cross_entropy(hidden, t_ref, targets, weights).backward()
    torch.testing.assert_close(t.grad, t_ref.grad)


def test_cross_entropy_scales_with_the_incoming_gradient_and_refuses_double_backward():
    hidden, table, targets = make_case(seed=8)
    targets = targets.clamp_min(1)
    h = hidden.clone().requires_grad_(True)
    (3.0 * linear_cross_entropy(h, table, targets)).backward()
    h_ref = hidden.clone().requires_grad_(True)
    (3.0 * ref_cross_entropy(h_ref, table, targets)).backward()
    torch.testing.assert_close(h.grad, h_ref.grad)
    h2 = hidden.clone().requires_grad_(True)
    scale = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)  # a differentiable incoming grad
    loss = linear_cross_entropy(h2, table, targets) * scale
    with pytest.raises(RuntimeError, match="differentiable once: .*create_graph=True"):
        torch.autograd.grad(loss, h2, create_graph=True)


def test_double_backward_beside_a_twice_differentiable_term_raises_instead_of_dropping_this_term():
    """With a constant incoming gradient once_differentiable alone lets the double backward through:
    the second derivative of this loss would silently count as 0 beside the cube's."""
    hidden, table, targets = make_case(seed=9)
    h = hidden.double().requires_grad_(True)
    loss = linear_cross_entropy(h, table.double(), targets.clamp_min(1)) + (h**3).sum()
    with pytest.raises(RuntimeError, match="differentiable once"):
        torch.autograd.grad(loss, h, create_graph=True)
    (grad,) = torch.autograd.grad(loss, h)  # the plain gradient is unaffected
    h_ref = hidden.double().requires_grad_(True)
    (want,) = torch.autograd.grad(ref_cross_entropy(h_ref, table.double(), targets.clamp_min(1)) + (h_ref**3).sum(), h_ref)
    torch.testing.assert_close(grad, want)


@pytest.mark.parametrize(
    ("h_dtype", "t_dtype", "expected"),
    [
        (torch.float16, torch.float16, torch.float32),
        (torch.bfloat16, torch.float32, torch.float32),
        (torch.float32, torch.float32, torch.float32),
        (torch.float32, torch.float64, torch.float64),
    ],
)
def test_cross_entropy_loss_dtype_rule_and_grad_dtypes(h_dtype, t_dtype, expected):
    hidden, table, targets = make_case(seed=9, dtype=torch.float32)
    targets = targets.clamp_min(1)
    h = (100 * hidden).to(h_dtype).requires_grad_(True)  # large logits: fp16 softmax would overflow
    t = (100 * table).to(t_dtype).requires_grad_(True)
    loss = linear_cross_entropy(h, t, targets, chunk_size=10)
    assert loss.dtype == expected and torch.isfinite(loss)
    loss.backward()
    assert h.grad.dtype == h_dtype and t.grad.dtype == t_dtype
    assert torch.isfinite(h.grad).all() and torch.isfinite(t.grad).all()
    want = ref_cross_entropy(h.detach().double(), t.detach().double(), targets)
    torch.testing.assert_close(loss.double(), want, atol=1e-3, rtol=1e-5)


def test_cross_entropy_reads_nothing_from_the_device_with_validation_off(monkeypatch):
    hidden, table, targets = make_case(seed=10, dtype=torch.float32)
    weights = (targets > 0).float()
    h = hidden.clone().requires_grad_(True)
    calls = []
    for name in ("item", "tolist", "__bool__", "__int__", "nonzero"):
        original = getattr(torch.Tensor, name)

        def spy(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, spy)
    set_validate_args(False)
    try:
        linear_cross_entropy(h, table, targets, weights=weights, chunk_size=8).backward()
        sampled_bce(h, table, targets, targets.flip(0), weights=weights).backward()
    finally:
        set_validate_args(True)
    assert calls == []
    linear_cross_entropy(hidden, table, targets, weights=weights)  # validation on: reads
    assert calls


def test_cross_entropy_empty_batch_is_zero():
    hidden, table, _ = make_case(m=0, seed=11)
    targets = torch.zeros(0, dtype=torch.long)
    loss, grad_h, grad_t = values_and_grads(linear_cross_entropy, hidden, table, targets)
    assert loss.item() == 0.0 and grad_h.shape == (0, 5) and torch.equal(grad_t, torch.zeros_like(grad_t))


@st.composite
def ce_cases(draw: st.DrawFn) -> tuple[Any, ...]:
    m = draw(st.integers(1, 12))
    n = draw(st.integers(2, 15))
    d = draw(st.integers(1, 6))
    hidden = draw(float_tensors((m, d)))
    table = draw(float_tensors((n, d)))
    targets = draw(long_tensors((m,), 0, n - 1))
    weights = draw(float_tensors((m,), 0.0, 2.0))
    weights = torch.where(targets == 0, torch.zeros_like(weights), weights)
    # subnormal weights (e.g. 2e-311) make the slow reference's w / sum(w) overflow to inf and
    # return NaN gradients, so the comparison would test the reference; they are drawn as 0
    weights = torch.where(weights.abs() < 1e-300, torch.zeros_like(weights), weights)
    chunk = draw(st.integers(1, m + 2))
    return hidden, table, targets, weights, chunk


@settings(deadline=None, max_examples=60)
@given(ce_cases())
def test_cross_entropy_law_against_the_reference(case):
    hidden, table, targets, weights, chunk = case
    got = values_and_grads(linear_cross_entropy, hidden, table, targets, weights=weights, chunk_size=chunk)
    want = values_and_grads(ref_cross_entropy, hidden, table, targets, weights)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


def test_cross_entropy_bad_inputs():
    hidden, table, targets = make_case(m=4, n=6, d=3)
    targets = targets.clamp_min(1)
    cases = [
        (dict(hidden=hidden[0]), ValueError, r"hidden must have shape \(m, d\)"),
        (dict(table=table[:, :2]), ValueError, "same size d"),
        (dict(table=table[:0]), ValueError, "table must have at least one row"),
        (dict(hidden=hidden.long()), TypeError, "hidden must be a floating-point"),
        (dict(table=[[1.0]]), TypeError, "table must be a torch.Tensor"),
        (dict(targets=targets.double()), TypeError, "targets must be an integer tensor"),
        (dict(targets=targets[:3]), ValueError, r"targets must have one entry per row of hidden \(4\)"),
        (dict(targets=torch.tensor([1, 2, 6, 1])), ValueError, r"targets must lie in \[0, 5\]"),
        (dict(targets=torch.tensor([1, 0, 2, 1])), ValueError, "ignored column .* row 1"),
        (dict(weights=torch.ones(3)), ValueError, "weights must have one entry per row"),
        (dict(weights=torch.ones(4, dtype=torch.long)), TypeError, "weights must be a floating-point"),
        (dict(weights=torch.tensor([1.0, -1.0, 1.0, 1.0])), ValueError, "weights must be finite and >= 0"),
        (dict(weights=torch.tensor([1.0, math.nan, 1.0, 1.0])), ValueError, "weights must be finite"),
        (dict(chunk_size=0), ValueError, "chunk_size must be >= 1"),
        (dict(chunk_size=2.0), TypeError, "chunk_size must be an int"),
        (dict(chunk_size=True), TypeError, "chunk_size must be an int"),
        (dict(ignore_columns=(6,)), ValueError, "ignore_columns must be <= 5"),
        (dict(ignore_columns=(-1,)), ValueError, "ignore_columns must be >= 0"),
        (dict(ignore_columns=0), TypeError, "ignore_columns must be a sequence"),
        (dict(ignore_columns="0"), TypeError, "ignore_columns must be a sequence"),
        (dict(ignore_columns=range(6), targets=torch.zeros(4, dtype=torch.long), weights=torch.zeros(4)), ValueError, "at least one"),
    ]
    for overrides, error, match in cases:
        kwargs = {"hidden": hidden, "table": table, "targets": targets, **overrides}
        with pytest.raises(error, match=match):
            linear_cross_entropy(**kwargs)


def test_cross_entropy_value_checks_are_skipped_with_validation_off():
    hidden, table, _ = make_case(m=4, n=6, d=3)
    set_validate_args(False)
    try:  # a padding target with weight 1: no error, an infinite loss (documented)
        loss = linear_cross_entropy(hidden, table, torch.tensor([1, 0, 2, 1]))
    finally:
        set_validate_args(True)
    assert math.isinf(loss.item())


# --------------------------------------------------------------------------------------------
# sampled_bce
# --------------------------------------------------------------------------------------------


def test_sampled_bce_matches_the_iclrec_formula_values_and_gradients():
    hidden, table, positives = make_case(m=40, n=30, d=6, seed=12)
    negatives = torch.randint(1, 30, (40,), generator=torch.Generator().manual_seed(13))
    weights = (positives > 0).double()
    got = values_and_grads(sampled_bce, hidden, table, positives, negatives, weights=weights)
    want = values_and_grads(ref_iclrec_bce, hidden, table, positives, negatives, weights)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


def test_sampled_bce_closed_form_and_no_weights_is_the_plain_mean():
    hidden = torch.zeros(5, 3)
    table = torch.randn(8, 3)
    ids = torch.arange(5)
    torch.testing.assert_close(sampled_bce(hidden, table, ids, ids), torch.tensor(2 * math.log(2)))
    hidden, table, positives = make_case(m=9, n=7, d=4, seed=14)
    negatives = positives.flip(0)
    torch.testing.assert_close(
        sampled_bce(hidden, table, positives, negatives),
        ref_iclrec_bce(hidden, table, positives, negatives, torch.ones(9, dtype=torch.float64)),
    )


def test_sampled_bce_all_zero_weights_and_extreme_scores():
    hidden, table, positives = make_case(m=6, n=5, d=3, seed=15)
    h = hidden.clone().requires_grad_(True)
    loss = sampled_bce(h, table, positives, positives, weights=torch.zeros(6, dtype=torch.float64))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(h.grad, torch.zeros_like(h.grad))
    big = (1e4 * hidden).half()
    loss = sampled_bce(big, table.half(), positives, positives.flip(0))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


@pytest.mark.parametrize("scale", [5e-324, 1e-310, 1e-200, 1e200])
def test_sampled_bce_is_invariant_to_the_scale_of_the_weights(scale):
    """A weighted mean: w and c * w give the same loss, down to subnormal weights."""
    hidden, table, positives = make_case(m=6, n=5, d=3, seed=4)
    negatives = positives.flip(0)
    weights = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    want = sampled_bce(hidden, table, positives, negatives, weights=weights)
    got = sampled_bce(hidden, table, positives, negatives, weights=scale * weights)
    torch.testing.assert_close(got, want, atol=0, rtol=1e-12)


@st.composite
def bce_cases(draw: st.DrawFn) -> tuple[Any, ...]:
    m = draw(st.integers(1, 12))
    n = draw(st.integers(1, 15))
    d = draw(st.integers(1, 6))
    # |scores| <= 1.5 * 1.5 * 6 = 13.5: beyond about 15 the ICLRec formula's 1 - sigmoid(s)
    # cancels (relative error 1e-5 at s = 27 in float64), so it is no reference there;
    # extreme scores are tested against the closed form in the test above
    return (
        draw(float_tensors((m, d), -1.5, 1.5)),
        draw(float_tensors((n, d), -1.5, 1.5)),
        draw(long_tensors((m,), 0, n - 1)),
        draw(long_tensors((m,), 0, n - 1)),
        draw(float_tensors((m,), 0.0, 2.0)),
    )


@settings(deadline=None, max_examples=60)
@given(bce_cases())
def test_sampled_bce_law_against_the_reference(case):
    hidden, table, positives, negatives, weights = case
    # The reference multiplies each loss by w before normalising, which keeps no digits for a
    # subnormal w (below 2.2e-308); such weights are tested by scale invariance below.
    weights = torch.where(weights < torch.finfo(weights.dtype).tiny, 0.0, weights)
    if weights.sum() == 0:
        weights = weights + 1.0
    got = values_and_grads(sampled_bce, hidden, table, positives, negatives, weights=weights)
    want = values_and_grads(ref_iclrec_bce, hidden, table, positives, negatives, weights)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


def test_sampled_bce_bad_inputs():
    hidden, table, positives = make_case(m=4, n=6, d=3)
    cases = [
        (dict(hidden=hidden[None]), ValueError, r"hidden must have shape \(m, d\)"),
        (dict(table=table.T), ValueError, "same size d"),
        (dict(positives=positives[:2]), ValueError, "positives must have one entry per row"),
        (dict(negatives=positives.float()), TypeError, "negatives must be an integer tensor"),
        (dict(negatives=torch.tensor([0, 1, 2, 9])), ValueError, r"negatives must lie in \[0, 5\]"),
        (dict(weights=torch.tensor([1.0, -2.0, 0.0, 0.0])), ValueError, "weights must be finite and >= 0"),
        (dict(weights=torch.ones(4, 1)), ValueError, r"weights must have shape \(m,\)"),
    ]
    for overrides, error, match in cases:
        kwargs = {"hidden": hidden, "table": table, "positives": positives, "negatives": positives, **overrides}
        with pytest.raises(error, match=match):
            sampled_bce(**kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_host_sync_on_cuda_under_sync_debug_mode():
    hidden, table, targets = make_case(m=300, n=97, d=8, seed=16, dtype=torch.float32)
    hidden, table, targets = hidden.cuda().requires_grad_(True), table.cuda().requires_grad_(True), targets.cuda()
    weights = (targets > 0).float()
    set_validate_args(False)
    torch.cuda.set_sync_debug_mode("error")
    try:
        linear_cross_entropy(hidden, table, targets, weights=weights, chunk_size=64).backward()
        sampled_bce(hidden, table, targets, targets.flip(0), weights=weights).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
        set_validate_args(True)
    want = ref_cross_entropy(hidden.detach().cpu().double(), table.detach().cpu().double(), targets.cpu(), weights.cpu().double())
    got = linear_cross_entropy(hidden.detach(), table.detach(), targets, weights=weights)
    torch.testing.assert_close(got.cpu().double(), want, atol=1e-5, rtol=1e-5)


def test_cross_entropy_automatic_chunk_size():
    import s4rec_components.next_item as next_item

    assert next_item._auto_chunk_size(torch.device("cpu"), 12_102) == 173
    assert next_item._auto_chunk_size(torch.device("meta"), 12_102) == 5545
    assert next_item._auto_chunk_size(torch.device("cpu"), 10**8) == 1
    hidden, table, targets = make_case(m=500, n=40, d=4, seed=17)
    weights = (targets > 0).double()
    got = values_and_grads(linear_cross_entropy, hidden, table, targets, weights=weights, chunk_size=None)
    want = values_and_grads(ref_cross_entropy, hidden, table, targets, weights)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


def test_cross_entropy_non_contiguous_inputs():
    hidden, table, targets = make_case(m=30, n=11, d=4, seed=18)
    hidden_t = hidden.T.contiguous().T  # same values, column-major strides
    table_t = table.T.contiguous().T
    assert not hidden_t.is_contiguous() and not table_t.is_contiguous()
    weights = (targets > 0).double()
    got = values_and_grads(linear_cross_entropy, hidden_t, table_t, targets, weights=weights, chunk_size=7)
    want = values_and_grads(ref_cross_entropy, hidden, table, targets, weights)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


def test_cross_entropy_extreme_logits_float32_match_float64():
    # logits in the thousands: exp overflows without the max shift, and a target far below
    # the row's max has exp(z_t - max) = 0 in float32, yet its loss is large and finite
    hidden, table, targets = make_case(m=40, n=30, d=4, seed=19)
    hidden, table = 30.0 * hidden, 30.0 * table
    weights = (targets > 0).double()
    want = values_and_grads(ref_cross_entropy, hidden, table, targets, weights)
    got = values_and_grads(
        linear_cross_entropy, hidden.float(), table.float(), targets, weights=weights.float(), chunk_size=7
    )
    assert torch.isfinite(got[0]) and got[0].item() > 100.0
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b, atol=1e-4, rtol=1e-5)
